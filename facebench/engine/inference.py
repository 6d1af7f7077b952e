"""Run a model over a dataset split once, into the prediction store (resumable)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.data.preprocess import InputSpec, PreparedImages, normalise_batch
from facebench.engine import distributed as fdist
from facebench.engine.decoded import CachedImages, DecodedCache
from facebench.engine.progress import progress_bar
from facebench.engine.prefetch import DEFAULT_DEPTH, CachedBatches, LoaderBatches, Prefetcher
from facebench.engine.device import amp_dtype, normalise_amp, select_device, tune_cpu_allocator
from facebench.engine.store import PredictionStore, Predictions, cache_unavailable
from facebench.errors import ModelError
from facebench.models.base import ModelAdapter


def _batch_source(images, spec: InputSpec, settings: "InferenceSettings", device: torch.device):
    """Where the prefetcher reads uint8 batches: rows of the decoded-image cache, read in this process
    (worker processes would only add a copy through shared memory: on an H100 host, slicing +
    pinning + copying 112x112 RGB batches ran at 113k img/s in-process and 29k-38k img/s with 1-4
    workers); else a DataLoader that decodes the images (in worker processes, see ``_workers``)."""
    if isinstance(images, CachedImages):
        return CachedBatches(images, settings.batch_size)
    loader = DataLoader(PreparedImages(images, spec), batch_size=settings.batch_size, shuffle=False,
                        num_workers=_workers(settings.num_workers, images, device))
    return LoaderBatches(loader, (spec.channels, *spec.size), settings.batch_size)


def _device_transform(spec: InputSpec, channels_last: bool):
    """uint8 batch on the device -> the model's input: normalised there (and made channels-last
    there when asked, so that ``_Forward`` has nothing left to do)."""
    def transform(batch: torch.Tensor) -> torch.Tensor:
        x = normalise_batch(batch, spec)
        return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x

    return transform


def _is_oom(err: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", RuntimeError)
    return isinstance(err, oom) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


class _Forward:
    """``adapter.predict`` with the engine's options: channels-last inputs, an optional
    ``torch.compile`` (falls back to eager with a warning when compiling fails), and on
    out-of-memory the batch split in halves and retried; the smaller size is kept for the rest
    of the run. A single image that does not fit raises a ``ModelError`` that says what to do."""

    def __init__(self, adapter: ModelAdapter, heads, features: bool, settings: "InferenceSettings",
                 device: torch.device, autocast):
        self.adapter, self.heads, self.features, self.device = adapter, heads, features, device
        self.autocast, self.channels_last = autocast, settings.channels_last
        self.micro = settings.batch_size
        self.halvings: list[int] = []
        self.compiled = False
        if settings.channels_last:
            adapter.channels_last()
        if settings.compile:
            adapter.compile(mode=None if settings.compile is True else str(settings.compile))
            self.compiled = True

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        parts, start = [], 0
        while start < x.shape[0]:
            chunk = x[start : start + self.micro]
            try:
                out = self._predict(chunk)
                if self.compiled and chunk.shape[0] < x.shape[0]:
                    # a split batch under CUDA graphs (compile modes reduce-overhead, max-autotune): the
                    # next call overwrites this call's outputs, so keep copies
                    out = {k: v.clone() for k, v in out.items()}
                parts.append(out)
            except Exception as err:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                if not _is_oom(err):
                    raise
                self._halve(err)
                continue
            start += chunk.shape[0]
        if len(parts) == 1:
            return parts[0]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _predict(self, chunk):
        try:
            with self.autocast:
                return self.adapter.predict(chunk, heads=self.heads, features=self.features)
        except Exception as err:  # noqa: BLE001
            if not self.compiled or _is_oom(err) or isinstance(err, ModelError):
                raise
            import warnings

            warnings.warn(f"torch.compile of {self.adapter.name} failed ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); running it eagerly.", stacklevel=2)
            self.adapter.uncompile()
            self.compiled = False
            with self.autocast:
                return self.adapter.predict(chunk, heads=self.heads, features=self.features)

    def _halve(self, err):
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.micro <= 1:
            raise ModelError(f"{self.adapter.name}: out of memory on {self.device} with a single image "
                             f"({type(err).__name__}). Free the device (other processes), use amp: bf16, a "
                             f"smaller model, or --device cpu.") from err
        self.micro = max(1, self.micro // 2)
        self.halvings.append(self.micro)
        tqdm.write(f"out of memory on {self.device}: batch halved to {self.micro} and retried "
                   f"(set --batch-size {self.micro} to start there)")


def _stored_copy(t: torch.Tensor) -> torch.Tensor:
    """The copy of an output that the store keeps: float32, except uint8 label maps (parsing heads), kept as uint8."""
    return t.detach().clone() if t.dtype == torch.uint8 else t.detach().to(torch.float32, copy=True)


@dataclass
class InferenceSettings:
    batch_size: int = 256
    device: str = "auto"
    amp: str | bool | None = "none"
    num_workers: int | str = "auto"
    shard_size: int = 2048
    progress: bool = True
    decode_cache: bool = True  # decode each split once into a memory-mapped uint8 cache (file images only)
    channels_last: bool = False  # channels-last inputs and conv weights
    compile: bool | str = False  # torch.compile the adapter's forward (True or a mode: reduce-overhead, ...)
    prefetch: int = DEFAULT_DEPTH  # batches read ahead by a background thread (0: read in line)


@dataclass
class InferenceReport:
    key: str
    reused: bool
    resumed_samples: int
    computed_samples: int
    seconds: float
    device: str
    world_size: int = 1  # processes that shared the inference (torchrun); computed_samples counts them all


class _StoreWrites:
    """The store's writes of one ``run_inference`` call. The first ``OSError`` (a read-only, full or
    vanished cache folder, or a file in its place) is reported once (``cache_unavailable``) and every
    later write is skipped: the run goes on with its predictions in memory."""

    def __init__(self, store: PredictionStore):
        self.store, self.ok = store, True

    def __call__(self, method: str, *args, **kwargs) -> bool:
        """``store.<method>(*args, **kwargs)``; False when it failed or the store is given up."""
        if not self.ok:
            return False
        try:
            getattr(self.store, method)(*args, **kwargs)
            return True
        except OSError as err:
            self.ok = False
            cache_unavailable(self.store.root, err)
            return False


def _workers(setting, images, device: torch.device) -> int:
    """``auto``: no workers for in-memory images; on CPU only the cores torch's own threads leave
    free (a worker competing with the forward pass for a core costs more than decoding in-line:
    measured 1.44x vs 1.11x the bare forward on FER2013 PrivateTest files, 2 cores); on a GPU up
    to 8 workers."""
    if setting != "auto":
        return int(setting)
    if isinstance(images, ArrayImages):
        return 0
    cores = os.cpu_count() or 1
    if device.type == "cpu":
        return max(0, min(8, cores - torch.get_num_threads()))
    return max(0, min(8, cores - 1))


# Test hook (used by tests/test_distributed.py): with FACEBENCH_TEST_STOP_AFTER_SHARDS=k, every
# process raises KeyboardInterrupt right after writing its k-th shard in a run_inference call, as
# if the run had been interrupted there (on CUDA, where a writer thread writes the shards, at the
# first shard boundary after the k-th was written). Unset (the default) it does nothing.
STOP_AFTER_SHARDS_ENV = "FACEBENCH_TEST_STOP_AFTER_SHARDS"


def _decode_workers(setting, world_size: int) -> int:
    """Workers of the decoding pass that fills the cache (nothing else runs then): the cores
    this process's share of the machine has, less one, at most 8; none on a 2-core box."""
    if setting != "auto":
        return int(setting)
    cores = (os.cpu_count() or 1) // max(1, world_size)
    return 0 if cores <= 2 else min(8, cores - 1)


