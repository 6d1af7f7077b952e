"""GPU throughput of the engine against the bare forward (needs CUDA; not collected by pytest).

    python tests/benchmarks/gpu_throughput.py [--fer-weights PATH] [--faceptor-config PATH] [--out DIR]

For fer-minixception (48x48 grey) and Faceptor at its published size (ViT-B/16, random weights,
112x112 RGB), at batch 256:

- bare: the adapter's forward over tensors already on the GPU, normalised (fp32, or bf16 autocast);
- end to end: ``run_inference`` from image files with a warm decoded-image cache (memory-mapped
  uint8 batches, pinned, non-blocking copies, normalisation on the GPU, outputs to the store), a
  fresh prediction store each round; and the cold run that decodes the files into the cache;
- GPU utilisation sampled with NVML every 20 ms during the end-to-end run;
- bf16 vs fp32 logits (max abs difference), channels-last and torch.compile variants;
- out-of-memory handling on real hardware: the GPU limited to a few GiB, a batch that cannot fit
  is halved until it does, and the outputs equal the unconstrained run.

Prints a table and writes ``gpu_throughput.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from facebench.data.dataset import Dataset  # noqa: E402
from facebench.data.images import FileImages  # noqa: E402
from facebench.data.preprocess import normalise_batch, prepare_uint8  # noqa: E402
from facebench.engine.inference import InferenceSettings, run_inference  # noqa: E402
from facebench.engine.store import PredictionStore  # noqa: E402

BATCH = 256


class Utilisation:
    """Mean GPU utilisation (NVML) over the ``with`` block, sampled every 20 ms."""

    def __enter__(self):
        self.samples, self._stop = [], threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        except Exception:  # noqa: BLE001 - NVML is optional
            self.thread = None
            return self

        def sample():
            while not self._stop.is_set():
                self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                time.sleep(0.02)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.thread is not None:
            self.thread.join()

    @property
    def mean(self):
        return float(np.mean(self.samples)) if self.samples else None


def write_images(folder: Path, n: int, shape: tuple, seed: int = 0) -> Dataset:
    """``n`` random PNG files (so that the engine really decodes them once)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 256, (64, *shape), dtype=np.uint8)
    paths = []
    for i in range(n):
        path = folder / f"{i:06d}.png"
        if not path.exists():
            Image.fromarray(np.roll(base[i % 64], i, axis=0)).save(path, compress_level=1)
        paths.append(path)
    ids = [p.name for p in paths]
    return Dataset("gpu-bench", "test", ids, ("a",), None, FileImages(paths))


ROUNDS = 3


def bare_forward(adapter, ready: torch.Tensor, amp: bool, channels_last: bool = False, rounds: int | None = None):
    rounds = rounds or ROUNDS
    heads = (adapter.default_head,)
    if channels_last:
        ready = ready.contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(rounds + 1):  # the first round warms up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            outs = [adapter.predict(ready[s : s + BATCH], heads=heads)[heads[0]].float().clone()
                    for s in range(0, len(ready), BATCH)]
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times[1:]), torch.cat(outs).cpu().numpy()


def end_to_end(adapter, dataset, cache: Path, amp: bool, rounds: int | None = None, **options):
    rounds = rounds or ROUNDS
    settings = InferenceSettings(batch_size=BATCH, device="cuda", amp="bf16" if amp else "none", progress=False,
                                 **options)
    store = PredictionStore(cache)
    heads = (adapter.default_head,)
    times, util = [], []
    for _ in range(rounds):
        store.clear()
        torch.cuda.synchronize()
        with Utilisation() as u:
            t0 = time.perf_counter()
            preds, report = run_inference(adapter, dataset, store, heads=heads, settings=settings)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        util.append(u.mean)
        assert report.computed_samples == len(dataset)
    return min(times), preds.outputs[heads[0]], util[int(np.argmin(times))]


