"""The prefetching batch source (facebench/engine/prefetch.py) on CPU: the thread and ring-buffer
logic that runs on CUDA too (there with a side stream and events), and the engine loop built on it."""

import threading
import time

import numpy as np
import pytest
import torch

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.data.preprocess import InputSpec, normalise_batch, prepare_uint8
from facebench.engine.decoded import CachedImages
from facebench.engine.inference import InferenceSettings, run_inference
from facebench.engine.prefetch import CachedBatches, HostTransfer, LoaderBatches, Prefetcher
from facebench.engine.store import PredictionStore
from facebench.errors import ConfigError, DataError
from facebench.models.base import Head, ModelAdapter


def _rows(n=10, shape=(1, 3, 2)):
    return (np.arange(n * int(np.prod(shape))) % 251).astype(np.uint8).reshape(n, *shape)


@pytest.fixture()
def cached(tmp_path):
    array = _rows(10)
    np.save(tmp_path / "images.npy", array)
    return CachedImages(tmp_path / "images.npy"), array


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "facebench-prefetch" and t.is_alive()]


@pytest.mark.parametrize("depth", [0, 1, 2, 4])
def test_batches_come_in_order_with_the_last_one_partial(cached, depth):
    images, array = cached
    with Prefetcher(CachedBatches(images, 4), "cpu", depth=depth) as batches:
        got = [b.numpy().copy() for b in batches]
    assert [len(b) for b in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(got), array)
    assert not _prefetch_threads()


def test_subsets_read_contiguous_and_scattered_rows(cached):
    images, array = cached
    for index in ([2, 3, 4, 5, 6], [9, 0, 4, 4, 7, 1]):
        with Prefetcher(CachedBatches(images.subset(index), 4), "cpu", depth=2) as batches:
            got = np.concatenate([b.numpy() for b in batches])
        np.testing.assert_array_equal(got, array[index])


def test_loader_batches_are_copied_into_the_ring(cached):
    _, array = cached
    loader = torch.utils.data.DataLoader(torch.from_numpy(array), batch_size=3)
    with Prefetcher(LoaderBatches(loader, array.shape[1:], 3), "cpu", depth=2) as batches:
        got = [b.numpy().copy() for b in batches]
    assert [len(b) for b in got] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(got), array)


def test_a_batch_that_does_not_fit_the_ring_says_so(cached):
    _, array = cached
    loader = torch.utils.data.DataLoader(torch.from_numpy(array), batch_size=5)
    with pytest.raises(DataError, match="does not fit the prefetch buffer"):
        list(Prefetcher(LoaderBatches(loader, array.shape[1:], 4), "cpu", depth=2))
    assert not _prefetch_threads()


def test_transform_runs_before_the_handover(cached):
    images, array = cached
    with Prefetcher(CachedBatches(images, 4), "cpu", depth=3, transform=lambda b: b.float() * 2) as batches:
        got = np.concatenate([b.numpy() for b in batches])
    np.testing.assert_array_equal(got, array.astype(np.float32) * 2)


class _Source:
    """``n`` batches of ``size`` rows filled with the batch number; ``fail_at`` raises there; records
    whether its iterator was closed."""

    def __init__(self, n, size=2, fail_at=None, error=None, delay=0.0):
        self.n, self.batch_size, self.shape = n, size, (1,)
        self.fail_at, self.error, self.delay = fail_at, error, delay
        self.closed, self.filled = False, 0

    def __len__(self):
        return self.n

    def fills(self):
        try:
            for k in range(self.n):
                yield lambda out, k=k: self._fill(k, out)
        finally:
            self.closed = True

    def _fill(self, k, out):
        if k == self.fail_at:
            raise self.error
        time.sleep(self.delay)
        out.fill_(k)
        self.filled += 1
        return self.batch_size


@pytest.mark.parametrize("error", [OSError("disk gone"), KeyboardInterrupt()])
def test_an_error_in_the_producer_is_raised_in_the_consumer_at_its_batch(error):
    source = _Source(10, fail_at=3, error=error)
    seen = []
    with pytest.raises(type(error)) as raised:
        with Prefetcher(source, "cpu", depth=2) as batches:
            for b in batches:
                seen.append(int(b[0, 0]))
    assert raised.value is error and seen == [0, 1, 2]
    assert source.closed and not _prefetch_threads()


