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

import numpy as np

from ._threads import map_ranges, usable_cpus

__all__ = ["StratumCounts", "OpenSetResampler", "ResampleStreams", "iter_counts", "map_ranges", "default_threads",
           "open_set_strata"]

_ROWS = 64  # rows of the layout of a large stratum
_SMALL = 8192  # strata below this size use one row
_FIX_STRIDE = 2**40  # draws of the correction stream reserved per resample
_BUCKETS = 256
_SIGMAS = 4.0
_KNOWN_BLOCK = 4096  # cells per block of the block prefix sums (large strata)
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
    return usable_cpus()


def open_set_strata(n_known: int, n_unknown: int) -> tuple[StratumCounts, StratumCounts]:
    """The strata of an open-set resample: known cells in cell order, unknown cells block-major (full prefix
    sums; prefix sums on the known side instead measured no faster, even at 9 known per unknown)."""
    return StratumCounts(n_known), StratumCounts(n_unknown, block_major=True)


class _FullPrefix:
    """Prefix sums of a block-major stratum's counts by row additions; ``at(x)`` = count in cells ``0..x-1``."""

    def __init__(self, stratum: StratumCounts):
        self.rows = stratum.shape[0]
        self.prefix = np.empty(stratum.shape, dtype=np.int32)  # [r, c]: count in cells < c * rows + r
        self.column_cum = np.empty(stratum.shape[1], dtype=np.int64)
        self.counts = None

    def update(self, counts: np.ndarray) -> None:
        np.cumsum(counts.sum(axis=0, dtype=np.int64), out=self.column_cum)
        p = self.prefix
        p[0, 0] = 0
        p[0, 1:] = self.column_cum[:-1]
        for r in range(1, self.rows):
            np.add(p[r - 1], counts[r - 1], out=p[r])
        self.counts = counts

    def flat(self) -> np.ndarray:
        return self.prefix.reshape(-1)

    def at(self, x: int) -> int:
        return int(self.prefix[x % self.rows, x // self.rows])

    def first_past(self, m: int, strict: bool) -> int:
        """First cell whose count through it is ``> m`` (``strict``) or ``>= m``; one must exist."""
        side = "right" if strict else "left"
        col = int(np.searchsorted(self.column_cum, m, side=side))
        within = self.prefix[0, col] + np.cumsum(self.counts[:, col], dtype=np.int64)
        return col * self.rows + int(np.searchsorted(within, m, side=side))


class _BlockPrefix:
    """The same queries on a stratum's counts in cell order, from block sums (each query O(block))."""

    def __init__(self, stratum: StratumCounts):
        self.block = 1 if stratum.small else _KNOWN_BLOCK
        self.blocks = stratum.size // self.block
        self.cum = np.empty(self.blocks, dtype=np.int64)
        self.counts = None

    def update(self, counts: np.ndarray) -> None:
        flat = self.counts = counts.reshape(-1)
        if self.block == 1:
            np.cumsum(flat, out=self.cum)
        else:
            np.cumsum(flat[: self.blocks * self.block].reshape(self.blocks, self.block).sum(axis=1, dtype=np.int64),
                      out=self.cum)

    def at(self, x: int) -> int:
        block = min(x // self.block, self.blocks)
        head = int(self.cum[block - 1]) if block else 0
        start = block * self.block
        return head + int(self.counts[start:x].sum(dtype=np.int64)) if x > start else head

    def first_past(self, m: int, strict: bool) -> int:
        side = "right" if strict else "left"
        block = int(np.searchsorted(self.cum, m, side=side))
        if self.block == 1:
            return block
        head = int(self.cum[block - 1]) if block else 0
        start = block * self.block
        within = head + np.cumsum(self.counts[start:start + self.block], dtype=np.int64)
        return start + int(np.searchsorted(within, m, side=side))


class OpenSetResampler:
    """AUROC, FPR@TPR (known positive, interp; unknown positive, first) and OSCR of resamples given as
    counts on a fixed sorted order, without sorting again.

    Known cells are the known samples in the order ``known_cells`` (descending score), unknown cells the
    unknown samples in ascending score (``self.strata``: their :class:`StratumCounts`). The unknown counts
    get full prefix sums; each known cell gathers its pair counts from them, summed with the known counts:
    ``2U = sum_i w_i (2 U_<(i) + U_=(i))`` (OSCR: the same with the correct known counts). Work buffers are
    allocated once per :meth:`workspace`.
    """

    def __init__(self, known: np.ndarray, correct: np.ndarray, unknown: np.ndarray, known_cells: np.ndarray):
        self.nk, self.nu = nk, nu = known.shape[0], unknown.shape[0]
        self.strata = sk, su = open_set_strata(nk, nu)
        neg_known = -known[known_cells]  # ascending: cells by descending score
        u_sorted = np.sort(unknown)
        self.below = np.searchsorted(u_sorted, -neg_known, side="left")  # unknown cells < each known
        self.at_or_below = np.searchsorted(u_sorted, -neg_known, side="right")
        self.level_start = np.searchsorted(neg_known, neg_known, side="left")  # tie block of each known
        self.level_end = np.searchsorted(neg_known, neg_known, side="right")
        self.higher = np.searchsorted(neg_known, -u_sorted, side="left")  # known cells above each unknown
        self.correct = np.zeros(sk.size, dtype=np.uint8)  # known cells are in cell order
        self.correct[:nk] = correct[known_cells]
        self.gather = np.zeros(sk.size, dtype=np.intp)  # padding cells (count 0) read position 0
        self.gather[:nk] = su.position(self.below)
        tied = np.flatnonzero(self.at_or_below != self.below)
        self.tied, self.tied_lo, self.tied_hi = tied, su.position(self.below[tied]), su.position(self.at_or_below[tied])
        self._buffers()

    def _buffers(self) -> None:
        sk, su = self.strata
        self._known, self._unknown = _BlockPrefix(sk), _FullPrefix(su)
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
        self._known.update(known_counts)
        self._unknown.update(unknown_counts)
        w = known_counts.reshape(-1)
        np.multiply(w, self.correct, out=self._correct_counts)
        np.take(self._unknown.flat(), self.gather, out=self._gathered, mode="clip")  # clip: unbuffered
        twice_u, twice_oscr = self._twice_pairs(w), self._twice_pairs(self._correct_counts)
        scale = 2.0 * self.nk * self.nu
        return twice_u / scale, self._fpr_interp(target), self._fpr_first(target), twice_oscr / scale

    def _twice_pairs(self, w: np.ndarray) -> int:
        """``2 * sum_i w_i (U_<(i) + U_=(i) / 2)`` over known cells, exact in int64."""
        twice = 2 * int(np.einsum("i,i->", w, self._gathered, dtype=np.int64))
        if self.tied.size:
            prefix = self._unknown.flat()
            ties = prefix[self.tied_hi].astype(np.int64) - prefix[self.tied_lo]
            twice += int(np.dot(w[self.tied].astype(np.int64), ties))
        return twice

    def _fpr_interp(self, target: float) -> float:
        """``np.interp(target, TPR, FPR)`` on the resample's full ROC (known positive): between the
        last point with TPR <= target and the next one."""
        if target <= 0.0:
            return 0.0  # every point has TPR >= 0: the minimum FPR, at (0, 0)
        m = _largest_at_most(target, self.nk)
        if m >= self.nk:
            return 1.0  # the last point, (1, 1)
        known, unknown = self._known, self._unknown
        i = known.first_past(m, strict=True)  # its tie block holds the next ROC point
        x0, x1 = known.at(int(self.level_start[i])) / self.nk, known.at(int(self.level_end[i])) / self.nk
        y0 = (self.nu - unknown.at(int(self.at_or_below[i]))) / self.nu  # unknown above the block
        y1 = (self.nu - unknown.at(int(self.below[i]))) / self.nu  # ... and tied with it
        slope = (y1 - y0) / (x1 - x0)
        return float(slope * (target - x0) + y0)

    def _fpr_first(self, target: float) -> float:
        """Unknown positive (score ``-s``): FPR at the first point of the full curve whose TPR reaches
        ``target``, i.e. the known share at or below the lowest unknown level reaching it."""
        if target <= 0.0:
            return 0.0  # the first point, (0, 0), already reaches it
        q = self._unknown.first_past(_smallest_at_least(target, self.nu), strict=False)
        return (self.nk - self._known.at(int(self.higher[q]))) / self.nk