def bench_model(name, adapter, dataset, cache: Path, results: dict, compile_too: bool, compile_mode=None):
    n = len(dataset)
    adapter.to("cuda").eval()
    spec = adapter.input_spec
    # cold: decode the files into the cache (workers), then infer from it
    settings = InferenceSettings(batch_size=BATCH, device="cuda", amp="bf16", progress=False)
    t0 = time.perf_counter()
    run_inference(adapter, dataset, PredictionStore(cache), heads=(adapter.default_head,), settings=settings)
    cold = time.perf_counter() - t0
    ready = normalise_batch(torch.stack([prepare_uint8(dataset.images.load(i), spec) for i in range(n)]).cuda(), spec)
    row = {"n": n, "input": list(ready.shape[1:]), "cold_end_to_end_bf16_s": cold}
    for amp in (False, True):
        tag = "bf16" if amp else "fp32"
        bare_s, bare_out = bare_forward(adapter, ready, amp)
        e2e_s, e2e_out, util = end_to_end(adapter, dataset, cache, amp)
        row[tag] = {"bare_img_s": n / bare_s, "e2e_img_s": n / e2e_s, "ratio": e2e_s / bare_s,
                    "gpu_util_pct": util, "max_abs_diff_e2e_vs_bare": float(np.abs(e2e_out - bare_out).max())}
        row[f"_{tag}_out"] = bare_out
    row["bf16_vs_fp32_max_abs_diff"] = float(np.abs(row.pop("_bf16_out") - row.pop("_fp32_out")).max())
    bare_cl, _ = bare_forward(adapter, ready, True, channels_last=True)
    e2e_cl, _, util_cl = end_to_end(adapter, dataset, cache, True, channels_last=True)
    row["bf16_channels_last"] = {"bare_img_s": n / bare_cl, "e2e_img_s": n / e2e_cl, "gpu_util_pct": util_cl}
    if compile_too:
        t0 = time.perf_counter()
        adapter.compile(mode=compile_mode)
        try:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                adapter.predict(ready[:BATCH], heads=(adapter.default_head,))
                adapter.predict(ready[-(n % BATCH or BATCH):], heads=(adapter.default_head,))
            compile_s = time.perf_counter() - t0
            bare_c, _ = bare_forward(adapter, ready, True)
            adapter.uncompile()
            e2e_c, _, util_c = end_to_end(adapter, dataset, cache, True, compile=compile_mode or True)
            row["bf16_compiled"] = {"mode": compile_mode or "default", "compile_s": compile_s,
                                    "bare_img_s": n / bare_c, "e2e_img_s": n / e2e_c,
                                    "gpu_util_pct": util_c}
        except Exception as err:  # noqa: BLE001 - report, do not lose the other numbers
            adapter.uncompile()
            row["bf16_compiled"] = {"error": f"{type(err).__name__}: {err}"[:300]}
    results[name] = row
    del ready
    torch.cuda.empty_cache()


