"""Multi-process (multi-GPU, multi-node) inference with ``torch.distributed``.

Launch any ``facebench run`` under ``torchrun``::

    torchrun --nproc-per-node 4 -m facebench run suites/fer.yaml --model faceptor
    torchrun --nnodes 2 --node-rank R --master-addr HOST --master-port 29500 --nproc-per-node 8 \\
        -m facebench run suites/fer.yaml --model faceptor --cache-dir /shared/facebench-cache

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` for every
process; :func:`init_from_env` reads them and joins the process group (``nccl`` when the device is
CUDA, else ``gloo``). Without those variables (or with ``WORLD_SIZE=1``) nothing is initialised and
every helper here is a cheap no-op, so the single-process path pays nothing.

Every rank predicts a contiguous block of the samples that the store does not hold yet
(:func:`shard_indices`: no padding, no duplicates) into its own shard files; rank 0 assembles
the entry by sample id. The prediction store must be on a filesystem that every rank sees
(one machine, or a shared/network folder across nodes).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch

from facebench.errors import ConfigError

ENV_TIMEOUT = "FACEBENCH_DIST_TIMEOUT_S"  # collective timeout in seconds (default 1800)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None when no process group is initialised

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (set by torchrun).") from None


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def context() -> DistContext:
    """This process's place in the job: from the initialised process group, else from the
    environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else a single process."""
    dist = _dist()
    local_rank = _env_int("LOCAL_RANK", 0)
    if dist is not None and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, str(dist.get_backend()))
    return DistContext(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), local_rank, None)


def _wants_cuda(device: str | None) -> bool:
    device = (device or "auto").lower()
    return torch.cuda.is_available() and (device == "auto" or device.startswith("cuda"))


def init_from_env(device: str | None = "auto") -> DistContext:
    """Join the process group described by torchrun's environment when ``WORLD_SIZE > 1`` and no
    group exists yet; ``nccl`` when CUDA is available and ``device`` is auto/cuda, else ``gloo``.
    Idempotent; the group is destroyed at interpreter exit."""
    ctx = context()
    if not ctx.distributed or ctx.backend is not None:
        return ctx
    dist = _dist()
    if dist is None:
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed support.")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise ConfigError(f"WORLD_SIZE={ctx.world_size} but {', '.join(missing)} is not set: launch "
                          f"multi-process runs with `torchrun --nproc-per-node N -m facebench run ...`.")
    use_cuda = _wants_cuda(device)
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        _check_local_rank(ctx)
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(backend=backend, init_method="env://", rank=ctx.rank, world_size=ctx.world_size,
                            timeout=timedelta(seconds=_env_int(ENV_TIMEOUT, 1800)))
    atexit.register(cleanup)
    return context()


def _check_local_rank(ctx: DistContext) -> None:
    count = torch.cuda.device_count()
    if ctx.local_rank >= count:
        raise ConfigError(f"LOCAL_RANK={ctx.local_rank} but this node has {count} CUDA device(s): use "
                          f"`torchrun --nproc-per-node {count}` (one process per GPU), or --device cpu.")


def cleanup() -> None:
    """Destroy the process group (registered with ``atexit`` by :func:`init_from_env`)."""
    dist = _dist()
    if dist is not None and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # at exit, a peer may already be gone
            pass


def rank_device(requested: str | None, ctx: DistContext) -> torch.device:
    """The device of this rank: ``auto`` / ``cuda`` -> ``cuda:LOCAL_RANK`` when CUDA is available,
    else CPU; an explicit ``cuda:K``, ``cpu`` or ``mps`` is honoured. One process: ``select_device``."""
    from facebench.engine.device import select_device

    requested = (requested or "auto").lower()
    if not ctx.distributed:
        return select_device(requested)
    if requested in ("auto", "cuda"):
        if torch.cuda.is_available():
            _check_local_rank(ctx)
            return torch.device("cuda", ctx.local_rank)
        if requested == "cuda":
            select_device(requested)  # raises the "CUDA is not available" error
        return torch.device("cpu")
    return select_device(requested)


def shard_indices(n: int, rank: int, world_size: int) -> np.ndarray:
    """Positions ``0..n-1`` owned by ``rank``: contiguous blocks, the first ``n % world_size`` ranks
    one larger. Every position belongs to exactly one rank; nothing is padded or repeated (a rank
    may get none when ``n < world_size``)."""
    if world_size < 1 or not 0 <= rank < world_size or n < 0:
        raise ConfigError(f"need n >= 0 and 0 <= rank < world_size; got n={n}, rank={rank}, world_size={world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return np.arange(start, start + base + (rank < extra), dtype=np.int64)


def barrier() -> None:
    dist = _dist()
    if dist is not None and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable; identity in one process)."""
    dist = _dist()
    if dist is None or not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    dist = _dist()
    if dist is None or not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
