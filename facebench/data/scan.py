"""Unreadable image files found before the model loads, and the ``on_bad_image`` policy.

``check_image_file(path)`` is a fast header scan: it returns ``None`` for a file that looks
decodable, else the reason. It catches missing files, folders, empty (0-byte) files, files Pillow
cannot identify (not an image), images of zero size, and truncation:

- PNG: ``Image.verify()`` walks every chunk to IEND and checks its CRC (no decompression);
- JPEG: the file must start with the SOI marker and end with EOI (FF D9), read without Pillow
  (about 20 us a file); one that does not (truncated, or bytes after EOI) is fully decoded to decide;
- any other format: fully decoded (there is no cheap end-of-data check).

A file that passes the scan and still fails to decode later is caught by the runner (see
``deep_scan``). ``screen_dataset`` applies the suite's ``on_bad_image`` policy to one split:
``error`` raises a ``DataError`` listing the files (first 10 and the count); ``skip`` leaves them out
of the split and returns their summary for results.json.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
from PIL import Image

from facebench.data.decode import decode_image
from facebench.errors import BadImageError, DataError

LISTED_IN_ERROR = 10
LISTED_IN_RESULTS = 20
MAX_GROUP_VALUES = 64  # attributes with more distinct values (subjects) are not broken down
THREADS_ABOVE = 4096  # files
SCAN_VERSION = 1  # bump when check_image_file changes what it accepts
MAX_REMEMBERED = 4_000_000  # digests of passed files kept (16 bytes each)
_JPEG_HEAD, _JPEG_TAIL = b"\xff\xd8\xff", b"\xff\xd9"


def check_image_file(path: str) -> str | None:
    """None when ``path`` looks decodable, else why not (one short phrase)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if os.path.isdir(path):
        return "is a folder, not a file"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    try:
        if _jpeg_complete(path):  # the common case, without Pillow's Python-level header parsing
            return None
        with Image.open(path) as im:
            if im.width <= 0 or im.height <= 0:
                return "image of zero size"
            if im.format == "PNG":
                im.verify()
                return None
        decode_image(path)  # no cheap check for this format (or a JPEG without EOI): decode it
    except Exception as err:  # any failure of Pillow on this file makes it a bad image
        return _reason(err)
    return None


def _jpeg_complete(path: str) -> bool:
    """Starts with the JPEG SOI marker and ends with EOI (two reads, no parsing)."""
    with open(path, "rb") as f:
        if f.read(3) != _JPEG_HEAD:
            return False
        f.seek(-2, os.SEEK_END)
        return f.read(2) == _JPEG_TAIL


def _reason(err: Exception) -> str:
    text = str(err)
    if "cannot identify image file" in text:
        return "not an image file Pillow can read"
    if "truncated" in text.lower() or isinstance(err, (EOFError, SyntaxError)):
        return f"truncated or corrupt ({text.split(': ', 1)[-1][:120]})"
    return text.split(": ", 1)[-1][:160] if text.startswith("cannot decode") else f"{type(err).__name__}: {text[:160]}"


def file_paths(dataset) -> list[str] | None:
    """The image file of each sample, or None when the split's pixels are not read from files."""
    paths = getattr(dataset.images, "paths", None)
    return None if paths is None else [str(p) for p in paths]


def scan_dataset(dataset, check: Callable[[str], str | None] = check_image_file) -> list[tuple[int, str]]:
    """(sample index, reason) of every sample whose file fails ``check`` (header scan by default).

    Each distinct file is checked once; many files are checked by threads (the reads release the GIL).
    The header scan skips files whose content digest (``sample_digests``, stat-cached, shared with the
    dataset fingerprint) passed it before: a warm run scans nothing.
    """
    paths = file_paths(dataset)
    if not paths:
        return []
    digests = _digests(dataset) if check is check_image_file else None
    good = _load_good() if digests is not None else set()
    todo = [p for i, p in enumerate(paths) if digests is None or digests[i] not in good]
    unique = list(dict.fromkeys(todo))  # pairs datasets list an image once, crops may share a file
    if len(unique) > THREADS_ABOVE:
        chunks = [unique[i : i + 2048] for i in range(0, len(unique), 2048)]
        with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
            found = [v for part in pool.map(lambda chunk: [check(p) for p in chunk], chunks) for v in part]
    else:
        found = [check(p) for p in unique]
    verdicts = dict(zip(unique, found))
    if digests is not None and unique:
        passed = {digests[i] for i, p in enumerate(paths) if p in verdicts and verdicts[p] is None}
        if passed - good:
            _save_good(good | passed)
    return [(i, verdicts[p]) for i, p in enumerate(paths) if verdicts.get(p) is not None]