def oom_check(adapter, dataset, cache: Path, results: dict, limit_gib: float = 3.0):
    """Cap this process at ``limit_gib`` and ask for a batch that cannot fit: the engine halves it."""
    heads = (adapter.default_head,)
    free = PredictionStore(cache / "free")
    ref, _ = run_inference(adapter, dataset, free, heads=heads,
                           settings=InferenceSettings(batch_size=256, device="cuda", progress=False))
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(limit_gib * 2**30 / total)
    settings = InferenceSettings(batch_size=len(dataset), device="cuda", progress=False, shard_size=10**9)
    import facebench.engine.inference as inf

    seen = {}
    real_init = inf._Forward.__init__

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
    results["oom_halving"] = {"limit_gib": limit_gib, "asked_batch": len(dataset),
                              "halvings": seen["forward"].halvings, "s": seconds,
                              "max_abs_diff_vs_unconstrained": float(np.abs(capped.outputs[heads[0]]
                                                                            - ref.outputs[heads[0]]).max())}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fer-weights")
    parser.add_argument("--faceptor-config", help="config.json listing the published task heads")
    parser.add_argument("--n-fer", type=int, default=32768)
    parser.add_argument("--n-faceptor", type=int, default=8192)
    parser.add_argument("--out", default=".")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--compile-mode", help="torch.compile mode (default, reduce-overhead, max-autotune)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (the minimum is reported)")
    args = parser.parse_args()
    global ROUNDS
    ROUNDS = args.rounds
    if not torch.cuda.is_available():
        sys.exit("CUDA is not available: this benchmark needs a GPU.")
    torch.backends.cudnn.benchmark = True
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "batch": BATCH,
               "rounds": ROUNDS, "argv": sys.argv[1:]}
    work = Path(tempfile.mkdtemp(prefix="fb-gpu-"))
    t0 = time.perf_counter()
    fer_data = write_images(work / "fer", args.n_fer, (48, 48))
    face_data = write_images(work / "face", args.n_faceptor, (112, 112, 3), seed=1)
    results["write_png_s"] = time.perf_counter() - t0

    if args.fer_weights:
        from facebench.models.fer_minixception import FerMiniXceptionAdapter

        bench_model("fer-minixception", FerMiniXceptionAdapter(weights=args.fer_weights), fer_data,
                    work / "cache-fer", results, compile_too=not args.no_compile, compile_mode=args.compile_mode)
        print(json.dumps(results["fer-minixception"], indent=1), flush=True)
    if args.faceptor_config:
        from facebench.models import faceptor as fp
        from facebench.models.faceptor_net import FaceptorConfig, FaceptorNet

        tasks = {t["name"]: t["queries"] for t in json.loads(Path(args.faceptor_config).read_text())["tasks"]
                 if t["queries"]}
        torch.manual_seed(0)
        net = FaceptorNet(FaceptorConfig(tasks=tasks)).eval()
        ckpt = work / "checkpoint_rank0_iter_50000.pth.tar"
        torch.save({"step": 50000, "state_dict": fp.authors_state_dict(net)}, ckpt)
        del net
        adapter = fp.FaceptorAdapter(checkpoint=str(ckpt))
        bench_model("faceptor-vit-b16", adapter, face_data, work / "cache-face", results,
                    compile_too=not args.no_compile, compile_mode=args.compile_mode)
        print(json.dumps(results["faceptor-vit-b16"], indent=1), flush=True)
        oom_check(adapter, face_data.subset(np.arange(min(4096, len(face_data)))), work / "oom", results)
        print(json.dumps(results["oom_halving"], indent=1), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_throughput.json").write_text(json.dumps(results, indent=1))
    print(f"\n{results['device']}, torch {results['torch']}, batch {BATCH}")
    print(f"{'model':<18} {'prec':<6} {'bare img/s':>11} {'e2e img/s':>10} {'e2e/bare':>9} {'GPU util %':>10}")
    for name in ("fer-minixception", "faceptor-vit-b16"):
        if name not in results:
            continue
        row = results[name]
        for tag in ("fp32", "bf16"):
            r = row[tag]
            print(f"{name:<18} {tag:<6} {r['bare_img_s']:>11.0f} {r['e2e_img_s']:>10.0f} {r['ratio']:>9.3f} "
                  f"{r['gpu_util_pct'] or float('nan'):>10.1f}")
        cl = row["bf16_channels_last"]
        print(f"{name:<18} {'bf16cl':<6} {cl['bare_img_s']:>11.0f} {cl['e2e_img_s']:>10.0f}")
        comp = row.get("bf16_compiled", {})
        if "bare_img_s" in comp:
            print(f"{name:<18} {'bf16c':<6} {comp['bare_img_s']:>11.0f} {comp['e2e_img_s']:>10.0f}  "
                  f"(compile {comp['compile_s']:.0f} s)")
        print(f"{name:<18} cold e2e bf16 {row['cold_end_to_end_bf16_s']:.2f} s; bf16 vs fp32 max |diff| "
              f"{row['bf16_vs_fp32_max_abs_diff']:.3g}")


if __name__ == "__main__":
    main()
