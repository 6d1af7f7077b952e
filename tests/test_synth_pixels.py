"""Pixel oracle of the synthetic face renderer: SHA-256 digests of the uint8 images it draws.

The prediction store is keyed by image content and the demo baseline (baselines/demo.json) by the predictions,
so any change to ``facebench.synth.generator`` must keep these bytes identical (or bump ``GENERATOR_VERSION``
and regenerate the digests and the baseline on purpose). The cases cover every domain and both class sets at the
demo's 48 px with more than one 256-face chunk, non-default severities, and odd and small image sizes.

The digests were computed with the renderer before its issue-18 speed-up (NumPy 2.4, x86-64 with AVX2), those
of ``low_resolution`` with generator version 2 (NumPy 2.2, x86-64 with AVX-512): version 1 resampled through a
BLAS matrix product, whose rounding followed the CPU's OpenBLAS kernel (AVX2 and AVX-512 machines differed in a
few pixels); version 2 sums the ordered taps of each filter, and ``test_low_resolution_bytes_do_not_follow_the_blas_kernel`` pins
that. NumPy's float32 ``exp``/``sqrt`` are vectorised per CPU feature set, so another platform or NumPy release
may still round a few pixels differently: a mismatch there says the platform differs, not necessarily the code;
compare with the renderer of the commit that added this file on that platform before concluding.
"""

from __future__ import annotations

import hashlib

import pytest

from facebench.synth.generator import render_split

# (split, n, seed, domain, classes, severity, size, sha256 of images.tobytes())
CASES = [
    ("test", 300, 0, "clean", "basic", 1.0, 48,
     "92a42b9ea30b3a6d80f388be969c0fe20361c80bda771f20e124103d29e46068"),
    ("test", 300, 0, "blur", "basic", 1.0, 48,
     "6ec28953e97c00f5b9fe5ff3d42ab57b893a6cfab2b08e7c389197ec7d036f4b"),
    ("test", 300, 0, "noise", "basic", 1.0, 48,
     "b147984dff6d08772e7bd76f0ac65f6be81cb4705ea3f109565a473b065af265"),
    ("test", 300, 0, "low_contrast", "basic", 1.0, 48,
     "5b9de0b21bde6049d58b70e62aedc0fcdcc193090e785717698db1a7714a78b3"),
    ("test", 300, 0, "low_resolution", "basic", 1.0, 48,
     "80a04570ae960e530355aecd7edc8bdb4cdbdb64b0af933b93c203c2704fe26a"),
    ("test", 300, 0, "occlusion", "basic", 1.0, 48,
     "a8bae5b691dfcf46dec11e92ce0f030caa7edd6b1d723c8f00ea39eb44d90af4"),
    ("test", 300, 0, "clean", "compound", 1.0, 48,
     "55f8d9bbae00e1531b272efce595b68664de622791965cc190ef87fb86478be0"),
    ("test", 300, 0, "blur", "compound", 1.0, 48,
     "3c7127f739e26c156e21036e64808ee1dacc708761000daddcd0cce2645480bd"),
    ("test", 300, 0, "low_resolution", "compound", 1.0, 48,
     "58a5e57a2fb0eadb662dad5d35bf4e7fb52254eff58410d5882e10b209c052d7"),
    ("test", 300, 0, "occlusion", "compound", 1.0, 48,
     "9ac2e193395509af41ba8d24dbd7cd3fc45ec7996736296936d2f9f6b2936525"),
    ("train", 300, 3, "clean", "basic", 1.0, 48,
     "d53b91368fc314943c0b503f2ad2a70876ed60875a5ee3d2de4a97c6d58a927f"),
    ("val", 300, 0, "noise", "basic", 1.0, 48,
     "9c083c866a889896192f7e3c963c90e91d6d2f747f307826b35d5ceab067d7e5"),
    ("test", 120, 1, "blur", "basic", 0.5, 48,
     "ecd5fee260f8af5e6ec44ca180351baaec8ade60cc0284dff89ed44bacd3c600"),
    ("test", 120, 1, "blur", "basic", 2.5, 48,
     "716e8d743375b66eab2901c820eebeaa8bfccfbc1581d1a844d11713a1266c57"),
    ("test", 120, 1, "occlusion", "basic", 0.5, 48,
     "13973673266f096f44c033b14c443ea6abca001b27aee1027f6d942ebfe37bb2"),
    ("test", 120, 1, "occlusion", "basic", 2.5, 48,
     "7874ccb535b258d287e70a9ba96af576c627125d6a8a1e358fd7d12567adc4c9"),
    ("test", 120, 1, "low_contrast", "basic", 0.5, 48,
     "6dc474997e6210153dedc1898b7b7ad198779740024c08f4fde807e25ebcb793"),
    ("test", 120, 1, "low_contrast", "basic", 2.5, 48,
     "2259a012dfcee9fb047cfc36e9b5ab7e2f21c3f1b4c50567091efa6ad9785b08"),
    ("test", 60, 2, "clean", "basic", 1.0, 16,
     "b6c9d0cbd5cfce76c76de3d0d71f93da9913f0544422d9336cbaafd4aa236350"),
    ("test", 60, 2, "occlusion", "compound", 1.0, 16,
     "df8ba71befb63fa5cc02ca03b4e9e49b35de279ad9b528da0fe8c63a297e3127"),
    ("test", 60, 2, "clean", "basic", 1.0, 31,
     "7332c8058864f16a2239807b50b02b99df79d2868048307110ef43142276f970"),
    ("test", 60, 2, "occlusion", "compound", 1.0, 31,
     "c8ea780ac2b12cb331c25b7df594ad8e9e664c04fb2f510617852123238700a7"),
    ("test", 60, 2, "clean", "basic", 1.0, 64,
     "9ebb4f82c4e14e57a0b5c3806abf8ea6474db7243601842b5c12abb408ccfb71"),
    ("test", 60, 2, "occlusion", "compound", 1.0, 64,
     "4af9808d3e859d367f5c3218e39734b95b9c9d6a2fcf8e2c37548a0aae2d8860"),
    ("test", 60, 2, "clean", "basic", 1.0, 97,
     "ecbff4bf57049a549093705df6117cf4f2d0dca7966faa8c901ed6db2d77f16d"),
    ("test", 60, 2, "occlusion", "compound", 1.0, 97,
     "48f22e1525b49c77a966d250fb05323042e9c3992c27f6158cdc9cd93e367a13"),
    ("test", 60, 2, "low_resolution", "basic", 0.5, 31,
     "c56815ae1beeaf59aad80f533df3ffe8e1f8a7f3d7a276033cd8f3ecdf032b74"),
    ("test", 60, 2, "low_resolution", "compound", 2.0, 97,
     "ad43842cd8d73e57f0ed7cdafcd86b4ed4d701cd353a2d91d4a7314eb4061431"),
]