def _with_decoded_images(dataset: Dataset, spec: InputSpec, store: PredictionStore, settings: InferenceSettings,
                         ctx, *, may_build: bool) -> Dataset:
    """``dataset`` with its images read from the decoded-image cache: the entry when there is
    one, else one built now when ``may_build`` (the whole split is about to be predicted), else
    ``dataset`` unchanged (cache off, in-memory images, a resumed run, or no room on the disk)."""
    if not settings.decode_cache:
        return dataset
    cache = DecodedCache(store.root)
    key = cache.key(dataset, spec)
    if key is None:
        return dataset
    found = cache.get(key, dataset, spec)
    # rank 0's answer holds for every rank (the build is collective: all ranks or none). Where rank 0
    # has the entry, a rank that cannot read it decodes in line; where rank 0 has none, every rank
    # builds, even one that sees an entry a concurrent job has just published.
    present = fdist.broadcast_object(found is not None)
    images = found if present else None
    if not present and may_build:
        images = cache.build(key, dataset, spec, num_workers=_decode_workers(settings.num_workers, ctx.world_size),
                             progress=settings.progress, rank=ctx.rank, world_size=ctx.world_size)
    return dataset if images is None else dataclasses.replace(dataset, images=images)


def requested_outputs(adapter: ModelAdapter, heads, features: bool) -> list[str]:
    """The stored outputs of a request: the heads and, with any head, the adapter's ``head_outputs``
    (e.g. a landmark model's ``face_box``); then with features ``"features"`` and the adapter's
    ``feature_outputs`` (per-sample values its forward returns beside them, e.g. ``face_detected``)."""
    extra_head = [o for o in getattr(adapter, "head_outputs", ()) if heads]
    extra_features = [o for o in ("features", *getattr(adapter, "feature_outputs", ())) if features]
    return list(heads) + extra_head + [o for o in extra_features if o not in extra_head]


