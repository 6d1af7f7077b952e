"""Run a model over a dataset split once, into the prediction store (resumable)."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.data.preprocess import InputSpec, normalise_batch, prepare_uint8
from facebench.engine.device import amp_dtype, select_device, tune_cpu_allocator
from facebench.engine.store import PredictionStore, Predictions
from facebench.models.base import ModelAdapter


class _Preprocessed(torch.utils.data.Dataset):
    """Decode + crop/resize/convert one sample to uint8 (C, H, W); runs in loader workers."""

    def __init__(self, images, spec: InputSpec):
        self.images, self.spec = images, spec

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return prepare_uint8(self.images.load(i), self.spec)


@dataclass
class InferenceSettings:
    batch_size: int = 256
    device: str = "auto"
    amp: str | bool | None = "none"
    num_workers: int | str = "auto"
    shard_size: int = 2048
    progress: bool = True


@dataclass
class InferenceReport:
    key: str
    reused: bool
    resumed_samples: int
    computed_samples: int
    seconds: float
    device: str


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


def prediction_key(adapter: ModelAdapter, dataset: Dataset, store: PredictionStore) -> str:
    return store.key(adapter.fingerprint(), adapter.input_spec.fingerprint(), dataset.fingerprint())


def run_inference(adapter: ModelAdapter, dataset: Dataset, store: PredictionStore, *,
                  heads: tuple[str, ...], features: bool = False,
                  settings: InferenceSettings | None = None) -> tuple[Predictions, InferenceReport]:
    """Predictions for every sample of ``dataset``, from the store when present, else by running the model.

    Outputs are written in shards of ``shard_size`` samples while running; a run that is
    interrupted resumes from its shards; the finished entry replaces them atomically.
    """
    settings = settings or InferenceSettings()
    start = time.perf_counter()
    outputs = list(heads) + (["features"] if features else [])
    key = prediction_key(adapter, dataset, store)
    if store.has(key, outputs):
        preds = store.load(key).align(dataset.ids)
        return preds, InferenceReport(key, True, 0, 0, time.perf_counter() - start, "store")

    if getattr(adapter, "store_only", False):
        from facebench.errors import ModelError

        raise ModelError(
            f"no stored predictions of {adapter.name} on {dataset.name}/{dataset.split} (heads {', '.join(outputs)}) "
            f"in {store.root} (key {key}). `facebench rescore` only re-evaluates what is stored; compute them "
            f"with `facebench run SUITE --model {adapter.name} ...` (same model arguments and cache folder).")
    # an entry with fewer outputs is recomputed with the union, so it keeps serving its old requests
    old = store.meta(key)
    if old is not None:
        outputs = sorted(set(outputs) | set(old.get("outputs", [])))
        heads = tuple(o for o in outputs if o != "features")
        features = "features" in outputs

    if getattr(adapter, "precomputed", False):
        # predictions that came from elsewhere (a paper's released logits): looked up by sample id
        looked_up = adapter.predict_ids(dataset.ids, heads=heads, features=features)
        preds = Predictions(dataset.ids, {name: np.asarray(looked_up[name], dtype=np.float32) for name in outputs})
        store.save(key, preds, {"model": adapter.name, "model_fingerprint": adapter.fingerprint(),
                                "preprocess_fingerprint": adapter.input_spec.fingerprint(),
                                "dataset": dataset.name, "split": dataset.split,
                                "dataset_fingerprint": dataset.fingerprint(),
                                "heads": {h: list(adapter.heads[h].labels) for h in heads}})
        return preds, InferenceReport(key, False, 0, len(dataset), time.perf_counter() - start, "precomputed")

    done_ids, done_outs, shard_index = store.read_shards(key, outputs)
    done = set(np.concatenate(done_ids).tolist()) if done_ids else set()
    remaining = np.array([i for i, sid in enumerate(dataset.ids.tolist()) if sid not in done], dtype=np.int64)
    resumed = len(dataset) - len(remaining)

    device = select_device(settings.device)
    autocast_dtype = amp_dtype(settings.amp, device)
    computed = 0
    if len(remaining):
        if device.type == "cpu":
            tune_cpu_allocator()
        adapter.to(device).eval()
        subset = dataset.subset(remaining)
        loader = DataLoader(
            _Preprocessed(subset.images, adapter.input_spec),
            batch_size=settings.batch_size,
            shuffle=False,
            num_workers=_workers(settings.num_workers, subset.images, device),
            pin_memory=device.type == "cuda",
        )
        buffer_ids: list[np.ndarray] = []
        buffer: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
        buffered = 0
        position = 0
        bar = tqdm(total=len(dataset), initial=resumed, disable=not settings.progress, unit="img",
                   desc=f"{adapter.name} on {dataset.name}/{dataset.split}", leave=False)
        autocast = (torch.autocast(device_type=device.type, dtype=autocast_dtype)
                    if autocast_dtype is not None else contextlib.nullcontext())
        try:
            for batch in loader:
                batch = batch.to(device, non_blocking=True)
                x = normalise_batch(batch, adapter.input_spec)
                with autocast:
                    out = adapter.predict(x, heads=heads, features=features)
                n = batch.shape[0]
                buffer_ids.append(subset.ids[position : position + n])
                for name in outputs:
                    buffer[name].append(out[name].float().cpu().numpy())
                position += n
                buffered += n
                bar.update(n)
                if buffered >= settings.shard_size:
                    store.write_shard(key, shard_index, np.concatenate(buffer_ids),
                                      {k: np.concatenate(v) for k, v in buffer.items()})
                    done_ids.append(np.concatenate(buffer_ids))
                    for k, v in buffer.items():
                        done_outs[k].append(np.concatenate(v))
                    shard_index += 1
                    buffer_ids, buffer, buffered = [], {name: [] for name in outputs}, 0
        finally:
            bar.close()
            if buffered:  # keep what was computed, even when interrupted
                store.write_shard(key, shard_index, np.concatenate(buffer_ids),
                                  {k: np.concatenate(v) for k, v in buffer.items()})
                done_ids.append(np.concatenate(buffer_ids))
                for k, v in buffer.items():
                    done_outs[k].append(np.concatenate(v))
        computed = len(remaining)

    all_ids = np.concatenate(done_ids) if done_ids else np.array([], dtype=str)
    merged = Predictions(all_ids, {k: np.concatenate(v) for k, v in done_outs.items()})
    preds = merged.align(dataset.ids)
    store.save(key, preds, {
        "model": adapter.name,
        "model_fingerprint": adapter.fingerprint(),
        "preprocess_fingerprint": adapter.input_spec.fingerprint(),
        "dataset": dataset.name,
        "split": dataset.split,
        "dataset_fingerprint": dataset.fingerprint(),
        "heads": {h: list(adapter.heads[h].labels) for h in heads},
    })
    preds = store.load(key).align(dataset.ids)
    return preds, InferenceReport(key, False, resumed, computed, time.perf_counter() - start, str(device))
