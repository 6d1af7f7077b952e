"""Row-parallel metric passes (facebench.metrics._threads and its users): the same values and the same
errors as the plain one-thread NumPy expressions, whatever the number of CPUs."""

import numpy as np
import pytest

from facebench.errors import MetricInputError
from facebench.metrics import _threads
from facebench.metrics.calibration import expected_calibration_error, reliability_bins
from facebench.metrics.classification import checked_top1, top1
from facebench.metrics._validation import check_probs

N = _threads.PARALLEL_ROWS + 12_345  # above the threshold: several threads, several cache blocks


def _probs(n=N, c=7, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((n, c))
    p[rng.random(n) < 0.01, 1:3] = 0.5  # ties: argmax must be the first maximum
    p[rng.random(n) < 0.01] = 1.0 / c
    return p / p.sum(axis=1, keepdims=True), rng.integers(0, c, n)


@pytest.fixture(params=[1, 2, 5], ids=lambda k: f"{k}cpu")
def cpus(request, monkeypatch):
    monkeypatch.setattr(_threads, "usable_cpus", lambda: request.param)
    return request.param


def test_map_ranges_and_blocks_cover_every_row_once(cpus):
    seen = np.zeros(N, np.int64)

    def mark(lo, hi):
        seen[lo:hi] += 1
        return hi - lo

    _threads.map_ranges(mark, N, _threads.row_threads(N))
    sizes = _threads.map_blocks(mark, N)
    assert (seen == 2).all()
    assert sizes == [min(_threads.PARALLEL_ROWS, N - lo) for lo in range(0, N, _threads.PARALLEL_ROWS)]


def test_map_ranges_hands_out_several_contiguous_ranges_per_thread():
    calls = []
    _threads.map_ranges(lambda lo, hi: calls.append((lo, hi)), 1000, 2)
    calls.sort()
    assert len(calls) == 2 * _threads.RANGES_PER_THREAD
    assert calls[0][0] == 0 and calls[-1][1] == 1000 and all(a[1] == b[0] for a, b in zip(calls, calls[1:]))
    small = []
    _threads.map_ranges(lambda lo, hi: small.append((lo, hi)), 3, 2)
    assert sorted(small) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_call_all_returns_results_in_order_and_raises(threads):
    assert _threads.call_all([lambda i=i: i * i for i in range(5)], threads) == [0, 1, 4, 9, 16]
    with pytest.raises(ZeroDivisionError):
        _threads.call_all([lambda: 1, lambda: 1 / 0], threads)


def test_top1_and_checked_top1_equal_numpy(cpus):
    p, _ = _probs()
    conf, arg = top1(p)
    checked, conf2, arg2 = checked_top1(p)
    assert checked is p
    np.testing.assert_array_equal(arg, p.argmax(axis=1))
    np.testing.assert_array_equal(conf, p.max(axis=1))
    np.testing.assert_array_equal(arg2, arg)
    np.testing.assert_array_equal(conf2, conf)


def test_checked_top1_other_dtypes_fall_back_to_the_plain_path():
    p, _ = _probs(n=1000)
    checked, conf, arg = checked_top1(p.astype(np.float32))
    assert checked.dtype == np.float64
    np.testing.assert_array_equal(arg, p.astype(np.float32).astype(np.float64).argmax(axis=1))


@pytest.mark.parametrize("row", [0, N // 2, N - 1])
@pytest.mark.parametrize("bad,message", [
    (np.nan, "contains NaN (first in row {row})"),
    (np.inf, "contains inf (first in row {row})"),
    (-0.25, "negative probabilities (first in row {row})"),
    (3.0, "row {row} sums to"),
])
def test_a_bad_row_in_any_block_is_named(cpus, row, bad, message):
    p, y = _probs()
    p[row, 2] = bad
    for call in (lambda: check_probs(p), lambda: checked_top1(p), lambda: expected_calibration_error(y, p)):
        with pytest.raises(MetricInputError, match=message.format(row=row).replace("(", r"\(").replace(")", r"\)")):
            call()


def _reference_bins(y, p, n_bins=15):
    """One-thread oracle: searchsorted bins (right-closed, 0 in bin 0), per-bin sums in sample order."""
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    bins = np.clip(np.searchsorted(np.arange(n_bins + 1) / n_bins, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    correct = np.bincount(bins, weights=(pred == y), minlength=n_bins)
    return counts, correct, conf, bins


def test_reliability_counts_match_a_one_thread_oracle(cpus):
    p, y = _probs(seed=3)
    rb = reliability_bins(y, p)
    counts, correct, conf, bins = _reference_bins(y, p)
    np.testing.assert_array_equal(rb["counts"], counts)
    nz = counts > 0
    np.testing.assert_allclose(rb["accuracy"][nz], correct[nz] / counts[nz], rtol=0, atol=0)
    np.testing.assert_allclose(rb["confidence"][nz], np.bincount(bins, weights=conf, minlength=15)[nz] / counts[nz], rtol=1e-13)


def test_ece_bits_do_not_depend_on_the_number_of_cpus(monkeypatch):
    p, y = _probs(seed=4)
    values = set()
    for k in (1, 2, 3, 8):
        monkeypatch.setattr(_threads, "usable_cpus", lambda k=k: k)
        values.add(expected_calibration_error(y, p))
    assert len(values) == 1
    counts, correct, conf, bins = _reference_bins(y, p)
    nz = counts > 0
    oracle = np.sum(counts[nz] / counts.sum() * np.abs(correct[nz] / counts[nz]
                                                       - np.bincount(bins, weights=conf, minlength=15)[nz] / counts[nz]))
    assert values.pop() == pytest.approx(oracle, rel=1e-12)