def split_outputs(adapter: ModelAdapter, outputs) -> tuple[tuple[str, ...], bool]:
    """(heads, features) of a list of stored outputs (the inverse of :func:`requested_outputs`)."""
    extra = {"features", *getattr(adapter, "feature_outputs", ()), *getattr(adapter, "head_outputs", ())}
    return tuple(o for o in outputs if o not in extra), "features" in outputs


def prediction_key(adapter: ModelAdapter, dataset: Dataset, store: PredictionStore, amp=None) -> str:
    """Store key of ``adapter`` on ``dataset``; mixed precision (bf16/fp16) changes the outputs,
    so it is part of the key (``none`` keeps the plain key)."""
    preprocess = adapter.input_spec.fingerprint()
    precision = normalise_amp(amp)
    if precision is not None:
        preprocess = f"{preprocess}+amp={precision}"
    return store.key(adapter.fingerprint(), preprocess, dataset.fingerprint())


def _entry_meta(adapter: ModelAdapter, dataset: Dataset, heads) -> dict:
    return {"model": adapter.name,
            "model_fingerprint": adapter.fingerprint(),
            "preprocess_fingerprint": adapter.input_spec.fingerprint(),
            "dataset": dataset.name,
            "split": dataset.split,
            "dataset_fingerprint": dataset.fingerprint(),
            "heads": {h: list(adapter.heads[h].labels) for h in heads}}


def _store_only_error(adapter, dataset, store, key, outputs):
    from facebench.errors import ModelError

    return ModelError(
        f"no stored predictions of {adapter.name} on {dataset.name}/{dataset.split} (heads {', '.join(outputs)}) "
        f"in {store.root} (key {key}). `facebench rescore` only re-evaluates what is stored; compute them "
        f"with `facebench run SUITE --model {adapter.name} ...` (same model arguments and cache folder).")


