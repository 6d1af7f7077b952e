"""Generated splits render their pixels only when they are read (issue 18 item 4): ``LazyImages``, the synthetic
faces' ``draw_split`` (the same bytes as ``render_split``), the noise set, and a run whose predictions are all
stored rendering nothing."""

import pickle

import numpy as np
import pytest

from facebench.data.lazy import LazyImages
from facebench.data.nonfaces import NOISE_KINDS, NoiseImages, _noise_image
from facebench.data.synthetic import SynthFaces
from facebench.errors import DataError
from facebench.synth import generator
from facebench.synth.generator import draw_split, render_split


class _Counting:
    """A picklable render() that counts its calls."""

    def __init__(self, array):
        self.array, self.calls = array, 0

    def __call__(self):
        self.calls += 1
        return self.array


def _images(n=6):
    return np.arange(n * 4 * 4 * 3, dtype=np.int64).reshape(n, 4, 4, 3).astype(np.uint8)


def test_length_subset_and_describe_need_no_pixels_and_the_first_read_renders_once():
    render = _Counting(_images())
    lazy = LazyImages(render, 6)
    part = lazy.subset([4, 1])
    assert len(lazy) == 6 and len(part) == 2 and "rendered on first use" in lazy.describe()
    assert render.calls == 0 and not lazy.rendered and not part.rendered
    np.testing.assert_array_equal(part.load(0), _images()[4])
    np.testing.assert_array_equal(lazy.load(1), _images()[1])
    assert render.calls == 1 and lazy.rendered  # the subset rendered its parent, once for both
    np.testing.assert_array_equal(lazy.subset([2]).array, _images()[[2]])
    assert render.calls == 1


def test_rendered_lazy_images_hash_like_array_images():
    from facebench.data.images import ArrayImages

    lazy, eager = LazyImages(_Counting(_images()), 6), ArrayImages(_images())
    assert lazy.content_fingerprint([5, 0, 3]) == eager.content_fingerprint([5, 0, 3])
    np.testing.assert_array_equal(lazy.sample_digests(), eager.sample_digests())
    grey = LazyImages(lambda: _images()[..., 0], 6)
    assert grey.array.shape == (6, 4, 4, 1)  # (N, H, W) gains its channel axis, as ArrayImages'


@pytest.mark.parametrize("bad", [_images().astype(np.float32), _images()[:5], _images()[0]])
def test_a_render_that_returns_the_wrong_array_is_a_data_error(bad):
    with pytest.raises(DataError, match="render\\(\\) must return a uint8 array of 6 images"):
        LazyImages(lambda: bad, 6).load(0)


def test_pickles_with_its_render_before_and_with_its_pixels_after_rendering():
    lazy = LazyImages(_Counting(_images()), 6, generated=True)
    copy = pickle.loads(pickle.dumps(lazy.subset([3])))
    assert not copy.rendered and copy.generated
    np.testing.assert_array_equal(copy.load(0), _images()[3])
    lazy.load(0)
    copy = pickle.loads(pickle.dumps(lazy))
    assert copy.rendered and copy._render is None
    np.testing.assert_array_equal(copy.array, _images())


@pytest.mark.parametrize("kwargs", [dict(), dict(domain="occlusion", classes="compound", severity=1.7),
                                    dict(domain="low_resolution", imbalance=1.0, size=32), dict(domain="noise")])
def test_draw_split_then_render_gives_render_splits_bytes(kwargs):
    drawn, whole = draw_split("test", 300, seed=5, **kwargs), render_split("test", 300, seed=5, **kwargs)
    for name in ("labels", "ids", "skin_tone", "face_shape", "domain"):
        np.testing.assert_array_equal(getattr(drawn, name), getattr(whole, name))
    rendered = drawn.render()
    assert rendered.dtype == np.uint8 and rendered.tobytes() == whole.images.tobytes()
    assert len(draw_split("val", 0)) == 0 and draw_split("val", 0).render().shape == (0, 48, 48, 3)


def test_synth_split_loads_and_fingerprints_without_rendering(monkeypatch):
    expected = render_split("test", 40, domain="blur").images
    calls = []
    original = generator.SynthDraw.render
    monkeypatch.setattr(generator.SynthDraw, "render", lambda self: calls.append(1) or original(self))
    ds = SynthFaces(n=40, domain="blur").load("test")
    fingerprint = ds.fingerprint()
    assert calls == [] and not ds.images.rendered and ds.images.generated
    assert ds.images.array.tobytes() == expected.tobytes() and calls == [1]
    again = SynthFaces(n=40, domain="blur").load("test")
    again.images.load(0)
    assert again.fingerprint() == fingerprint  # rendered or not, a generated split is known by its tag


@pytest.mark.parametrize("kind", ["mixed", "smooth"])
def test_noise_images_are_lazy_and_the_same_bytes_as_drawn_one_by_one(kind):
    ds = NoiseImages(n=9, seed=4, kind=kind, size=16).load("test")
    assert not ds.images.rendered and ds.images.generated
    kinds = [NOISE_KINDS[i % 4] if kind == "mixed" else kind for i in range(9)]
    expected = np.stack([_noise_image(k, np.random.default_rng([4, i]), 16) for i, k in enumerate(kinds)])
    assert list(ds.attributes["kind"]) == kinds and not ds.images.rendered
    np.testing.assert_array_equal(ds.images.array, expected)


SUITE = """\
name: lazy
defaults: {batch_size: 64, bootstrap: 20, shard_size: 64}
tasks:
  - {name: closed, dataset: synth, split: test, protocol: closed_set, dataset_args: {n: 80}}
  - name: open
    dataset: synth
    split: test
    dataset_args: {n: 80}
    protocol: open_set
    params:
      unknowns:
        - {dataset: noise, split: test, dataset_args: {n: 24}}
        - {dataset: synth, split: test, dataset_args: {classes: compound, n: 30}}
  - name: domains
    dataset: synth
    split: test
    dataset_args: {n: 80}
    protocol: cross_domain
    params:
      targets: [{dataset: synth, split: test, name: blur, dataset_args: {domain: blur, n: 30}}]
"""


def test_a_run_whose_predictions_are_stored_renders_nothing(tmp_path, monkeypatch):
    from facebench.data import nonfaces
    from facebench.runner import run_suite

    suite = tmp_path / "lazy.yaml"
    suite.write_text(SUITE)
    first = run_suite(suite, "synth-cnn", out=tmp_path / "one", progress=False, log=lambda m: None)

    def refuse(*args, **kwargs):
        raise AssertionError("a split whose predictions are stored was rendered")

    monkeypatch.setattr(generator.SynthDraw, "render", refuse)
    monkeypatch.setattr(nonfaces, "_noise_images", refuse)
    again = run_suite(suite, "synth-cnn", out=tmp_path / "two", progress=False, log=lambda m: None)
    assert again.exit_code == first.exit_code == 0
    assert all(t["reused"] for t in again.manifest["timings"].values())
    assert again.results["records"] == first.results["records"]
