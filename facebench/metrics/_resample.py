"""Exact bootstrap counts per stratum, drawn without a per-draw index, and the open-set statistics
read off them without sorting again.

Resampling ``N`` samples with replacement gives each sample a count; the count vector is exactly
``Multinomial(N, (1/N, ..., 1/N))``. For a stratum of at least 8192 samples :class:`StratumCounts`
draws that vector directly, as uint8, from 8 random bits per sample (a few SIMD compares instead of
drawing ``N`` indices and counting them); a smaller stratum draws its ``N`` indices (``integers``) and
counts them, which costs less than the steps below at that size:

1. every sample gets an iid ``Poisson(lam)`` count, ``lam = max(0, 1 - 4 / sqrt(N))``: its 8 random
   bits pick one of 256 equally likely buckets of the uniform; buckets that lie inside one step of
   the Poisson quantile function give that count, the few that straddle a step of the CDF are
   refined with a float64 uniform inside the bucket, so the counts are Poisson up to the float64
   CDF (as exact as NumPy's own samplers). The buckets are relabelled so that the plain ones come
   first, in increasing count, and the straddling ones last: a count is a sum of compares;
2. given their sum ``S``, iid Poisson counts are ``Multinomial(S, 1/N)``; when ``S <= N`` (all but
   about 3e-5 of the time) ``N - S`` further uniform draws complete ``Multinomial(N, 1/N)``; when
   ``S > N``, ``S - N`` of the ``S`` draws are removed uniformly without replacement, which is exact too.

Layout: the ``N`` samples of a stratum ("cells", in a fixed order chosen by the caller) are stored
in a ``(L, N // L + 1)`` array, either block-major (cell ``c`` at row ``c % L``, column ``c // L``;
prefix sums over cells are then ``L`` vectorised row additions) or in cell order, with zero padding
cells at the end. ``L`` is 64, or 1 for strata under 8192 samples (where a plain ``cumsum`` is faster).

Random streams depend on the seed alone: the bytes of resample ``b`` sit at a fixed offset of one
PCG64 stream and its refinements, completions (and small strata's indices) at offset ``b * 2**40``
of a second one, so neither the chunk size nor the number of threads changes a result.
"""

from __future__ import annotations

import copy
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["StratumCounts", "OpenSetResampler", "ResampleStreams", "iter_counts", "map_ranges", "default_threads",
           "open_set_strata"]

_ROWS = 64  # rows of the layout of a large stratum
_SMALL = 8192  # strata below this size use one row
_FIX_STRIDE = 2**40  # draws of the correction stream reserved per resample
_BUCKETS = 256
_SIGMAS = 4.0
_KNOWN_BLOCK = 4096  # known cells per block of the known prefix sums (large strata)
_POISSON_TERMS = 48


def _poisson_cdf(lam: float) -> np.ndarray:
    """``P(X <= k)`` for ``k = 0..47`` (float64); ``[1.0]`` when ``lam == 0``."""
    if lam <= 0.0:
        return np.ones(1)
    pmf = np.empty(_POISSON_TERMS)
    pmf[0] = math.exp(-lam)
    for k in range(1, _POISSON_TERMS):
        pmf[k] = pmf[k - 1] * lam / k
    return np.cumsum(pmf)