def _digests(dataset) -> list[bytes] | None:
    """Each sample's content digest (bytes), or None when the image source has none."""
    get = getattr(dataset.images, "sample_digests", None)
    if get is None:
        return None
    try:
        return [row.tobytes() for row in np.asarray(get())]
    except Exception:  # no digests, no memory of verdicts: scan every file
        return None


def _good_file():
    import PIL

    from facebench import content

    # beside the content digests' folder (<cache root>/hashes), not in it
    return content.cache_dir().parent / "scan" / f"passed-v{SCAN_VERSION}-pillow{PIL.__version__}.npz"


def _load_good() -> set[bytes]:
    """Digests of files that passed the header scan before (this scan version and Pillow version)."""
    try:
        with np.load(_good_file()) as data:
            return {row.tobytes() for row in data["digests"]}
    except Exception:  # absent, unreadable or corrupt: remember nothing
        return set()


def _save_good(digests: set[bytes]) -> None:
    from facebench.content import _write_atomic  # temporary name + rename; read-only or full cache ignored

    if len(digests) > MAX_REMEMBERED:
        return
    rows = np.frombuffer(b"".join(sorted(digests)), dtype=np.uint8).reshape(len(digests), -1)
    _write_atomic(_good_file(), {"digests": rows})


def _decodes(path: str) -> str | None:
    try:
        decode_image(path)
    except Exception as err:
        return _reason(err)
    return None


def deep_scan(dataset) -> list[tuple[int, str]]:
    """Like ``scan_dataset`` but fully decoding every file: for a split whose decoding failed after the scan."""
    return scan_dataset(dataset, check=_decodes)


def _where(dataset) -> str:
    return f"{dataset.name}/{dataset.split}"


def bad_image_error(dataset, bad: list[tuple[int, str]], after_scan: bool = False) -> DataError:
    """A DataError listing the first ``LISTED_IN_ERROR`` bad files and their count."""
    paths = file_paths(dataset) or []
    lines = [f"  {paths[i]}: {reason}" for i, reason in bad[:LISTED_IN_ERROR]]
    if len(bad) > LISTED_IN_ERROR:
        lines.append(f"  ... and {len(bad) - LISTED_IN_ERROR} more")
    when = ("failed to decode while predicting (predictions computed so far are kept in the store)" if after_scan
            else "cannot be read (nothing was run)")
    return DataError(f"{_where(dataset)}: {len(bad)} of {len(dataset)} image files {when}:\n" + "\n".join(lines)
                     + "\nReplace or remove them, or set `defaults: {on_bad_image: skip}` in the suite "
                       "(or pass --on-bad-image skip) to leave them out and count them in results.json.")


def summarize(dataset, bad: list[tuple[int, str]]) -> dict:
    """results.json's ``bad_images``: count, first files (sample ids) with reasons, counts per class and group."""
    index = np.array([i for i, _ in bad], dtype=np.int64)
    out = {"n": len(bad), "of": len(dataset),
           "files": [{"id": str(dataset.ids[i]), "reason": reason} for i, reason in bad[:LISTED_IN_RESULTS]]}
    if dataset.labels is not None:
        out["by_class"] = _counts(dataset.labels[index])
    groups = {key: _counts(np.asarray(values)[index]) for key, values in sorted(dataset.attributes.items())
              if len(np.unique(np.asarray(values).astype(str))) <= MAX_GROUP_VALUES}
    if groups:
        out["by_group"] = groups
    return out


def _counts(values: np.ndarray) -> dict:
    names, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def without(dataset, bad: list[tuple[int, str]]):
    """``dataset`` less the samples in ``bad``; verification pairs touching them are dropped, the rest re-indexed."""
    n = len(dataset)
    keep = np.setdiff1d(np.arange(n), np.array([i for i, _ in bad], dtype=np.int64))
    kept = dataset.subset(keep)
    if dataset.pairs is None:
        return kept
    new_index = np.full(n, -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    a, b = new_index[dataset.pairs["a"]], new_index[dataset.pairs["b"]]
    ok = (a >= 0) & (b >= 0)
    pairs = {k: np.asarray(v)[ok] for k, v in dataset.pairs.items()}
    pairs["a"], pairs["b"] = a[ok], b[ok]
    return dataclasses.replace(kept, pairs=pairs)


def screen_dataset(dataset, policy: str, log: Callable[[str], None], bad: list[tuple[int, str]] | None = None,
                   after_scan: bool = False):
    """Apply ``on_bad_image`` to one split: (the split to use, its ``bad_images`` summary or None).

    ``bad`` defaults to the header scan's findings. ``error`` raises; ``skip`` logs a warning and
    returns the split without the bad samples (a split left with no sample is an error either way).
    """
    bad = scan_dataset(dataset) if bad is None else bad
    if not bad:
        return dataset, None
    if policy != "skip" or len(bad) == len(dataset):
        raise bad_image_error(dataset, bad, after_scan)
    summary = summarize(dataset, bad)
    if dataset.pairs is not None:
        summary["pairs_dropped"] = int(len(dataset.pairs["a"]) - len(without(dataset, bad).pairs["a"]))
    shown = ", ".join(str(dataset.ids[i]) for i, _ in bad[:3]) + (", ..." if len(bad) > 3 else "")
    log(f"warning: {_where(dataset)}: leaving out {len(bad)} of {len(dataset)} samples whose image files "
        f"cannot be read ({shown}); on_bad_image: skip. They are listed in results.json (bad_images).")
    return without(dataset, bad), summary


def screen_splits(splits, policy: str, log: Callable[[str], None], limit: int | None = None) -> dict:
    """Load and screen every split before the model loads: ``splits`` yields (key, loader, split name);
    returns {key: (the split to use, its ``bad_images`` summary or None)}. Each key is loaded once, cut to
    ``limit`` samples (or pairs) first when given (``facebench.data.limit``)."""
    from facebench.data.limit import limited

    out: dict = {}
    for key, loader, split in splits:
        if key not in out:
            out[key] = screen_dataset(limited(loader.load(split), limit), policy, log)
    return out


def predict_screened(predict: Callable, dataset, summary: dict | None, policy: str, log: Callable[[str], None]):
    """``predict(dataset)``; when a file that passed the header scan fails to decode meanwhile
    (a corrupt JPEG body), every file is decoded to find all such files, ``policy`` applies, and with
    ``skip`` the rest is predicted. Returns (dataset, summary, what ``predict`` returned)."""
    try:
        return dataset, summary, predict(dataset)
    except BadImageError:
        bad = deep_scan(dataset)
        if not bad:
            raise DataError(f"{_where(dataset)}: an image failed to decode in a loader worker but every file "
                            f"decodes here; run again with --num-workers 0 to see which.") from None
    log(f"warning: {_where(dataset)}: {len(bad)} image files passed the header scan but do not decode")
    dataset, more = screen_dataset(dataset, policy, log, bad=bad, after_scan=True)
    return dataset, merge_summaries(summary, more), predict(dataset)


def merge_summaries(first: dict | None, second: dict | None) -> dict | None:
    """Two ``bad_images`` summaries of one split (the header scan's, then the decoder's) as one."""
    if not first or not second:
        return first or second
    out = {"n": first["n"] + second["n"], "of": first["of"],
           "files": (first["files"] + second["files"])[:LISTED_IN_RESULTS]}
    for name in ("by_class", "pairs_dropped"):
        if name in first or name in second:
            out[name] = _add(first.get(name), second.get(name))
    groups = sorted(set(first.get("by_group", {})) | set(second.get("by_group", {})))
    if groups:
        out["by_group"] = {g: _add(first.get("by_group", {}).get(g), second.get("by_group", {}).get(g)) for g in groups}
    return out


def _add(a, b):
    if isinstance(a, dict) or isinstance(b, dict):
        a, b = a or {}, b or {}
        return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}
    return (a or 0) + (b or 0)
