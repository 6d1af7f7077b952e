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
counts before a cell are then column totals plus part of one column) or in cell order (counts before
a cell from sums of 8-cell words, :class:`_CellPrefix`), with zero padding cells at the end. ``L`` is
64, or 1 for strata under 8192 samples (where a plain ``cumsum`` is faster).

Random streams depend on the seed alone: the bytes of resample ``b`` sit at a fixed offset of one
PCG64 stream and its refinements, completions (and small strata's indices) at offset ``b * 2**40``
of a second one, so neither the chunk size nor the number of threads changes a result.
"""

from __future__ import annotations

import copy
import math
import sys

import numpy as np

from ._threads import map_ranges, usable_cpus

__all__ = ["StratumCounts", "OpenSetResampler", "ResampleStreams", "iter_counts", "map_ranges", "default_threads",
           "open_set_strata"]

_ROWS = 64  # rows of the layout of a large stratum
_SMALL = 8192  # strata below this size use one row
_FIX_STRIDE = 2**40  # draws of the correction stream reserved per resample
_BUCKETS = 256
_SIGMAS = 4.0
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

    ``block_major=True`` stores them in the block-major ``(rows, cols)`` layout (fast column totals);
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
            np.add(flat, self._flags.view(np.uint8), out=flat)  # uint8 + uint8: no cast
        return total

    def _refine(self, bits: np.ndarray, flat: np.ndarray, fix: np.random.Generator) -> int:
        """Exact counts of the straddling buckets (a float64 uniform inside the bucket against the
        CDF step(s) there); returns the change of the total. Runs right after :meth:`_compare`, which gave
        every straddling bucket (a label above all thresholds) the count ``len(thresholds)``."""
        special = np.flatnonzero(bits >= self.first_special)
        if not special.size:
            return 0
        label = bits[special].astype(np.intp) - self.first_special
        u = (self.special_buckets[label] + fix.random(special.size)) / _BUCKETS
        step = self.special_step[label]
        counts = self.special_low[label] + (u >= step).astype(np.uint8)  # NaN step: False, fixed below
        several = np.flatnonzero(np.isnan(step))
        counts[several] = np.searchsorted(self.cdf, u[several], side="right")
        change = int(counts.sum(dtype=np.int64)) - self.thresholds.size * special.size  # compare gave them all
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
    """The strata of an open-set resample: known cells in cell order, unknown cells block-major. The layouts
    decide which random bytes count which sample, so they are part of the resamples' definition."""
    return StratumCounts(n_known), StratumCounts(n_unknown, block_major=True)


class _ColumnPrefix:
    """Counts before a cell of a block-major stratum from its column totals; ``at(x)`` = count in cells
    ``0..x-1`` (each query O(rows))."""

    def __init__(self, stratum: StratumCounts):
        self.rows = stratum.shape[0]
        self.column_cum = np.empty(stratum.shape[1], dtype=np.int64)  # count in columns 0..c
        self.counts = None

    def update(self, counts: np.ndarray) -> None:
        np.cumsum(counts.sum(axis=0, dtype=np.int64), out=self.column_cum)
        self.counts = counts

    def _before_column(self, col: int) -> int:
        return int(self.column_cum[col - 1]) if col else 0

    def at(self, x: int) -> int:
        col, row = divmod(x, self.rows)
        return self._before_column(col) + int(self.counts[:row, col].sum(dtype=np.int64))

    def first_past(self, m: int, strict: bool) -> int:
        """First cell whose count through it is ``> m`` (``strict``) or ``>= m``; one must exist."""
        side = "right" if strict else "left"
        col = int(np.searchsorted(self.column_cum, m, side=side))
        within = self._before_column(col) + np.cumsum(self.counts[:, col], dtype=np.int64)
        return col * self.rows + int(np.searchsorted(within, m, side=side))


_BYTE_SUMS = np.uint64(0x0101010101010101)
_WORD_COUNT_MAX = 31  # 8 counts of at most 31 sum to at most 248: a byte holds every partial sum of a word


class _CellPrefix:
    """Counts before a cell of a stratum in cell order: ``at(x)`` = count in cells ``0..x-1``, for one cell or
    for a vector of cells prepared once (:meth:`plan`, :meth:`at_plan`).

    Word mode (strata of 8192 cells and up whose counts are all <= 31): the counts are read as little-endian
    64-bit words of 8 cells, and ``word * 0x0101010101010101`` holds in byte ``r`` the count of the word's
    first ``r + 1`` cells (no carry: they sum to <= 248), so a prefix is the words' running total plus one
    byte. Otherwise (small strata, or a count above 31) a plain int64 running total of the cells. Both are
    exact integers: the mode never changes a value.
    """

    def __init__(self, stratum: StratumCounts):
        self.size = stratum.size
        self.word_mode = self.words = not stratum.small and stratum.size % 8 == 0
        n_words = self.size // 8 if self.words else 0
        self._partial = np.zeros(n_words + 1, dtype=np.uint64)  # [j]: byte prefix sums of word j - 1; [0] = 0
        self._bytes = self._partial.view(np.uint8)  # byte 8 j + b: byte b of _partial[j] (see _byte)
        self._before = np.zeros(n_words + 2, dtype=np.uint64)  # [j]: count in words < j - 1; [2:]: inclusive
        self._full = None  # [x]: count in cells < x (plain mode)

    def update(self, counts: np.ndarray, small_counts: bool | None = None) -> None:
        """Take a resample's counts (``small_counts``: every count is known to be <= 31; None: check)."""
        flat = counts.reshape(-1)
        if small_counts is None:
            small_counts = self.words and int(flat.max()) <= _WORD_COUNT_MAX
        self.word_mode = self.words and small_counts
        if not self.word_mode:
            if self._full is None:
                self._full = np.zeros(self.size + 1, dtype=np.int64)
            np.cumsum(flat, dtype=np.int64, out=self._full[1:])
            return
        partial = self._partial[1:]
        np.multiply(flat.view("<u8"), _BYTE_SUMS, out=partial)  # wraps modulo 2**64: only the bytes matter
        np.cumsum(partial >> np.uint64(56), out=self._before[2:])  # byte 7: the word's total

    @staticmethod
    def plan(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cells, word, byte)`` of query cells ``x``: word ``j = (x - 1) // 8 + 1`` of ``_partial`` (0 for
        ``x = 0``), whose byte ``(x - 1) % 8`` (index ``byte`` of ``_bytes``) counts its cells before ``x``."""
        cells = np.asarray(cells, dtype=np.intp)
        word = np.where(cells > 0, (cells - 1) // 8 + 1, 0)
        return cells, word, _byte(word, np.where(cells > 0, (cells - 1) % 8, 0))

    def at_plan(self, plan: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """``at(x)`` for every cell of a :meth:`plan` (int64 or uint64)."""
        cells, word, byte = plan
        if not self.word_mode:
            return self._full[cells]
        return self._before[word] + self._bytes[byte]

    def at(self, x: int) -> int:
        if not self.word_mode:
            return int(self._full[x])
        if x == 0:
            return 0
        j, r = divmod(x - 1, 8)
        return int(self._before[j + 1]) + int(self._bytes[_byte(j + 1, r)])

    def first_past(self, m: int, strict: bool) -> int:
        """First cell whose count through it is ``> m`` (``strict``) or ``>= m``; one must exist."""
        side = "right" if strict else "left"
        if not self.word_mode:
            return int(np.searchsorted(self._full[1:], m, side=side))
        j = int(np.searchsorted(self._before[2:], m, side=side))  # first word whose total through it passes
        through = int(self._before[j + 1]) + self._bytes[_byte(j + 1, np.arange(8))].astype(np.int64)
        return 8 * j + int(np.searchsorted(through, m, side=side))


def _byte(word, r):
    """Index in a uint8 view of a uint64 array of byte ``r`` (0 = least significant) of element ``word``."""
    return 8 * word + (r if sys.byteorder == "little" else 7 - r)


class OpenSetResampler:
    """AUROC, FPR@TPR (known positive, interp; unknown positive, first) and OSCR of resamples given as
    counts on a fixed sorted order, without sorting again.

    Known cells are the known samples in the order ``known_cells`` (descending score), unknown cells the
    unknown samples in ascending score (``self.strata``: their :class:`StratumCounts`). The known counts
    get prefix sums (:class:`_CellPrefix`); each unknown cell reads from them the resampled known counts
    above it and tied with it, summed with the unknown counts: ``2U = sum_v c_v (2 K_>(v) + K_=(v))``, the
    Mann-Whitney ``U`` (OSCR: the same with the correct known counts). Work buffers are allocated once per
    :meth:`workspace`.
    """

    def __init__(self, known: np.ndarray, correct: np.ndarray, unknown: np.ndarray, known_cells: np.ndarray):
        self.nk, self.nu = nk, nu = known.shape[0], unknown.shape[0]
        self.strata = sk, su = open_set_strata(nk, nu)
        self.neg_known = neg_known = -known[known_cells]  # ascending: cells by descending score
        self.u_sorted = u_sorted = np.sort(unknown)
        self.higher = np.searchsorted(neg_known, -u_sorted, side="left")  # known cells above each unknown
        at_least = np.searchsorted(neg_known, -u_sorted, side="right")  # ... above or tied with it
        self.correct = np.zeros(sk.size, dtype=np.uint8)  # known cells are in cell order
        self.correct[:nk] = correct[known_cells]
        self.tied = tied = np.flatnonzero(at_least != self.higher)  # unknown cells tied with a known one
        self.above = _CellPrefix.plan(self.higher)  # in cell order: the known prefixes are read in order
        self.tied_above, self.tied_at_least = _CellPrefix.plan(self.higher[tied]), _CellPrefix.plan(at_least[tied])
        self._buffers()

    def _buffers(self) -> None:
        sk, su = self.strata
        self._known, self._known_correct, self._unknown = _CellPrefix(sk), _CellPrefix(sk), _ColumnPrefix(su)
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
        np.multiply(known_counts.reshape(-1), self.correct, out=self._correct_counts)
        self._known_correct.update(self._correct_counts, small_counts=self._known.word_mode)  # <= the counts
        self._unknown.update(unknown_counts)
        c = self.strata[1].in_cell_order(unknown_counts)
        twice_u, twice_oscr = self._twice_pairs(self._known, c), self._twice_pairs(self._known_correct, c)
        scale = 2.0 * self.nk * self.nu
        return twice_u / scale, self._fpr_interp(target), self._fpr_first(target), twice_oscr / scale

    def _twice_pairs(self, known: "_CellPrefix", c: np.ndarray) -> int:
        """``2 * sum_v c_v (K_>(v) + K_=(v) / 2)`` over unknown cells ``v`` with the known prefix ``known``,
        exact in int64."""
        twice = 2 * int(np.dot(c, known.at_plan(self.above)))
        if self.tied.size:
            ties = known.at_plan(self.tied_at_least) - known.at_plan(self.tied_above)
            twice += int(np.dot(c[self.tied], ties))
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
        level = self.neg_known[i]
        start, end = (int(np.searchsorted(self.neg_known, level, side=side)) for side in ("left", "right"))
        x0, x1 = known.at(start) / self.nk, known.at(end) / self.nk
        below, at_or_below = (int(np.searchsorted(self.u_sorted, -level, side=side)) for side in ("left", "right"))
        y0 = (self.nu - unknown.at(at_or_below)) / self.nu  # unknown above the block
        y1 = (self.nu - unknown.at(below)) / self.nu  # ... and tied with it
        slope = (y1 - y0) / (x1 - x0)
        return float(slope * (target - x0) + y0)

    def _fpr_first(self, target: float) -> float:
        """Unknown positive (score ``-s``): FPR at the first point of the full curve whose TPR reaches
        ``target``, i.e. the known share at or below the lowest unknown level reaching it."""
        if target <= 0.0:
            return 0.0  # the first point, (0, 0), already reaches it
        q = self._unknown.first_past(_smallest_at_least(target, self.nu), strict=False)
        return (self.nk - self._known.at(int(self.higher[q]))) / self.nk