def _buckets(cdf: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Relabelled buckets: ``(thresholds, first_special, special_buckets)``.

    Plain buckets (no CDF step strictly inside) come first in increasing count, so a plain label
    ``r`` has count ``#{thresholds <= r}``; labels ``>= first_special`` are the straddling buckets,
    ``special_buckets[r - first_special]`` their original position.
    """
    edges = np.arange(_BUCKETS + 1, dtype=np.float64) / _BUCKETS
    count = np.searchsorted(cdf, edges[:-1], side="right")  # count of a uniform at the bucket's low edge
    straddles = np.searchsorted(cdf, edges[1:], side="left") > count
    plain = count[~straddles]  # non-decreasing: the counts of the plain buckets in order
    top = int(plain.max()) if plain.size else 0
    thresholds = np.searchsorted(plain, np.arange(1, top + 1), side="left").astype(np.uint8)
    return thresholds, int(plain.size), np.flatnonzero(straddles)


def _single_steps(cdf: np.ndarray, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each straddling bucket: the count at its low edge and its one CDF step inside (NaN when
    several steps fall inside; those are resolved with ``searchsorted``)."""
    low = np.searchsorted(cdf, buckets / _BUCKETS, side="right")
    inside = np.searchsorted(cdf, (buckets + 1) / _BUCKETS, side="left") - low
    step = np.where(inside == 1, cdf[np.minimum(low, cdf.shape[0] - 1)], np.nan)
    return low.astype(np.uint8), step


class StratumCounts:
    """Exact ``Multinomial(n, 1/n)`` resample counts of a stratum of ``n`` cells (see the module).

    ``block_major=True`` stores them in the block-major ``(rows, cols)`` layout (fast prefix sums);
    ``False`` in cell order, shape ``(cols, rows)`` (row ``j`` holds cells ``j*rows .. j*rows+rows-1``).
    ``sigmas`` sets ``lam = 1 - sigmas / sqrt(n)``; tests lower it to exercise the removal path.
    """

    def __init__(self, n: int, block_major: bool = False, sigmas: float = _SIGMAS):
        self.n = int(n)
        self.block_major = block_major
        self.small = self.n < _SMALL
        self.rows = 1 if self.small else _ROWS
        self.cols = self.n // self.rows + 1
        self.size = self.rows * self.cols
        self.n_bytes = 0 if self.small else self.size  # bytes of the bit stream per resample
        self.shape = (self.rows, self.cols) if block_major else (self.cols, self.rows)
        self.lam = max(0.0, 1.0 - sigmas / math.sqrt(self.n))
        self.cdf = _poisson_cdf(self.lam)
        self.thresholds, self.first_special, self.special_buckets = _buckets(self.cdf)
        self.special_low, self.special_step = _single_steps(self.cdf, self.special_buckets)
        self.padding = self.position(np.arange(self.n, self.size))
        self._flags = np.empty(self.size, dtype=np.bool_)

    def clone(self) -> "StratumCounts":
        """A copy that shares the tables and has its own work buffer (one per thread)."""
        twin = copy.copy(self)
        twin._flags = np.empty(self.size, dtype=np.bool_)
        return twin

    def position(self, cells: np.ndarray) -> np.ndarray:
        """Flat index in the layout of each cell."""
        return (cells % self.rows) * self.cols + cells // self.rows if self.block_major else cells

    def in_cell_order(self, counts: np.ndarray) -> np.ndarray:
        """The ``n`` counts of a layout, cell by cell."""
        return (counts.T if self.block_major else counts).reshape(-1)[: self.n]

    def draw(self, bits: np.ndarray, fix: np.random.Generator, out: np.ndarray) -> np.ndarray:
        """Counts of one resample into ``out`` (uint8, ``self.shape``) from ``self.n_bytes`` random bytes
        ``bits`` and the resample's generator ``fix``."""
        flat = out.reshape(-1)
        if self.small:  # a cell count above 255 has probability < 1e-300 here
            flat[:] = np.bincount(fix.integers(0, self.n, self.n), minlength=self.size)
            return out
        total = self._compare(bits, flat)
        if self.first_special < _BUCKETS:
            total += self._refine(bits, flat, fix)
        total -= int(flat[self.padding].sum())
        flat[self.padding] = 0
        if total < self.n:
            self._add(flat, self.position(fix.integers(0, self.n, self.n - total)))
        elif total > self.n:
            self._remove(out, total, total - self.n, fix)
        return out

    def _compare(self, bits: np.ndarray, flat: np.ndarray) -> int:
        """Counts of the plain buckets (a sum of compares); returns their total."""
        if not self.thresholds.size:
            flat[:] = 0
            return 0
        np.greater_equal(bits, self.thresholds[0], out=flat.view(np.bool_))
        total = int(np.count_nonzero(flat))
        for t in self.thresholds[1:]:
            np.greater_equal(bits, t, out=self._flags)
            total += int(np.count_nonzero(self._flags))
            np.add(flat, self._flags, out=flat)
        return total

    def _refine(self, bits: np.ndarray, flat: np.ndarray, fix: np.random.Generator) -> int:
        """Exact counts of the straddling buckets (a float64 uniform inside the bucket against the
        CDF step(s) there); returns the change of the total."""
        special = np.flatnonzero(bits >= self.first_special)
        if not special.size:
            return 0
        label = bits[special].astype(np.intp) - self.first_special
        u = (self.special_buckets[label] + fix.random(special.size)) / _BUCKETS
        step = self.special_step[label]
        counts = self.special_low[label] + (u >= step).astype(np.uint8)  # NaN step: False, fixed below
        several = np.flatnonzero(np.isnan(step))
        counts[several] = np.searchsorted(self.cdf, u[several], side="right")
        change = int(counts.sum(dtype=np.int64)) - int(flat[special].sum(dtype=np.int64))
        flat[special] = counts
        return change

    @staticmethod
    def _add(flat: np.ndarray, where: np.ndarray) -> None:
        """One more draw at each entry of ``where`` (repeats add up)."""
        where, times = np.unique(where, return_counts=True)
        flat[where] += times.astype(np.uint8)

    def _remove(self, out: np.ndarray, total: int, excess: int, fix: np.random.Generator) -> None:
        """Remove ``excess`` of the ``total`` draws, chosen uniformly without replacement."""
        ranks = fix.choice(total, size=excess, replace=False)
        owner = np.searchsorted(np.cumsum(self.in_cell_order(out), dtype=np.int64), ranks, side="right")
        where, times = np.unique(self.position(owner), return_counts=True)
        out.reshape(-1)[where] -= times.astype(np.uint8)


class ResampleStreams:
    """The random streams of a bootstrap from ``seed``: resample ``b`` reads its bytes at offset
    ``b * words`` (64-bit words) of one PCG64 stream and its corrections from offset ``b * 2**40`` of a
    second one. Each caller (thread) gets its own generator from :meth:`corrections`."""

    def __init__(self, seed, n_bytes: int):
        self._bits_seq, self._fix_seq = np.random.SeedSequence(seed).spawn(2)
        self.words = -(-n_bytes // 8)
        self.n_bytes = n_bytes

    def bits(self, first: int, count: int) -> np.ndarray:
        """``(count, n_bytes)`` uint8 random bytes of resamples ``first .. first + count - 1``."""
        gen = np.random.PCG64(self._bits_seq)
        gen.advance(first * self.words)
        return gen.random_raw((count, self.words)).view(np.uint8)[:, : self.n_bytes]

    def corrections(self) -> "_Corrections":
        return _Corrections(np.random.PCG64(self._fix_seq))


class _Corrections:
    """A generator placed, on request, at the start of the corrections of resample ``b``."""

    def __init__(self, bit_generator: np.random.PCG64):
        self._start = bit_generator.state
        self._bits = bit_generator
        self.generator = np.random.Generator(bit_generator)

    def at(self, b: int) -> np.random.Generator:
        self._bits.state = self._start
        self._bits.advance(b * _FIX_STRIDE)
        return self.generator


def _largest_at_most(target: float, n: int) -> int:
    """Largest count ``c`` in ``0..n`` with ``c / n <= target`` (float64 division, as the curves compare)."""
    c = min(n, max(0, math.floor(target * n)))
    while c < n and (c + 1) / n <= target:
        c += 1
    while c > 0 and c / n > target:
        c -= 1
    return c


def _smallest_at_least(target: float, n: int) -> int:
    """Smallest count ``c`` in ``0..n`` with ``c / n >= target`` (``n`` when none reaches it)."""
    c = min(n, max(0, math.ceil(target * n)))
    while c > 0 and (c - 1) / n >= target:
        c -= 1
    while c < n and c / n < target:
        c += 1
    return c


def iter_counts(strata: tuple[StratumCounts, ...], streams: ResampleStreams, first: int, stop: int, chunk: int):
    """Yield ``(b, counts)`` for ``b = first..stop-1``: one uint8 layout (``s.shape``) per stratum ``s``.

    ``chunk`` resamples' random bytes are drawn at once; the count arrays are buffers that the next
    resample overwrites. The counts of resample ``b`` depend on the seed of ``streams`` only.
    """
    sizes = [s.n_bytes for s in strata]
    outs = [np.empty(s.shape, dtype=np.uint8) for s in strata]
    offsets = np.cumsum([0] + sizes)
    corrections = streams.corrections()
    for start in range(first, stop, chunk):
        block = streams.bits(start, min(chunk, stop - start))
        for row, bits in enumerate(block):
            fix = corrections.at(start + row)
            for s, out, lo, hi in zip(strata, outs, offsets[:-1], offsets[1:]):
                s.draw(bits[lo:hi], fix, out)
            yield start + row, outs


def default_threads(n_cells: int, n_resamples: int) -> int:
    """Threads for a bootstrap: 1 for small work (under ~2e7 cell draws), else the usable CPUs (at most 8)."""
    if n_cells * n_resamples < 20_000_000:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def map_ranges(work, n_resamples: int, threads: int) -> None:
    """Call ``work(first, stop)`` on ``threads`` contiguous ranges covering ``0..n_resamples-1``, in threads
    (NumPy releases the GIL in the passes that matter); exceptions propagate."""
    threads = max(1, min(threads, n_resamples))
    if threads == 1:
        work(0, n_resamples)
        return
    bounds = np.linspace(0, n_resamples, threads + 1).round().astype(int)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(work, int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]:
            future.result()


def open_set_strata(n_known: int, n_unknown: int) -> tuple[StratumCounts, StratumCounts]:
    """The strata of an open-set resample: known cells in cell order, unknown cells block-major."""
    return StratumCounts(n_known), StratumCounts(n_unknown, block_major=True)


class OpenSetResampler:
    """AUROC, FPR@TPR (known positive, interp; unknown positive, first) and OSCR of resamples given as
    counts on a fixed sorted order, without sorting again.

    Known cells are the known samples in the order ``known_cells`` (descending score), in cell order;
    unknown cells the unknown samples in ascending score, in the block-major layout (``self.strata``
    are their :class:`StratumCounts`). Work buffers are allocated once; :meth:`statistics` makes a handful of
    vectorised passes over uint8 / int32 arrays.
    """

    def __init__(self, known: np.ndarray, correct: np.ndarray, unknown: np.ndarray, known_cells: np.ndarray):
        nk, nu = known.shape[0], unknown.shape[0]
        self.strata = sk, su = open_set_strata(nk, nu)
        self.nk, self.nu = nk, nu
        self.neg_known = -known[known_cells]  # ascending: cells by descending score
        self.unknown = np.sort(unknown)
        self.below = np.searchsorted(self.unknown, -self.neg_known, side="left")  # unknown cells < each known
        self.at_or_below = np.searchsorted(self.unknown, -self.neg_known, side="right")
        self.level_start = np.searchsorted(self.neg_known, self.neg_known, side="left")  # tie block of each known
        self.level_end = np.searchsorted(self.neg_known, self.neg_known, side="right")
        self.higher = np.searchsorted(self.neg_known, -self.unknown, side="left")  # known cells above each unknown
        where = sk.position(np.arange(nk))
        self.gather = np.zeros(sk.size, dtype=np.intp)  # padding cells (count 0) read position 0
        self.gather[where] = su.position(self.below)
        self.correct = np.zeros(sk.size, dtype=np.uint8)
        self.correct[where] = correct[known_cells]
        tied = np.flatnonzero(self.at_or_below != self.below)
        self.tied, self.tied_lo, self.tied_hi = where[tied], su.position(self.below[tied]), su.position(
            self.at_or_below[tied])
        self._block = 1 if sk.small else _KNOWN_BLOCK  # known cells per block of the known prefix sums
        self._known_blocks = sk.size // self._block
        self._buffers()

    def _buffers(self) -> None:
        sk, su = self.strata
        self.prefix_u = np.empty(su.shape, dtype=np.int32)  # [r, c]: resampled unknown in cells < c*rows + r
        self._unknown_cum = np.empty(su.cols, dtype=np.int64)
        self._known_cum = np.empty(self._known_blocks, dtype=np.int64)
        self._gathered = np.empty(sk.size, dtype=np.int32)
        self._correct_counts = np.empty(sk.size, dtype=np.uint8)

    def workspace(self) -> "OpenSetResampler":
        """A copy sharing the sorted layout, with its own buffers and strata (one per thread)."""
        twin = copy.copy(self)
        twin.strata = tuple(s.clone() for s in self.strata)
        twin._buffers()
        return twin

    def statistics(self, known_counts: np.ndarray, unknown_counts: np.ndarray, target: float) -> tuple:
        """``(auroc, fpr_interp_known, fpr_first_unknown, oscr)`` of one resample (counts in the strata's layouts)."""
        self._unknown_prefix(unknown_counts)
        np.take(self.prefix_u.reshape(-1), self.gather, out=self._gathered, mode="clip")  # clip: unbuffered
        w = known_counts.reshape(-1)
        np.multiply(w, self.correct, out=self._correct_counts)
        twice_u, twice_oscr = self._twice_pairs(w), self._twice_pairs(self._correct_counts)
        self._known_prefix_blocks(w)
        scale = 2.0 * self.nk * self.nu
        return (twice_u / scale, self._fpr_interp(known_counts, target),
                self._fpr_first(known_counts, unknown_counts, target), twice_oscr / scale)

    def _unknown_prefix(self, counts: np.ndarray) -> None:
        """``prefix_u``: row additions down each column, started at the column's offset."""
        np.cumsum(counts.sum(axis=0, dtype=np.int64), out=self._unknown_cum)
        p = self.prefix_u
        p[0, 0] = 0
        p[0, 1:] = self._unknown_cum[:-1]
        for r in range(1, p.shape[0]):
            np.add(p[r - 1], counts[r - 1], out=p[r])

    def _below(self, x: int) -> int:
        """Resampled unknown count in unknown cells ``0..x-1``."""
        rows = self.prefix_u.shape[0]
        return int(self.prefix_u[x % rows, x // rows])

    def _twice_pairs(self, w: np.ndarray) -> int:
        """``2 * sum_i w_i (U_<(i) + U_=(i) / 2)`` over known cells, exact in int64."""
        twice = 2 * int(np.einsum("i,i->", w, self._gathered, dtype=np.int64))
        if self.tied.size:
            p = self.prefix_u.reshape(-1)
            ties = p[self.tied_hi].astype(np.int64) - p[self.tied_lo]
            twice += int(np.dot(w[self.tied].astype(np.int64), ties))
        return twice

    def _known_prefix_blocks(self, w: np.ndarray) -> None:
        if self._block == 1:
            np.cumsum(w, out=self._known_cum)
            return
        blocks = w[: self._known_blocks * self._block].reshape(self._known_blocks, self._block)
        np.cumsum(blocks.sum(axis=1, dtype=np.int64), out=self._known_cum)

    def _prefix(self, counts: np.ndarray, cell: int) -> int:
        """Resampled known count in known cells ``0..cell-1`` (the highest scores)."""
        block = min(cell // self._block, self._known_blocks)
        head = int(self._known_cum[block - 1]) if block else 0
        start = block * self._block
        return head + int(counts.reshape(-1)[start:cell].sum(dtype=np.int64)) if cell > start else head

    def _first_exceeding(self, counts: np.ndarray, m: int) -> int:
        """First known cell whose prefix count through it exceeds ``m`` (``m < n_known``)."""
        block = int(np.searchsorted(self._known_cum, m, side="right"))
        if self._block == 1:
            return block
        head = int(self._known_cum[block - 1]) if block else 0
        start = block * self._block
        within = head + np.cumsum(counts.reshape(-1)[start:start + self._block], dtype=np.int64)
        return start + int(np.searchsorted(within, m, side="right"))

    def _fpr_interp(self, counts: np.ndarray, target: float) -> float:
        """``np.interp(target, TPR, FPR)`` on the resample's full ROC (known positive): between the
        last point with TPR <= target and the next one."""
        if target <= 0.0:
            return 0.0  # every point has TPR >= 0: the minimum FPR, at (0, 0)
        m = _largest_at_most(target, self.nk)
        if m >= self.nk:
            return 1.0  # the last point, (1, 1)
        i = self._first_exceeding(counts, m)  # its tie block holds the next ROC point
        x0 = self._prefix(counts, int(self.level_start[i])) / self.nk
        x1 = self._prefix(counts, int(self.level_end[i])) / self.nk
        above = self.nu - self._below(int(self.at_or_below[i]))
        at_or_above = self.nu - self._below(int(self.below[i]))
        y0, y1 = above / self.nu, at_or_above / self.nu
        slope = (y1 - y0) / (x1 - x0)
        return float(slope * (target - x0) + y0)

    def _fpr_first(self, counts: np.ndarray, unknown_counts: np.ndarray, target: float) -> float:
        """Unknown positive (score ``-s``): FPR at the first point of the full curve whose TPR reaches
        ``target``, i.e. the known share at or below the lowest unknown level reaching it."""
        if target <= 0.0:
            return 0.0  # the first point, (0, 0), already reaches it
        m = _smallest_at_least(target, self.nu)
        col = int(np.searchsorted(self._unknown_cum, m, side="left"))
        within = self.prefix_u[0, col] + np.cumsum(unknown_counts[:, col], dtype=np.int64)
        q = col * self.prefix_u.shape[0] + int(np.searchsorted(within, m, side="left"))
        return (self.nk - self._prefix(counts, int(self.higher[q]))) / self.nk