def test_leaving_the_loop_early_stops_the_thread_and_closes_the_source():
    source = _Source(1000, delay=0.001)
    with Prefetcher(source, "cpu", depth=3) as batches:
        for b in batches:
            break
    assert source.closed and not _prefetch_threads()
    assert source.filled <= 1 + 3 + 1  # the batch taken, the queue, the one being read: not all 1000


def test_an_interrupt_in_the_consumer_stops_the_thread():
    source = _Source(1000, delay=0.001)
    with pytest.raises(KeyboardInterrupt):
        for k, _ in enumerate(Prefetcher(source, "cpu", depth=2)):
            if k == 5:
                raise KeyboardInterrupt
    assert source.closed and not _prefetch_threads()


def test_a_prefetcher_is_iterated_once_and_depth_is_checked():
    prefetcher = Prefetcher(_Source(3), "cpu", depth=2)
    assert len(list(prefetcher)) == 3
    with pytest.raises(ConfigError, match="iterated once"):
        list(prefetcher)
    with pytest.raises(ConfigError, match=">= 0"):
        Prefetcher(_Source(3), "cpu", depth=-1)


def test_a_consumer_holding_batches_never_sees_them_change():
    """The producer runs far ahead (the consumer is slow) and refills every ring buffer many times
    over; every batch the consumer kept still holds its own rows at the end."""
    source = _Source(40, size=3)
    prefetcher = Prefetcher(source, "cpu", depth=2)
    pointers = [b.data_ptr() for b in prefetcher.buffers]
    held = []
    for b in prefetcher:
        held.append(b)
        if len(held) < 4:
            time.sleep(0.02)  # let the producer refill the ring while these batches are held
    assert [int(b.unique()) for b in held] == list(range(40))
    assert len(prefetcher.buffers) == 2 and [b.data_ptr() for b in prefetcher.buffers] == pointers  # reused
    assert all(b.data_ptr() not in pointers for b in held)


class _LazyCopy:
    """Stands for a CUDA copy event: the copy out of the host buffer happens when it completes
    (``synchronize``), as an asynchronous copy engine would read the buffer later."""

    def __init__(self, host, into):
        self.host, self.into, self.done = host, into, False

    def synchronize(self):
        if not self.done:
            self.into.copy_(self.host)
            self.done = True


class _AsyncLikeTransfer(HostTransfer):
    """A transfer whose copies finish late: refilling a buffer before its copy event has completed
    would hand the consumer the next batch's rows."""

    def send(self, host, transform):
        event = _LazyCopy(host, torch.empty_like(host))
        return event.into, event, event

    def receive(self, x, ready, transform):
        ready.synchronize()
        return x


def test_a_buffer_is_refilled_only_after_its_copy_has_finished():
    source = _Source(30, size=2)
    prefetcher = Prefetcher(source, "cpu", depth=2, transfer=_AsyncLikeTransfer(torch.device("cpu")))
    got = []
    for b in prefetcher:
        time.sleep(0.01)  # the producer is ahead: it wants to refill buffers whose copies are pending
        got.append(int(b.unique()))
    assert got == list(range(30))


def test_the_copy_event_check_is_what_keeps_the_batches_intact(monkeypatch):
    """Control for the test above: without waiting for the copy, the slow consumer gets wrong rows."""
    monkeypatch.setattr(_AsyncLikeTransfer, "wait_refill", staticmethod(lambda copied: None))
    prefetcher = Prefetcher(_Source(30, size=2), "cpu", depth=2, transfer=_AsyncLikeTransfer(torch.device("cpu")))
    got = []
    for b in prefetcher:
        time.sleep(0.01)
        got.append(b.unique().tolist())
    assert got != [[k] for k in range(30)]


# -- the engine loop on top of it --------------------------------------------------------------------
class _Sums(ModelAdapter):
    """Per-image sums and a feature vector; an out-of-memory error above ``limit`` images."""

    name = "sums"

    def __init__(self, limit=10**9):
        super().__init__(limit=limit)
        self.input_spec = InputSpec(size=(6, 6), channels=3, mean=(0.1, 0.2, 0.3), std=(0.2, 0.3, 0.4))
        self.heads = {"expression": Head("expression", ("a", "b"))}
        self.default_head = "expression"
        self.limit, self.sizes = limit, []

    def forward(self, batch, heads, features):
        self.sizes.append(batch.shape[0])
        if batch.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        s = (batch * torch.linspace(0.5, 1.5, batch[0].numel(), device=batch.device).view(batch[0].shape)).flatten(1).sum(1, keepdim=True)
        out = {"expression": torch.cat([s, -s.abs().sqrt()], 1)}
        if features:
            out["features"] = batch.mean(dim=(2, 3))
        return out