class _Shards:
    """The outputs of the batches, gathered on the device and copied out once per shard.

    ``flush`` turns the buffered batches into one shard: on CUDA a non-blocking copy into
    page-locked memory, followed by an event, and the shard is written by a writer thread that
    waits for that event (the host thread that launches the model never waits for the device, nor
    for the disk); on other devices the shard is written at once, in the caller's thread
    (``background`` overrides the choice). Shards are written in order, numbered from ``index``
    (afterwards the next free number); ``written`` counts those written; ``on_shard(ids, outputs)``
    sees each, in the thread that writes it. ``finish`` flushes and waits for every write; an error
    of a write is raised there, or at a later ``flush``."""

    def __init__(self, outputs: list[str], device: torch.device, write, on_shard, index: int,
                 background: bool | None = None):
        self.outputs, self.device, self.write, self.on_shard = outputs, device, write, on_shard
        self.index, self.written, self.buffered = index, 0, 0
        self._ids: list[np.ndarray] = []
        self._outs: dict[str, list[torch.Tensor]] = {name: [] for name in outputs}
        self._writer = None
        if device.type == "cuda" if background is None else background:
            from concurrent.futures import ThreadPoolExecutor

            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facebench-shards")
        self._jobs: list = []

    def add(self, ids: np.ndarray, outs: dict[str, torch.Tensor]) -> None:
        """One batch: its sample ids and its outputs (``_stored_copy`` copies, on the device)."""
        self._ids.append(ids)
        for name in self.outputs:
            self._outs[name].append(outs[name])
        self.buffered += len(ids)

    def flush(self) -> None:
        if not self.buffered:
            return
        shard = self._copy_out()
        if self._writer is None:
            self._write(*shard)
            return
        while self._jobs and self._jobs[0].done():
            self._jobs.pop(0).result()  # a failed write is raised here
        self._jobs.append(self._writer.submit(self._write, *shard))

    def finish(self) -> None:
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)  # every queued shard is written, even when interrupted
                jobs, self._jobs = self._jobs, []
                for job in jobs:
                    job.result()

    def _copy_out(self) -> tuple:
        ids = np.concatenate(self._ids)
        outs = {name: torch.cat(parts) for name, parts in self._outs.items()}
        event = None
        if self.device.type == "cuda":
            staged = {name: torch.empty(v.shape, dtype=v.dtype, pin_memory=True) for name, v in outs.items()}
            for name, v in outs.items():
                staged[name].copy_(v, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
            outs = staged
        self._ids, self._outs, self.buffered = [], {name: [] for name in self.outputs}, 0
        self.index += 1
        return self.index - 1, ids, outs, event

    def _write(self, index: int, ids: np.ndarray, outs: dict[str, torch.Tensor], event) -> None:
        if event is not None:
            event.synchronize()  # in the writer thread
            arrays = {k: v.numpy().copy() for k, v in outs.items()}  # out of the reused page-locked memory
        else:
            arrays = {k: v.cpu().numpy() for k, v in outs.items()}
        self.write(index, ids, arrays)
        if self.on_shard is not None:
            self.on_shard(ids, arrays)
        self.written += 1


def _predict_into_shards(adapter: ModelAdapter, subset: Dataset, store: PredictionStore, key: str, *,
                         outputs: list[str], heads: tuple[str, ...], features: bool,
                         settings: InferenceSettings, device: torch.device, shard_index: int,
                         rank: int | None, bar, on_shard=None, write_shard=None) -> int:
    """Run the model over ``subset`` and write its outputs as shards (named with ``rank`` when given)
    through ``write_shard`` (default ``store.write_shard``); ``on_shard(ids, outputs)`` sees each
    shard. Returns the next free shard index.

    No host synchronisation per batch: batches come from a :class:`Prefetcher` (read ahead, copied
    and normalised on a side stream), the ids are sliced from ``subset.ids`` by position, the
    progress bar counts ``x.shape[0]``, outputs stay on the device until a shard is copied out."""
    write_shard = write_shard or store.write_shard
    stop_after = int(os.environ.get(STOP_AFTER_SHARDS_ENV) or 0)
    if device.type == "cpu":
        tune_cpu_allocator()
    adapter.to(device).eval()
    autocast_dtype = amp_dtype(settings.amp, device)
    autocast = (torch.autocast(device_type=device.type, dtype=autocast_dtype)
                if autocast_dtype is not None else contextlib.nullcontext())
    forward = _Forward(adapter, heads, features, settings, device, autocast)
    shards = _Shards(outputs, device, lambda index, ids, outs: write_shard(key, index, ids, outs, rank=rank),
                     on_shard, shard_index)
    spec = adapter.input_spec
    batches = Prefetcher(_batch_source(subset.images, spec, settings, device), device, depth=settings.prefetch,
                         transform=_device_transform(spec, settings.channels_last))
    position = 0
    try:
        with batches:
            for x in batches:
                out = forward(x)
                n = x.shape[0]
                # copies: outputs of CUDA-graph replays (compile mode reduce-overhead) are overwritten.
                # Made before anything is added, so an interruption never leaves ids without outputs.
                copies = {name: _stored_copy(out[name]) for name in outputs}
                shards.add(subset.ids[position : position + n], copies)
                position += n
                bar.update(n)
                if shards.buffered >= settings.shard_size:
                    shards.flush()
                    if stop_after and shards.written >= stop_after:
                        raise KeyboardInterrupt(f"{STOP_AFTER_SHARDS_ENV}={stop_after} (test hook)")
    finally:
        bar.close()
        shards.finish()  # keep what was computed, even when interrupted
        if forward.compiled:
            adapter.uncompile()
    return shards.index


def run_inference(adapter: ModelAdapter, dataset: Dataset, store: PredictionStore, *,
                  heads: tuple[str, ...], features: bool = False,
                  settings: InferenceSettings | None = None) -> tuple[Predictions, InferenceReport]:
    """Predictions for every sample of ``dataset``, from the store when present, else by running the model.

    Outputs are written in shards of ``shard_size`` samples while running; a run that is
    interrupted resumes from its shards; the finished entry replaces them atomically.
    Under ``torchrun`` (``WORLD_SIZE > 1``) every rank must call this with the same arguments:
    see :func:`_run_inference_distributed`.
    """
    settings = settings or InferenceSettings()
    start = time.perf_counter()
    outputs = requested_outputs(adapter, heads, features)
    key = prediction_key(adapter, dataset, store, settings.amp)
    ctx = fdist.init_from_env(settings.device)  # a plain process: no group, world_size 1
    if ctx.distributed:
        return _run_inference_distributed(adapter, dataset, store, key, outputs, settings, ctx, start)
    if store.has(key, outputs):
        preds = store.load(key).align(dataset.ids)
        return preds, InferenceReport(key, True, 0, 0, time.perf_counter() - start, "store")

    if getattr(adapter, "store_only", False):
        raise _store_only_error(adapter, dataset, store, key, outputs)
    # an entry with fewer outputs is recomputed with the union, so it keeps serving its old requests
    old = store.meta(key)
    if old is not None:
        outputs = sorted(set(outputs) | set(old.get("outputs", [])))
        heads, features = split_outputs(adapter, outputs)

    writes = _StoreWrites(store)
    if getattr(adapter, "precomputed", False):
        # predictions that came from elsewhere (a paper's released logits): looked up by sample id
        preds = _lookup_precomputed(adapter, dataset, outputs, heads, features)
        writes("save", key, preds, _entry_meta(adapter, dataset, heads))
        return preds, InferenceReport(key, False, 0, len(dataset), time.perf_counter() - start, "precomputed")

    done_ids, done_outs, shard_index = store.read_shards(key, outputs)
    sample_keys = _sample_keys(dataset, adapter, settings.amp)
    if not done_ids and shard_index == 0 and sample_keys is not None:
        reused = _reuse_samples(store, dataset, adapter, sample_keys, outputs)
        if reused is not None:  # per-sample keys: unchanged samples come from an older entry, as a shard
            writes("write_shard", key, 0, *reused)
            done_ids, done_outs, shard_index = store.read_shards(key, outputs)
    done = set(np.concatenate(done_ids).tolist()) if done_ids else set()
    remaining = np.array([i for i, sid in enumerate(dataset.ids.tolist()) if sid not in done], dtype=np.int64)
    resumed = len(dataset) - len(remaining)

    device = select_device(settings.device)
    computed = 0
    if len(remaining):
        def keep(ids, outs):
            done_ids.append(ids)
            for k, v in outs.items():
                done_outs[k].append(v)

        bar = progress_bar(len(dataset), f"{adapter.name} on {dataset.name}/{dataset.split}", settings.progress,
                           initial=resumed)
        source = _with_decoded_images(dataset, adapter.input_spec, store, settings, ctx,
                                      may_build=len(remaining) == len(dataset))
        _predict_into_shards(adapter, source.subset(remaining), store, key, outputs=outputs, heads=heads,
                             features=features, settings=settings, device=device, shard_index=shard_index,
                             rank=None, bar=bar, on_shard=keep,
                             write_shard=lambda *a, **k: writes("write_shard", *a, **k))
        computed = len(remaining)

    all_ids = np.concatenate(done_ids) if done_ids else np.array([], dtype=str)
    merged = Predictions(all_ids, {k: np.concatenate(v) for k, v in done_outs.items()})
    preds = merged.align(dataset.ids)
    meta = _entry_meta(adapter, dataset, heads)
    if sample_keys is not None:
        meta["sample_keys"] = {"model": sample_keys[0], "digests": base64.b64encode(sample_keys[1].tobytes()).decode()}
    if writes("save", key, preds, meta):
        preds = store.load(key).align(dataset.ids)
    return preds, InferenceReport(key, False, resumed, computed, time.perf_counter() - start, str(device))


# -- per-sample keys -------------------------------------------------------------------------------------
# A finished entry records, in meta.json ``sample_keys``, the content digest of each sample's pixels (in
# the entry's row order, base64) and a key of everything else its outputs depend on (model fingerprint,
# preprocessing, precision). When a split's key is new (an image edited, added or removed), the rows of
# an entry with the same ``model`` key whose digests are unchanged are copied in as a first shard, and
# only the other samples are run: editing 1 image of 35,000 recomputes that sample, not the split.
# Image files (with crop boxes) and in-memory arrays have per-sample digests; transformed sources and
# multi-process (torchrun) runs always recompute the split.
def _sample_keys(dataset: Dataset, adapter: ModelAdapter, amp) -> tuple[str, np.ndarray] | None:
    """(model key, (N, 16) uint8 digests of each sample's pixels in dataset order), None when unknown."""
    from facebench.content import combine
    from facebench.data.images import FileImages

    images = dataset.images
    if not isinstance(images, (FileImages, ArrayImages)):
        return None
    digests = images.sample_digests()
    boxes = getattr(images, "boxes", None)
    if boxes is not None:  # a crop box is part of the sample's pixels
        raw = np.round(boxes, 6).astype("<f8")
        digests = np.frombuffer(b"".join(bytes.fromhex(combine(d.tobytes(), b.tobytes()))
                                         for d, b in zip(digests, raw)), dtype=np.uint8).reshape(-1, 16)
    model = combine(adapter.fingerprint(), adapter.input_spec.fingerprint(), str(normalise_amp(amp)),
                    type(images).__name__)
    return model, np.ascontiguousarray(digests, dtype=np.uint8)


def _reuse_samples(store: PredictionStore, dataset: Dataset, adapter: ModelAdapter,
                   sample_keys: tuple[str, np.ndarray], outputs: list[str]):
    """(ids, outputs) of the samples an older entry of the same model key already holds, or None."""
    model, digests = sample_keys
    best = None
    try:
        rows = store.entries()
    except OSError:  # a store folder that cannot be listed: nothing to reuse
        return None
    for row in rows:
        meta = row["meta"] or {}
        keys = meta.get("sample_keys") or {}
        if (keys.get("model") != model or meta.get("dataset") != dataset.name or meta.get("split") != dataset.split
                or not set(outputs) <= set(meta.get("outputs", []))):
            continue
        try:
            old = np.frombuffer(base64.b64decode(keys["digests"]), dtype=np.uint8).reshape(-1, 16)
            preds = store.load(row["key"])
        except Exception:  # noqa: BLE001 - an unreadable or corrupt entry simply gives nothing
            continue
        if len(old) != len(preds.ids):
            continue
        where = {d.tobytes(): i for i, d in enumerate(old)}
        pairs = [(i, where[d.tobytes()]) for i, d in enumerate(digests) if d.tobytes() in where]
        if pairs and (best is None or len(pairs) > len(best[1])):
            best = (preds, pairs)
    if best is None:
        return None
    preds, pairs = best
    new_rows, old_rows = np.array(pairs, dtype=np.int64).T
    return dataset.ids[new_rows], {k: preds.outputs[k][old_rows] for k in outputs}


def _lookup_precomputed(adapter, dataset, outputs, heads, features) -> Predictions:
    looked_up = adapter.predict_ids(dataset.ids, heads=heads, features=features)
    return Predictions(dataset.ids, {name: np.asarray(looked_up[name], dtype=np.float32) for name in outputs})


def _load_shared(store: PredictionStore, key: str, dataset: Dataset, ctx) -> Predictions:
    """The finished entry, as every rank sees it on the shared filesystem."""
    try:
        return store.load(key).align(dataset.ids)
    except (KeyError, OSError) as err:
        from facebench.errors import ConfigError

        raise ConfigError(
            f"rank {ctx.rank}: rank 0 saved predictions {key} but this process cannot read them from "
            f"{store.root} ({err}). Multi-process runs need a prediction store on a filesystem that every "
            f"rank sees: pass --cache-dir on a shared folder.") from None


def _run_inference_distributed(adapter: ModelAdapter, dataset: Dataset, store: PredictionStore, key: str,
                               outputs: list[str], settings: InferenceSettings, ctx,
                               start: float) -> tuple[Predictions, InferenceReport]:
    """``world_size`` processes share one split. Rank 0 reads the store's state (complete entry?
    shards of an interrupted run?) and broadcasts it, so every rank sees the same remaining samples;
    each rank predicts its contiguous block of them (:func:`fdist.shard_indices`) into shards named
    with its rank; after a barrier rank 0 assembles all shards by sample id and saves the entry
    atomically, and every rank then loads it. Assumes a store on a filesystem every rank sees."""
    state = None
    if ctx.is_main:
        state = {"reused": store.has(key, outputs), "outputs": outputs}
        old = None if state["reused"] else store.meta(key)
        if old is not None:
            state["outputs"] = sorted(set(outputs) | set(old.get("outputs", [])))
        if not state["reused"] and not getattr(adapter, "store_only", False) \
                and not getattr(adapter, "precomputed", False):
            done_ids, _, next_index = store.read_shards(key, state["outputs"])
            done = set(np.concatenate(done_ids).tolist()) if done_ids else set()
            mask = np.fromiter((sid in done for sid in dataset.ids.tolist()), dtype=bool, count=len(dataset))
            state.update(done=np.packbits(mask), next_index=next_index)
    state = fdist.broadcast_object(state)
    if state["reused"]:
        preds = _load_shared(store, key, dataset, ctx)
        return preds, InferenceReport(key, True, 0, 0, time.perf_counter() - start, "store", ctx.world_size)
    outputs = state["outputs"]
    if getattr(adapter, "store_only", False):
        raise _store_only_error(adapter, dataset, store, key, outputs)
    heads, features = split_outputs(adapter, outputs)

    if getattr(adapter, "precomputed", False):
        if ctx.is_main:
            store.save(key, _lookup_precomputed(adapter, dataset, outputs, heads, features),
                       _entry_meta(adapter, dataset, heads))
        fdist.barrier()
        preds = _load_shared(store, key, dataset, ctx)
        return preds, InferenceReport(key, False, 0, len(dataset), time.perf_counter() - start, "precomputed",
                                      ctx.world_size)

    done = np.unpackbits(state["done"], count=len(dataset)).astype(bool)
    remaining = np.flatnonzero(~done)
    resumed = len(dataset) - len(remaining)
    mine = remaining[fdist.shard_indices(len(remaining), ctx.rank, ctx.world_size)]
    device = fdist.rank_device(settings.device, ctx)
    source = dataset
    if len(remaining):  # collective: every rank takes part in building the cache
        source = _with_decoded_images(dataset, adapter.input_spec, store, settings, ctx,
                                      may_build=len(remaining) == len(dataset))
    if len(mine):
        # one bar, on rank 0, over rank 0's block (the other ranks' blocks are the same size, +-1)
        bar = progress_bar(len(mine), f"{adapter.name} on {dataset.name}/{dataset.split} [rank 0 of {ctx.world_size}]",
                           settings.progress and ctx.is_main)
        _predict_into_shards(adapter, source.subset(mine), store, key, outputs=outputs, heads=heads,
                             features=features, settings=settings, device=device,
                             shard_index=state["next_index"], rank=ctx.rank, bar=bar)
    fdist.barrier()  # every rank's shards are on disk

    error = None
    if ctx.is_main:
        try:
            ids, outs, _ = store.read_shards(key, outputs)
            merged = Predictions(np.concatenate(ids) if ids else np.array([], dtype=str),
                                 {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in outs.items()})
            store.save(key, merged.align(dataset.ids), _entry_meta(adapter, dataset, heads))
        except (KeyError, OSError) as err:
            error = (f"rank 0 could not assemble predictions {key} from the shards of {ctx.world_size} ranks "
                     f"in {store.root}: {err}. Multi-process runs need a prediction store on a filesystem "
                     f"that every rank sees: pass --cache-dir on a shared folder.")
    error = fdist.broadcast_object(error)
    if error is not None:
        from facebench.errors import ConfigError

        raise ConfigError(error)
    preds = _load_shared(store, key, dataset, ctx)
    return preds, InferenceReport(key, False, resumed, len(remaining), time.perf_counter() - start,
                                  str(device), ctx.world_size)