@pytest.mark.parametrize("split,n,seed,domain,classes,severity,size,digest", CASES,
                         ids=[f"{c[0]}-{c[3]}-{c[4]}-s{c[5]}-{c[6]}px" for c in CASES])
def test_rendered_bytes_unchanged(split, n, seed, domain, classes, severity, size, digest):
    s = render_split(split, n, seed=seed, domain=domain, classes=classes, severity=severity, size=size)
    assert s.images.shape == (n, size, size, 3)
    got = hashlib.sha256(s.images.tobytes()).hexdigest()
    assert got == digest, (
        f"rendered pixels changed for {split}/{domain}/{classes} severity {severity} at {size} px: the renderer "
        "must keep its bytes (see this module's docstring) or bump GENERATOR_VERSION on purpose")


_DIGEST_SCRIPT = """
import hashlib
from facebench.synth.generator import render_split
s = render_split("test", 40, seed=5, domain="low_resolution", classes="basic", size=48)
print(hashlib.sha256(s.images.tobytes()).hexdigest())
"""


def test_low_resolution_bytes_do_not_follow_the_blas_kernel():
    """The same bytes whichever OpenBLAS kernel NumPy picks (version 1's BLAS product differed between the
    Haswell and SkylakeX kernels on one AVX-512 machine). ``OPENBLAS_CORETYPE`` selects the kernel of a
    DYNAMIC_ARCH build; a NumPy linked to another BLAS ignores it (the test then still checks the renderer
    agrees with itself across processes)."""
    import os
    import subprocess
    import sys

    digests = set()
    for core in ("Haswell", "SkylakeX", "Prescott"):
        env = {**os.environ, "OPENBLAS_CORETYPE": core}
        done = subprocess.run([sys.executable, "-c", _DIGEST_SCRIPT], env=env, capture_output=True, text=True,
                              timeout=120, check=True)
        digests.add(done.stdout.strip())
    assert len(digests) == 1, f"low_resolution bytes differ by BLAS kernel: {digests}"


def test_low_resolution_is_area_down_then_bilinear_up():
    """The ordered-tap resample equals the float64 matrix form (down, then up, along both axes) to float32
    rounding: the change of version 2 is the summation order, not the filter."""
    import numpy as np

    from facebench.synth.generator import _area_matrix, _bilinear_matrix, _resample

    rng = np.random.default_rng(0)
    img = rng.random((3, 31, 31, 3), dtype=np.float32)
    m = _bilinear_matrix(8, 31).astype(np.float64) @ _area_matrix(31, 8).astype(np.float64)
    expected = np.einsum("ij,bjwc->biwc", m, img.astype(np.float64))
    expected = np.einsum("ij,bhjc->bhic", m, expected)
    got = _resample(img, 8)
    assert got.dtype == np.float32 and got.shape == img.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    row = _area_matrix(31, 8)[0]  # hand check: pixel 0 of 8 covers source pixels 0..3 and 7/8 of pixel 3
    np.testing.assert_allclose(row[:4], np.array([1, 1, 1, 31 / 8 - 3]) / (31 / 8), rtol=1e-6)