def _dataset(tmp_path, n=53, files=False):
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, size=(n, 9, 7, 3), dtype=np.uint8)
    ids = [f"s{i:03d}" for i in range(n)]
    if not files:
        return Dataset("arr", "test", ids, ("a", "b"), None, ArrayImages(array))
    from PIL import Image

    from facebench.data.images import FileImages

    paths = []
    for i, image in enumerate(array):
        paths.append(tmp_path / "img" / f"{i:03d}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(paths[-1])
    return Dataset("files", "test", ids, ("a", "b"), None, FileImages(paths))


def _infer(adapter, dataset, cache, **kw):
    settings = InferenceSettings(**{"batch_size": 8, "device": "cpu", "progress": False, "shard_size": 16, **kw})
    preds, _ = run_inference(adapter, dataset, PredictionStore(cache), heads=("expression",), features=True,
                             settings=settings)
    return preds


def _bare(adapter, dataset, batch=8):
    """The forward alone, batch by batch, over the images prepared and normalised up front."""
    spec = adapter.input_spec
    x = torch.stack([prepare_uint8(dataset.images.load(i), spec) for i in range(len(dataset))])
    outs = []
    with torch.inference_mode():
        for s in range(0, len(x), batch):
            out = adapter.forward(normalise_batch(x[s : s + batch], spec), ("expression",), True)
            outs.append({k: v.float().numpy() for k, v in out.items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


@pytest.mark.parametrize("files", [False, True])
def test_predictions_with_prefetch_equal_the_in_line_path_and_the_bare_forward_bit_for_bit(tmp_path, files):
    dataset = _dataset(tmp_path, files=files)
    bare = _bare(_Sums(), dataset)
    for depth in (0, 1, 3):
        for cache_on in (False, True):
            preds = _infer(_Sums(), dataset, tmp_path / f"c{depth}{cache_on}", prefetch=depth, decode_cache=cache_on)
            for name in ("expression", "features"):
                np.testing.assert_array_equal(preds.outputs[name], bare[name])
    assert not _prefetch_threads()


def test_out_of_memory_halving_still_works_with_prefetch(tmp_path):
    dataset = _dataset(tmp_path)
    reference = _infer(_Sums(), dataset, tmp_path / "ref")
    adapter = _Sums(limit=3)
    preds = _infer(adapter, dataset, tmp_path / "oom", prefetch=3)
    assert adapter.sizes[:3] == [8, 4, 2] and max(adapter.sizes[3:]) == 2
    np.testing.assert_array_equal(preds.outputs["expression"], reference.outputs["expression"])


def test_an_error_in_the_forward_stops_the_thread_and_keeps_the_finished_shards(tmp_path):
    class Breaks(_Sums):
        def forward(self, batch, heads, features):
            if len(self.sizes) == 5:
                raise KeyboardInterrupt
            return super().forward(batch, heads, features)

    dataset = _dataset(tmp_path)
    store = PredictionStore(tmp_path / "c")
    with pytest.raises(KeyboardInterrupt):
        _infer(Breaks(), dataset, tmp_path / "c", prefetch=3)
    assert not _prefetch_threads()
    key = next(iter(p.name for p in (tmp_path / "c" / "predictions").iterdir()))
    ids, _, _ = store.read_shards(key, ["expression", "features"])
    assert sum(len(i) for i in ids) == 5 * 8  # every computed batch kept: two full shards and the rest


def test_no_host_synchronisation_per_batch(tmp_path, monkeypatch):
    """In the loop over a warm decoded cache nothing reads a value back: no ``item``/``tolist``, no
    ``torch.cuda.synchronize``; ``cpu()`` only once per output and shard (where a real device would
    be synchronised)."""
    calls = {"cpu": 0}
    real_cpu = torch.Tensor.cpu

    def counted_cpu(self, *a, **k):
        calls["cpu"] += 1
        return real_cpu(self, *a, **k)

    def forbidden(*a, **k):
        raise AssertionError("a host synchronisation in the inference loop")

    dataset = _dataset(tmp_path, n=64, files=True)
    _infer(_Sums(), dataset, tmp_path / "c")  # decodes the files into the cache (a DataLoader: untimed here)
    PredictionStore(tmp_path / "c").clear()
    adapter = _Sums()
    monkeypatch.setattr(torch.Tensor, "cpu", counted_cpu)
    monkeypatch.setattr(torch.Tensor, "item", forbidden)
    monkeypatch.setattr(torch.Tensor, "tolist", forbidden)
    monkeypatch.setattr(torch.cuda, "synchronize", forbidden)
    _infer(adapter, dataset, tmp_path / "c", shard_size=32)  # 8 batches, 2 shards, 2 outputs
    assert len(adapter.sizes) == 8 and calls["cpu"] == 2 * 2


@pytest.mark.parametrize("background", [False, True])
def test_shards_are_written_in_order_by_the_writer_thread_and_its_errors_are_raised(background):
    from facebench.engine.inference import _Shards

    written, seen = [], []

    def write(index, ids, outs):
        time.sleep(0.01)
        written.append((index, ids.tolist(), outs["h"][:, 0].tolist(), threading.current_thread().name))

    shards = _Shards(["h"], torch.device("cpu"), write, lambda ids, outs: seen.append(ids.tolist()), 7,
                     background=background)
    for k in range(5):
        shards.add(np.array([f"a{k}", f"b{k}"]), {"h": torch.full((2, 3), float(k))})
        if k % 2:
            shards.flush()
    shards.finish()
    assert [w[:3] for w in written] == [(7, ["a0", "b0", "a1", "b1"], [0, 0, 1, 1]),
                                        (8, ["a2", "b2", "a3", "b3"], [2, 2, 3, 3]), (9, ["a4", "b4"], [4, 4])]
    assert seen == [w[1] for w in written] and shards.written == 3 and shards.index == 10
    assert all(w[3].startswith("facebench-shards") == background for w in written)

    def broken(index, ids, outs):
        raise OSError("disk full")

    shards = _Shards(["h"], torch.device("cpu"), broken, None, 0, background=background)
    shards.add(np.array(["a"]), {"h": torch.zeros(1, 3)})
    with pytest.raises(OSError, match="disk full"):
        shards.finish()


# -- CUDA (skipped without a GPU; tests/benchmarks/run_gpu_check.sh runs them on the GPU machine) -----
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_batches_arrive_in_order_and_stay_intact_while_held(tmp_path):
    array = _rows(203, (3, 8, 8))
    np.save(tmp_path / "images.npy", array)
    prefetcher = Prefetcher(CachedBatches(CachedImages(tmp_path / "images.npy"), 8), "cuda", depth=2,
                            transform=lambda b: b.float() + 0.5)
    assert all(b.is_pinned() for b in prefetcher.buffers)
    held = []
    for x in prefetcher:
        torch.cuda._sleep(200_000)  # the consumer's stream is busy: the producer runs ahead
        held.append(x)
    assert [len(x) for x in held] == [8] * 25 + [3] and all(x.is_cuda for x in held)
    np.testing.assert_array_equal(torch.cat(held).cpu().numpy(), array.astype(np.float32) + 0.5)


@cuda
def test_cuda_batch_memory_is_not_reused_before_the_consumer_has_read_it(tmp_path):
    """Each batch is dropped right after queuing work that reads it behind a long sleep: the
    allocator must not hand its memory to the next batch's copy before that work ran."""
    array = _rows(400, (1, 16, 16))
    np.save(tmp_path / "images.npy", array)
    sums = []
    with Prefetcher(CachedBatches(CachedImages(tmp_path / "images.npy"), 16), "cuda", depth=3) as batches:
        for x in batches:
            torch.cuda._sleep(500_000)
            sums.append(x.double().sum(dim=(1, 2, 3)))
            del x
    expected = array.astype(np.float64).sum(axis=(1, 2, 3))
    np.testing.assert_array_equal(torch.cat(sums).cpu().numpy(), expected)


@cuda
def test_cuda_predictions_with_prefetch_equal_the_in_line_path_bit_for_bit(tmp_path):
    dataset = _dataset(tmp_path, n=300, files=True)
    runs = {}
    for depth in (0, 3):
        settings = InferenceSettings(batch_size=32, device="cuda", progress=False, shard_size=64, prefetch=depth)
        preds, report = run_inference(_Sums(), dataset, PredictionStore(tmp_path / f"c{depth}"), heads=("expression",),
                                      features=True, settings=settings)
        assert report.device.startswith("cuda")
        runs[depth] = preds
    for name in ("expression", "features"):
        np.testing.assert_array_equal(runs[3].outputs[name], runs[0].outputs[name])
    np.testing.assert_allclose(runs[3].outputs["expression"], _bare(_Sums(), dataset, 32)["expression"], rtol=1e-5)
    assert not _prefetch_threads()
