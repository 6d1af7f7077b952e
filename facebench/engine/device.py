"""Device and precision choice."""

from __future__ import annotations

import torch

from facebench.errors import ConfigError

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(requested: str | None = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must be available."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {requested}: CUDA is not available here. Use --device cpu or auto.")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {requested}: MPS is not available here. Use --device cpu or auto.")
    return device


def normalise_amp(amp: str | bool | None) -> str | None:
    """AMP setting -> ``bf16``, ``fp16`` or None (full fp32). ``true`` means bf16."""
    if amp in (None, False, "none", "off", "false"):
        return None
    if amp is True or amp == "true":
        amp = "bf16"
    if amp not in AMP_DTYPES:
        raise ConfigError(f"amp must be one of none, bf16, fp16; got {amp!r}.")
    return amp


def amp_dtype(amp: str | bool | None, device: torch.device) -> torch.dtype | None:
    """AMP setting -> autocast dtype (None = full fp32). ``true`` means bf16."""
    amp = normalise_amp(amp)
    if amp is None:
        return None
    if amp == "fp16" and device.type == "cpu":
        raise ConfigError("amp=fp16 needs a GPU; on CPU use amp=bf16 or none.")
    return AMP_DTYPES[amp]


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """On Linux/glibc, keep freed activation memory in the heap instead of returning it to the OS.

    Large CPU activations (tens of MB at batch 256) are otherwise served by fresh ``mmap`` calls
    whose pages fault in on first touch, every batch; that costs more than the harness itself.
    Sets ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's maximum) and ``M_TRIM_THRESHOLD`` = 512 MiB, the
    same as the environment variables ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``.
    Process-wide and applied once; opt out with ``FACEBENCH_MALLOC_TUNING=0``. Returns whether applied.
    """
    global _ALLOCATOR_TUNED
    import os

    if _ALLOCATOR_TUNED:
        return True
    if os.environ.get("FACEBENCH_MALLOC_TUNING", "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, 32 << 20) == 1 and libc.mallopt(-1, 512 << 20) == 1  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok
