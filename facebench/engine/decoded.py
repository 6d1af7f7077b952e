"""Decoded-image cache: each dataset split decoded and preprocessed once into uint8 (N, C, H, W).

Layout under the cache folder::

    decoded/<key>/images.npy   uint8 (N, C, H, W) in dataset order (NumPy .npy, memory-mapped on read)
    decoded/<key>/meta.json    dataset, split, n, shape, the uint8 preprocessing, the content stamp

``key`` = hash(content stamp of the images, dataset fingerprint, uint8 preprocessing). The uint8
preprocessing is the part of an ``InputSpec`` that acts before normalisation (size, channels, colour
order, crop, interpolation, resize arithmetic, grey formula: ``InputSpec.uint8_dict``), so models that
share it (whatever their mean/std) share the entry.
The content digest of image files hashes their bytes (``facebench.content``: a stat cache in front
of BLAKE2b, so a warm key reads no file) and crop boxes: an edited or replaced file gives a new key,
a touched one (same bytes) does not. In-memory images (``ArrayImages``) have no stamp and
are never cached: there is nothing to decode.

An entry is built in a temporary folder and renamed into place, so a killed build leaves no half
entry (the temporary folder is removed on the next build). A build that would not fit on the disk
is skipped with a warning and inference decodes in line instead: nothing fails for want of cache;
so is one whose folder cannot be written (read-only, full, vanished, a file in its place: one
``CacheWarning`` per cache folder).

Integrity: ``meta.json`` records the size of ``images.npy`` and a BLAKE2b checksum, verified by
``get`` on first use in a process (a stat signature of size, mtime and inode skips it afterwards).
Up to ``FULL_CHECK_BYTES`` (64 MiB: FER2013 PrivateTest, 3,589 faces at 64x64 grey, is 14.7 MB and
hashes in about 25 ms) the checksum covers the whole file; above, it covers the .npy header and
``SAMPLE_PAGES`` 4 KiB pages spread evenly over the file (a few ms for 1.3 GB, where a full hash
would cost about 2 s on every run): truncation, a zeroed or overwritten region of any size beyond a
few pages, and a replaced file are caught, a flipped byte between sampled pages of a large entry
is not. A corrupt entry is reported (one ``CacheWarning``), removed and decoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import uuid
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from facebench.engine.progress import progress_bar

from facebench.data.dataset import Dataset
from facebench.data.preprocess import InputSpec, PreparedImages
from facebench.engine.store import cache_unavailable, digest_file, warn_once
from facebench.fingerprint import hash_object

DECODE_BATCH = 256
FULL_CHECK_BYTES = 64 * 2**20  # entries up to this size are hashed whole; larger ones by sampled pages
SAMPLE_PAGES = 256
PAGE = 4096
_verified: dict[str, tuple] = {}  # images.npy -> (stat signature, checksum) verified in this process


def images_checksum(path: Path, size: int) -> str:
    """``blake2b:`` digest of the whole file up to ``FULL_CHECK_BYTES``, else ``blake2b-pages:`` of
    the first page and ``SAMPLE_PAGES`` pages at evenly spaced offsets (the last one ends the file)."""
    if size <= FULL_CHECK_BYTES:
        return digest_file(path)
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for offset in np.linspace(0, size - PAGE, SAMPLE_PAGES).astype(np.int64).tolist():
            f.seek(offset)
            h.update(f.read(PAGE))
    return "blake2b-pages:" + h.hexdigest()


def _check_images(path: Path, meta: dict) -> str | None:
    """What is wrong with an entry's ``images.npy`` (None: nothing, or no checksum recorded)."""
    try:
        st = path.stat()
        signature = (st.st_size, st.st_mtime_ns, st.st_ino, meta.get("checksum"), meta.get("bytes"))
        if "checksum" not in meta or _verified.get(str(path)) == signature:
            return None
        if meta.get("bytes") != st.st_size:
            return f"images.npy has {st.st_size} bytes, meta.json says {meta.get('bytes')}"
        if images_checksum(path, st.st_size) != meta["checksum"]:
            return "images.npy does not match the checksum in meta.json"
    except OSError as err:
        return f"images.npy cannot be read: {type(err).__name__}: {err}"
    _verified[str(path)] = signature
    return None


def uint8_spec(spec: InputSpec) -> dict:
    """The preprocessing that produces the uint8 tensor (everything before ``normalise_batch``)."""
    return spec.uint8_dict()


def content_stamp(images) -> dict | None:
    """What identifies the images' bytes without reading them (``None``: not cacheable)."""
    stamp = getattr(images, "content_stamp", None)
    return stamp() if callable(stamp) else None


class CachedImages:
    """Rows of a memory-mapped uint8 (N, C, H, W) array, already preprocessed for one input spec.

    ``load(i)`` gives row i as (H, W, C) like any image source; ``batch(start, stop)`` the rows
    as one (B, C, H, W) tensor (a slice of the map when the rows are contiguous). Pickles by path,
    so DataLoader workers re-open the map instead of copying it."""

    def __init__(self, path: str | Path, index: np.ndarray | None = None):
        self.path = Path(path)
        self._array: np.ndarray | None = None
        self._fd: int | None = None
        self.index = None if index is None else np.asarray(index, dtype=np.int64)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            # copy-on-write: a writable view (torch takes it without a copy); writes never reach the file
            self._array = np.load(self.path, mmap_mode="c")
        return self._array

    def __getstate__(self):
        return {"path": self.path, "index": self.index, "_array": None, "_fd": None}

    def __len__(self) -> int:
        return len(self.array) if self.index is None else len(self.index)

    def load(self, i: int) -> np.ndarray:
        row = self.array[i if self.index is None else self.index[i]]
        return np.ascontiguousarray(np.transpose(row, (1, 2, 0)))

    def batch(self, start: int, stop: int) -> torch.Tensor:
        first = self._first_row(start, stop)
        rows = self.array[self.index[start:stop]] if first is None else self.array[first : first + stop - start]
        return torch.from_numpy(rows)  # contiguous rows: a view of the map, no copy (the consumer copies once)

    def read_into(self, start: int, stop: int, out: np.ndarray) -> int:
        """Rows ``start:stop`` (in this source's order) into ``out[:stop - start]`` (uint8, C-contiguous,
        as long as a batch); returns the row count. Contiguous rows are read from the file with
        ``preadv`` (one system call, no page faults of the memory map), other rows gathered from the map."""
        rows = stop - start
        first = self._first_row(start, stop)
        dest = out[:rows]
        if first is None:
            np.take(self.array, self.index[start:stop], axis=0, out=dest)
        elif rows and hasattr(os, "preadv"):
            read_rows(self._file(), int(self.array.offset) + first * self.array[0].nbytes, dest)
        else:
            np.copyto(dest, self.array[first : first + rows])
        return rows

    def _first_row(self, start: int, stop: int) -> int | None:
        """The file row of ``start`` when rows ``start:stop`` are contiguous in the file, else None."""
        if self.index is None:
            return start
        idx = self.index[start:stop]
        if not len(idx):
            return 0
        return int(idx[0]) if idx[-1] - idx[0] == len(idx) - 1 and bool(np.all(np.diff(idx) == 1)) else None

    def _file(self) -> int:
        """A read-only descriptor of the file, opened once per object (closed with it)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
            weakref.finalize(self, os.close, self._fd)
        return self._fd

    def subset(self, indices) -> "CachedImages":
        idx = np.asarray(indices, dtype=np.int64)
        return CachedImages(self.path, idx if self.index is None else self.index[idx])

    def describe(self) -> str:
        return f"{len(self)} decoded images from {self.path}"


class DecodedCache:
    """The ``decoded/`` folder of a cache root (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.dir = Path(root) / "decoded"

    def key(self, dataset: Dataset, spec: InputSpec) -> str | None:
        """hash(content digest of the images in dataset order, dataset fingerprint, uint8 preprocessing);
        ``None`` for sources that are not cached (in-memory arrays)."""
        if content_stamp(dataset.images) is None:
            return None
        content = dataset.images.content_fingerprint()  # the bytes of every file, through the stat cache
        return hash_object({"content": content, "dataset": dataset.fingerprint(), "uint8": uint8_spec(spec)},
                           length=24)

    def get(self, key: str, dataset: Dataset, spec: InputSpec) -> CachedImages | None:
        """The entry when it exists, passes its checksum and has the expected shape, else ``None``;
        a corrupt entry is reported (one ``CacheWarning``) and removed, so that it is built again."""
        entry = self.dir / key
        try:
            meta = json.loads((entry / "meta.json").read_text())
        except (OSError, ValueError):
            return None  # no entry (a published entry always has its meta.json)
        problem = _check_images(entry / "images.npy", meta)
        if problem is None:
            expected = (len(dataset), spec.channels, *spec.size)
            try:
                images = CachedImages(entry / "images.npy")
                shape = tuple(images.array.shape)
            except (OSError, ValueError) as err:
                problem = f"images.npy cannot be read: {type(err).__name__}: {err}"
            else:
                if shape != expected or meta.get("n") != len(dataset):
                    problem = f"images.npy holds {shape}, expected {expected}"
        if problem is None:
            return images
        warn_once(f"corrupt:{entry}", f"decoded-image cache entry {key} ({dataset.name}/{dataset.split}) in "
                                      f"{self.dir} is corrupt ({problem}): removed; the images are decoded again.")
        shutil.rmtree(entry, ignore_errors=True)
        return None

    def build(self, key: str, dataset: Dataset, spec: InputSpec, *, num_workers: int = 0,
              progress: bool = True, rank: int = 0, world_size: int = 1) -> CachedImages | None:
        """Decode every image of ``dataset`` into a new entry and return it (``None`` when it
        does not fit on the disk). With ``world_size > 1`` (torchrun) every rank must call this:
        each decodes a contiguous block of rows into its own part file; rank 0 joins them and publishes the entry."""
        from facebench.engine import distributed as fdist

        shape = (len(dataset), spec.channels, *spec.size)
        need = (int(np.prod(shape)) + 4096) * (2 if world_size > 1 else 1)  # the entry, and the rank parts
        tmp, lock = None, None
        if rank == 0:
            try:
                tmp, lock = self._start_build(key, dataset, shape, need)
            except OSError as err:  # read-only, full or vanished cache folder, a file in its way
                cache_unavailable(self.dir.parent, err)
        tmp = fdist.broadcast_object(None if tmp is None else str(tmp))
        if tmp is None:
            return None
        tmp = Path(tmp)
        try:
            block = fdist.shard_indices(len(dataset), rank, world_size)
            # one process writes the entry in place; several write a part file each, which rank 0
            # then joins (ranks never write to the same file: on a network filesystem, pages that
            # two nodes write would be written back whole, one node's over the other's rows)
            target, offset = tmp / "images.npy", int(block[0]) if len(block) else 0
            if world_size > 1:
                target, offset = tmp / f"part-{rank:05d}.npy", 0
                np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(len(block), *shape[1:])).flush()
            if len(block):
                self._fill(target, dataset.subset(block), spec, offset, num_workers, progress and rank == 0,
                           world_size)
            fdist.barrier()
            if rank == 0:
                if world_size > 1:
                    self._join_parts(tmp, world_size)
                self._publish(tmp, key, dataset, spec, shape)
        except OSError as err:
            if rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            if world_size > 1:
                raise
            cache_unavailable(self.dir.parent, err)  # one process: it decodes in line instead
            return None
        except BaseException:
            if rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if lock is not None:
                lock.close()  # releases the lock
        fdist.barrier()
        return self.get(key, dataset, spec)

    def _start_build(self, key: str, dataset: Dataset, shape: tuple, need: int):
        """Rank 0: (temporary folder holding an empty images.npy, its lock), or (None, None) when the
        disk lacks room (with a warning). Raises ``OSError`` when the folder cannot be written."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_tmp()
        free = shutil.disk_usage(self.dir).free
        if need > 0.9 * free:
            warnings.warn(f"not caching decoded {dataset.name}/{dataset.split}: it needs {need / 2**20:.0f} MiB "
                          f"and {self.dir} has {free / 2**20:.0f} MiB free; images are decoded in line "
                          f"(set decode_cache: off to silence this, or free space / use --cache-dir).",
                          stacklevel=3)
            return None, None
        tmp = self.dir / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        lock = None
        try:
            tmp.mkdir()
            (tmp / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
            lock = _hold_lock(tmp / LOCK_NAME)
            np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=shape).flush()
        except OSError:
            if lock is not None:
                lock.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp, lock

    @staticmethod
    def _fill(path: Path, part: Dataset, spec: InputSpec, offset: int, num_workers: int, progress: bool,
              world_size: int) -> None:
        array = np.load(path, mmap_mode="r+")
        loader = DataLoader(PreparedImages(part.images, spec), batch_size=DECODE_BATCH, shuffle=False,
                            num_workers=num_workers)
        suffix = f" [rank 0 of {world_size}]" if world_size > 1 else ""
        position = offset
        bar = progress_bar(len(part), f"decoding {part.name}/{part.split} into the uint8 cache{suffix}", progress)
        try:
            for batch in loader:
                n = batch.shape[0]
                array[position : position + n] = batch.numpy()
                position += n
                bar.update(n)
        finally:
            bar.close()
        array.flush()
        del array

    @staticmethod
    def _join_parts(tmp: Path, world_size: int) -> None:
        """Copy every rank's part file, in rank order, into ``images.npy`` and remove the parts."""
        array = np.load(tmp / "images.npy", mmap_mode="r+")
        position = 0
        for r in range(world_size):
            part_path = tmp / f"part-{r:05d}.npy"
            part = np.load(part_path, mmap_mode="r")
            array[position : position + len(part)] = part
            position += len(part)
            del part
            part_path.unlink()
        if position != len(array):
            raise RuntimeError(f"decoded-cache parts hold {position} rows, expected {len(array)}")
        array.flush()
        del array

    def _publish(self, tmp: Path, key: str, dataset: Dataset, spec: InputSpec, shape: tuple) -> None:
        size = (tmp / "images.npy").stat().st_size
        meta = {"dataset": dataset.name, "split": dataset.split, "n": len(dataset), "shape": list(shape),
                "uint8": uint8_spec(spec), "dataset_fingerprint": dataset.fingerprint(),
                "bytes": size, "checksum": images_checksum(tmp / "images.npy", size)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        (tmp / "owner.json").unlink(missing_ok=True)
        (tmp / LOCK_NAME).unlink(missing_ok=True)  # the builder still holds it open until the build returns
        final = self.dir / key
        try:
            os.rename(tmp, final)
            st = (final / "images.npy").stat()  # just hashed: no need to hash it again in this process
            _verified[str(final / "images.npy")] = (st.st_size, st.st_mtime_ns, st.st_ino, meta["checksum"],
                                                    meta["bytes"])
        except OSError:
            if self.get(key, dataset, spec) is None:  # a broken entry is in the way: replace it
                shutil.rmtree(final, ignore_errors=True)
                try:
                    os.rename(tmp, final)
                    return
                except OSError:
                    pass
            shutil.rmtree(tmp, ignore_errors=True)  # another process published the same entry first: keep theirs

    def _remove_stale_tmp(self) -> None:
        """Temporary folders of builds that were killed (a process of this host that is gone)."""
        for path in self.dir.glob(".tmp-*"):
            try:
                owner = json.loads((path / "owner.json").read_text())
            except (OSError, ValueError):
                continue
            if owner.get("host") != socket.gethostname() or owner.get("pid") == os.getpid():
                continue
            # the builder's lock says whether it still runs, also across PID namespaces (containers
            # sharing a hostname); folders without a lock fall back to the process id
            held = _lock_held(path / LOCK_NAME)
            if held is False or (held is None and not _alive(int(owner.get("pid", 0)))):
                shutil.rmtree(path, ignore_errors=True)

    # -- housekeeping ---------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        rows = []
        if not self.dir.exists():
            return rows
        for entry in sorted(p for p in self.dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                meta = json.loads((entry / "meta.json").read_text())
            except (OSError, ValueError):
                meta = None
            size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
            rows.append({"key": entry.name, "meta": meta, "bytes": size})
        return rows

    def clear(self, keys: list[str] | None = None) -> int:
        """Remove entries (all, or those of ``keys``) that are facebench's (key-named folders with a
        meta.json or images.npy, see ``is_entry_dir``) and the temporary folders of dead builds;
        never another file or folder."""
        from facebench.engine.store import is_entry_dir

        if self.dir.is_dir():
            self._remove_stale_tmp()
        removed = 0
        for row in self.entries():
            entry = self.dir / row["key"]
            if (keys is None or row["key"] in keys) and is_entry_dir(entry, data_files=("images.npy",)):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed


LOCK_NAME = "build.lock"


def read_rows(fd: int, offset: int, out: np.ndarray) -> None:
    """Read ``out.nbytes`` bytes of file ``fd`` from ``offset`` into the C-contiguous ``out``."""
    view = memoryview(out).cast("B")  # a TypeError for a non-contiguous ``out``, never a silent copy
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise OSError(f"unexpected end of file at byte {offset + done} (the decoded-image cache file is "
                          f"shorter than its header says): clear it with `facebench cache clear --only decoded`")
        done += got


def _hold_lock(path: Path):
    """An open file holding an exclusive ``flock`` on ``path`` (None where there is no fcntl)."""
    try:
        import fcntl
    except ImportError:  # Windows: the process-id check alone
        return None
    handle = open(path, "w")  # noqa: SIM115 - held open for the whole build
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def _lock_held(path: Path) -> bool | None:
    """Whether a live process holds the lock on ``path``; None when unknown (no lock file, no fcntl)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        handle = open(path)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
