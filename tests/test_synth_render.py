"""The synthetic-face renderer's speed-ups keep every byte (issue 18): the windowed, blocked, threaded painter
(``facebench.synth.painter``) against the renderer as first written (``tests/_synth_reference.py``: every part on
the whole grid, one chunk at a time), and layer by layer against its own whole-grid painting. Unlike the digests
of tests/test_synth_pixels.py these comparisons hold on any platform."""

from __future__ import annotations

import numpy as np
import pytest
from _synth_reference import reference_render

import facebench.synth.generator as generator
import facebench.synth.painter as painter
from facebench.synth.generator import DOMAINS, draw_split

# (split, n, seed, domain, classes, severity, size)
CASES = [("test", 300, 0, d, "basic", 1.0, 48) for d in DOMAINS]
CASES += [("val", 300, 5, d, "compound", 1.0, 48) for d in ("clean", "occlusion")]
CASES += [("train", 40, 2, d, "basic", s, z) for z in (16, 23, 64, 97) for d, s in (("clean", 1.0), ("blur", 2.0))]


@pytest.mark.parametrize("split,n,seed,domain,classes,severity,size", CASES,
                         ids=[f"{c[0]}-{c[3]}-{c[4]}-s{c[5]}-{c[6]}px" for c in CASES])
def test_the_bytes_of_the_renderer_as_first_written(split, n, seed, domain, classes, severity, size):
    d = draw_split(split, n, seed=seed, domain=domain, classes=classes, severity=severity, size=size)
    assert d.render().tobytes() == reference_render(d).tobytes()


def _with_zero_hair(d, faces):
    """The draw with the hair colour of ``faces`` set to 0 (black hair clipped to 0 happens in real draws): their
    composites can reach exactly 0, where no coverage is negligible, so they are painted on the whole grid."""
    d.parameters["look"]["hair"][faces] = 0.0
    return d


def test_faces_with_a_zero_colour_channel_are_painted_on_the_whole_grid_and_keep_their_bytes():
    d = _with_zero_hair(draw_split("test", 200, seed=3), [0, 7, 150])
    look = {k: v[:256] for k, v in d.parameters["look"].items()}
    full = ~np.isfinite(painter.layer_reach(painter._LAYERS, look)).all(axis=0)
    assert full[[0, 7, 150]].all() and full.sum() < 20
    assert d.render().tobytes() == reference_render(d).tobytes()


def _paint_layer_by_layer(p, e, size, margins):
    """Paints a block on the whole grid and in the layers' windows side by side; the first layer whose windowed
    painting differs fails."""
    fr = painter.Frame(p, size)
    whole = np.empty((3, size, size, len(e)), dtype=np.float32)
    whole[...] = painter._channels(p["bg"].astype(np.float32))
    whole /= 1.0 + 0.12 * fr.Y
    windowed, windowed_area = whole.copy(), 0
    for k, layer in enumerate(painter._LAYERS):
        r0, r1, c0, c1 = painter.pixel_boxes(p, size, layer.bounds(p, e, margins[k])).T
        layer.draw(whole, fr, p, e)
        if max(r1) > min(r0) and max(c1) > min(c0):
            rows, cols = slice(min(r0), max(r1)), slice(min(c0), max(c1))
            layer.draw(windowed[:, rows, cols], fr.crop(rows, cols), p, e)
            windowed_area += (rows.stop - rows.start) * (cols.stop - cols.start)
        assert whole.tobytes() == windowed.tobytes(), f"layer {k} ({layer.draw}) changed a value outside its window"
    return windowed_area / (size * size * len(painter._LAYERS))


@pytest.mark.parametrize("size", [20, 48, 80])
def test_every_layer_paints_in_its_window_what_it_paints_on_the_whole_grid(size):
    d = _with_zero_hair(draw_split("test", 3 * painter.BLOCK, seed=11, classes="compound", size=size), [3])
    p, e = d.parameters["look"], d.parameters["expr"]
    reach = painter.layer_reach(painter._LAYERS, p)
    margins = reach * ((0.55 / size) / p["scale"])
    full = ~np.isfinite(reach).all(axis=0)
    for idx in painter.blocks(full, p["cx"], p["cy"]):
        fraction = _paint_layer_by_layer({k: v[idx] for k, v in p.items()}, e[idx], size, margins[:, idx])
        if full[idx].any():  # the block of the zero-hair face: the whole grid
            assert fraction == 1.0
        else:  # the speed-up itself: the windows are a fraction of the grid (about 0.7, 0.35, 0.25)
            assert fraction < {20: 0.8, 48: 0.45, 80: 0.35}[size]


def test_block_size_order_and_threads_change_no_byte(monkeypatch):
    d = draw_split("test", 600, seed=4, domain="low_resolution")  # its resampling is a BLAS product
    expected = d.render()
    monkeypatch.setattr(painter, "BLOCK", 5)
    monkeypatch.setattr(painter, "_BAND", 3)
    for threads in (1, 3):
        monkeypatch.setattr(generator, "render_threads", lambda: threads)
        assert d.render().tobytes() == expected.tobytes()


def test_layer_reach_bounds():
    p = {"bg": np.full((2, 3), 0.56), "skin": np.array([[0.5, 0.5, 0.5], [0.5, 0.0, 0.5]])}
    layers = [painter._Layer(None, None, lambda p: [p["skin"]]), painter._Layer(None, None, lambda p: [1.0])]
    reach = painter.layer_reach(layers, p)
    floor = 25 * np.log(2.0)
    assert floor < reach[0, 0] < floor + 0.02  # colour and background floor (0.56 / 1.12) alike
    white_over_half = floor + np.log(1.001 / (0.5 * 0.999 - painter._UNDERSHOOT)) + 0.01
    assert reach[1, 0] == pytest.approx(white_over_half)
    assert np.isinf(reach[:, 1]).all()  # a colour channel at 0: the whole grid
