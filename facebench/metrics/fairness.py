"""Fairness metrics: disaggregated metrics, RFW summaries, grouped bootstrap, verification differentials.

Conventions (see ``spec/anchors.md`` §3.5 and ``spec/protocols.md`` §6):

* A *group* is one value of a sensitive attribute, or an intersection of
  several (:func:`group_keys` joins values with ``" & "``, e.g.
  ``"Black & Female"``). Groups are always reported **sorted by name**
  (``np.unique`` order).
* :func:`disaggregate` follows fairlearn ``MetricFrame`` semantics for a metric
  that is the mean of per-sample values (accuracy = mean of 0/1 correctness,
  MAE = mean of absolute errors): ``difference``/``ratio`` with
  ``method="between_groups"`` and ``"to_overall"``.
* Accuracies are fractions in [0, 1] (pass RFW percentages divided by 100).
* Verification (NIST FRVT, de Freitas Pereira & Marcel): FMR_g / FNMR_g of
  every group are computed at **one global threshold**; a comparison is
  accepted ("same person") when ``score >= t`` (``higher_is_same=True``,
  similarities) or ``score <= t`` (``higher_is_same=False``, distances).
* Everything is float64; the bootstrap uses ``np.random.default_rng(seed)``
  and is reproducible for a given seed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from facebench.errors import MetricInputError

from ._validation import (
    as_float64,
    check_binary_flags,
    check_bool,
    check_clusters,
    check_fraction,
    check_groups,
    check_int_at_least,
    check_no_missing,
    check_positive_int,
    check_real,
    check_score_vector,
    check_values,
    check_vector,
)

__all__ = [
    "GROUP_SEPARATOR",
    "group_keys",
    "disaggregate",
    "skewed_error_ratio",
    "summary_stats",
    "equalized_odds",
    "grouped_bootstrap",
    "bootstrap_disparities",
    "rates_at_threshold",
    "threshold_at_fmr",
    "group_error_rates",
    "demographic_differentials",
    "fairness_discrepancy_rate",
]

#: Separator between attribute values in intersectional group names.
GROUP_SEPARATOR = " & "

#: Working-memory budget for one chunk of bootstrap resamples (bytes).
_CHUNK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------- validation


def _check_fraction_array(x, name: str) -> np.ndarray:
    """Per-group accuracies (array-like or mapping group -> value) as float64 fractions in [0, 1]."""
    if isinstance(x, Mapping):
        x = list(x.values())
    arr = check_values(x, name, allow_inf=False)
    if (arr < 0).any() or (arr > 1).any():
        raise MetricInputError(
            f"{name} must be fractions in [0, 1] (e.g. 0.9618, not 96.18 -- divide percentages by 100); "
            f"got values in [{arr.min()!r}, {arr.max()!r}]"
        )
    return arr


def _check_rates(x, name: str) -> tuple[list | None, np.ndarray]:
    """Per-group error rates: mapping or array-like -> (keys or None, float64 array in [0, 1])."""
    keys = None
    if isinstance(x, Mapping):
        keys = list(x.keys())
        x = [x[k] for k in keys]
    arr = as_float64(check_vector(x, name, per="group rate"), name, "numeric rates", allow_bool=False)
    if np.isnan(arr).any():
        bad = int(np.flatnonzero(np.isnan(arr))[0])
        who = f"group {keys[bad]!r}" if keys is not None else f"index {bad}"
        raise MetricInputError(
            f"{name} is NaN for {who} (a group without genuine/impostor comparisons?); "
            "drop groups whose rate is undefined before summarising"
        )
    if (arr < 0).any() or (arr > 1).any():
        raise MetricInputError(f"{name} must be rates in [0, 1], got values in [{arr.min()!r}, {arr.max()!r}]")
    return keys, arr


def _rates_pair(fmr_by_group, fnmr_by_group) -> tuple[np.ndarray, np.ndarray]:
    kf, fmr = _check_rates(fmr_by_group, "fmr_by_group")
    kn, fnmr = _check_rates(fnmr_by_group, "fnmr_by_group")
    if (kf is None) != (kn is None):
        raise MetricInputError("pass fmr_by_group and fnmr_by_group both as mappings or both as arrays")
    if kf is not None:
        if set(kf) != set(kn):
            raise MetricInputError(
                f"fmr_by_group and fnmr_by_group name different groups: {sorted(map(str, kf))} vs "
                f"{sorted(map(str, kn))}"
            )
        fnmr = np.array([dict(zip(kn, fnmr))[k] for k in kf], dtype=np.float64)
    elif fmr.shape != fnmr.shape:
        raise MetricInputError(f"fmr_by_group has {fmr.size} groups but fnmr_by_group has {fnmr.size}")
    return fmr, fnmr


def _comparison_scores(x, name: str, allow_empty: bool = False) -> np.ndarray:
    return check_score_vector(x, name, "need at least one comparison score", allow_empty=allow_empty)


# --------------------------------------------------------------------------- small helpers


def _safe_div(num, den):
    """Elementwise ``num / den`` with NaN where ``den == 0`` (no warnings)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    ok = np.broadcast_to(den != 0, out.shape)
    np.divide(num, den, out=out, where=ok)
    return out if out.ndim else float(out)


def _std(m: np.ndarray, ddof: int, axis: int = -1):
    """Std over ``axis``; NaN when fewer than ``ddof + 1`` entries."""
    g = m.shape[axis]
    if g <= ddof:
        return np.full(np.delete(m.shape, axis % m.ndim), np.nan) if m.ndim > 1 else float("nan")
    return m.std(axis=axis, ddof=ddof)


def _ser_from_errors(err: np.ndarray):
    """``max/min`` over the last axis; inf when min = 0 < max, NaN when all errors are 0."""
    hi = err.max(axis=-1)
    lo = err.min(axis=-1)
    out = np.where(lo > 0, hi / np.where(lo > 0, lo, 1.0), np.where(hi > 0, np.inf, np.nan))
    return out if out.ndim else float(out)


def _ratio_to_overall(m: np.ndarray, overall):
    """fairlearn ``ratio(method="to_overall")``: min_g of r_g = m_g/overall folded as r if r <= 1 else 1/r."""
    overall = np.asarray(overall, dtype=np.float64)
    r = _safe_div(m, overall[..., None])
    r = np.asarray(r)
    folded = np.where(r > 1, 1.0 / np.where(r > 1, r, 1.0), r)
    out = np.where(overall != 0, folded.min(axis=-1), np.nan)
    return out if out.ndim else float(out)


# --------------------------------------------------------------------------- disaggregation


def group_keys(*attributes) -> np.ndarray:
    """Intersectional group label per sample, as a 1-D str array.

    With one attribute the labels are its values converted to ``str``; with
    several (equal-length) attributes they are the ``str`` values joined with
    ``" & "`` in argument order, e.g. ``group_keys(race, sex)[i] == "Black & Female"``.
    Missing values (None/NaN) and values containing ``" & "`` raise ``MetricInputError``.
    """
    if len(attributes) == 0:
        raise MetricInputError("group_keys needs at least one attribute array")
    arrs = []
    for i, a in enumerate(attributes):
        arr = check_no_missing(check_vector(a, f"attribute {i}", allow_object=True), f"attribute {i}")
        s = arr.astype(str)
        if len(attributes) > 1 and (np.char.find(s, GROUP_SEPARATOR) >= 0).any():
            bad = int(np.flatnonzero(np.char.find(s, GROUP_SEPARATOR) >= 0)[0])
            raise MetricInputError(
                f"attribute {i} value {s[bad]!r} (index {bad}) contains the separator {GROUP_SEPARATOR!r}; "
                "rename the value so intersectional keys stay unambiguous"
            )
        arrs.append(s)
    lengths = [a.shape[0] for a in arrs]
    if len(set(lengths)) > 1:
        raise MetricInputError(f"attributes have different lengths {lengths}; pass one value per sample in each")
    out = arrs[0]
    for s in arrs[1:]:
        out = np.char.add(np.char.add(out, GROUP_SEPARATOR), s)
    return out


def disaggregate(values, groups, min_group_size=30) -> dict:
    """Mean of per-sample ``values`` overall and per group, with fairlearn-style disparities.

    ``values``: per-sample metric values (0/1 correctness for accuracy, absolute
    error for MAE, ...); ``groups``: per-sample group labels (see :func:`group_keys`).
    With group means ``m_g`` (groups sorted by name) and ``overall`` = mean of
    all values (not of the group means):

    * ``difference_between_groups`` = max_g m_g - min_g m_g
    * ``difference_to_overall`` = max_g |m_g - overall|
    * ``ratio_between_groups`` = min_g m_g / max_g m_g (NaN when max_g m_g = 0)
    * ``ratio_to_overall`` = min_g of r_g = m_g / overall folded to r_g if r_g <= 1
      else 1 / r_g, i.e. min_g min(m_g/overall, overall/m_g) for non-negative
      values (NaN when overall = 0)
    * ``std_ddof0`` / ``std_ddof1`` = std of the G group means (ddof1 NaN for G = 1)
    * ``argmin`` / ``argmax`` = group name of the min / max mean (first in name order on ties)
    * ``small_groups`` = groups with fewer than ``min_group_size`` samples (flag, not dropped).

    These match fairlearn ``MetricFrame(...).overall / .by_group / .difference(method) / .ratio(method)``.
    """
    v = check_values(values, allow_inf=False)
    names, inv = check_groups(groups, v.size)
    check_int_at_least(min_group_size, "min_group_size", 0)
    g = len(names)
    counts = np.bincount(inv, minlength=g)
    m = np.bincount(inv, weights=v, minlength=g) / counts
    overall = float(v.mean())
    i_min, i_max = int(np.argmin(m)), int(np.argmax(m))
    return {
        "overall": overall,
        "by_group": {k: float(x) for k, x in zip(names, m)},
        "n": {k: int(c) for k, c in zip(names, counts)},
        "min": float(m[i_min]),
        "max": float(m[i_max]),
        "argmin": names[i_min],
        "argmax": names[i_max],
        "difference_between_groups": float(m[i_max] - m[i_min]),
        "difference_to_overall": float(np.abs(m - overall).max()),
        "ratio_between_groups": float(_safe_div(m[i_min], m[i_max])),
        "ratio_to_overall": float(_ratio_to_overall(m, overall)),
        "std_ddof0": float(_std(m, 0)),
        "std_ddof1": float(_std(m, 1)),
        "small_groups": [k for k, c in zip(names, counts) if c < min_group_size],
    }


# --------------------------------------------------------------------------- RFW-style summaries


def skewed_error_ratio(accuracies) -> float:
    """Skewed error ratio SER = max_g (1 - a_g) / min_g (1 - a_g) (Wang & Deng; RFW papers).

    ``accuracies``: per-group accuracies as fractions in [0, 1] (array-like or a
    mapping group -> accuracy). SER >= 1, 1 = balanced errors. Returns ``inf``
    when the smallest error is 0 but some group has errors, and NaN when every
    group has zero error (0/0).
    """
    a = _check_fraction_array(accuracies, "accuracies")
    return float(_ser_from_errors(1.0 - a))


def summary_stats(accuracies) -> dict:
    """RFW-style summary of per-group accuracies (fractions in [0, 1]).

    Returns ``avg`` (unweighted mean over groups), ``std_ddof0`` (population),
    ``std_ddof1`` (sample; NaN for one group), ``ser`` (:func:`skewed_error_ratio`),
    ``min``, ``max`` and ``gap`` = max - min. Multiply avg/std/min/max/gap by 100
    to compare with tables in percent; SER is unit-free.
    """
    a = _check_fraction_array(accuracies, "accuracies")
    return {
        "avg": float(a.mean()),
        "std_ddof0": float(_std(a, 0)),
        "std_ddof1": float(_std(a, 1)),
        "ser": float(_ser_from_errors(1.0 - a)),
        "min": float(a.min()),
        "max": float(a.max()),
        "gap": float(a.max() - a.min()),
    }


def equalized_odds(y_true, y_pred, groups, positive) -> dict:
    """Per-group TPR / FPR of a binary decision and the equalized-odds disparities.

    A sample is positive when its label equals ``positive`` (labels may be any
    comparable values; every other label is negative). Per group:
    TPR_g = TP_g / P_g, FPR_g = FP_g / N_g (NaN when the group has no
    positives / negatives; such groups are skipped by the summaries, as pandas
    does in fairlearn). Summaries (fairlearn ``agg="worst_case"``,
    ``method="between_groups"``):

    * ``tpr_difference`` = max_g TPR_g - min_g TPR_g, ``fpr_difference`` likewise
    * ``equalized_odds_difference`` = max(tpr_difference, fpr_difference)
    * ``tpr_ratio`` = min_g TPR_g / max_g TPR_g (NaN when the max is 0), ``fpr_ratio`` likewise
    * ``equalized_odds_ratio`` = min(tpr_ratio, fpr_ratio), ignoring a NaN one.
    """
    yt = check_vector(y_true, "y_true", per="label", allow_object=True)
    yp = check_vector(y_pred, "y_pred", per="label", allow_object=True)
    if yt.shape[0] != yp.shape[0]:
        raise MetricInputError(f"y_true has {yt.shape[0]} entries but y_pred has {yp.shape[0]} (length mismatch)")
    names, inv = check_groups(groups, yt.shape[0])
    pos_t = yt == positive
    pos_p = yp == positive
    if not isinstance(pos_t, np.ndarray) or not isinstance(pos_p, np.ndarray):  # pragma: no cover
        raise MetricInputError(f"could not compare labels with positive={positive!r}")
    if not pos_t.any() and not pos_p.any():
        raise MetricInputError(
            f"positive={positive!r} occurs in neither y_true nor y_pred; check the label "
            f"(y_true values include {np.unique(yt)[:5].tolist()})"
        )
    g = len(names)
    p = np.bincount(inv, weights=pos_t, minlength=g)
    nn = np.bincount(inv, weights=~pos_t, minlength=g)
    tp = np.bincount(inv, weights=pos_t & pos_p, minlength=g)
    fp = np.bincount(inv, weights=~pos_t & pos_p, minlength=g)
    tpr = _safe_div(tp, p)
    fpr = _safe_div(fp, nn)

    def _diff_ratio(r):
        r = r[~np.isnan(r)]
        if r.size == 0:
            return float("nan"), float("nan")
        return float(r.max() - r.min()), float(_safe_div(r.min(), r.max()))

    dt, rt = _diff_ratio(tpr)
    df, rf = _diff_ratio(fpr)
    return {
        "groups": names,
        "tpr": {k: float(x) for k, x in zip(names, tpr)},
        "fpr": {k: float(x) for k, x in zip(names, fpr)},
        "n_positive": {k: int(x) for k, x in zip(names, p)},
        "n_negative": {k: int(x) for k, x in zip(names, nn)},
        "tpr_difference": dt,
        "fpr_difference": df,
        "equalized_odds_difference": float(np.nanmax([dt, df])) if not (np.isnan(dt) and np.isnan(df))
        else float("nan"),
        "tpr_ratio": rt,
        "fpr_ratio": rf,
        "equalized_odds_ratio": float(np.nanmin([rt, rf])) if not (np.isnan(rt) and np.isnan(rf))
        else float("nan"),
    }


# --------------------------------------------------------------------------- grouped bootstrap


def grouped_bootstrap(values, groups, n_resamples=1000, seed=0, clusters=None) -> dict:
    """Stratified bootstrap of per-group means: ``{"by_group": (B, G), "groups": [...], "overall": (B,)}``.

    Groups are sorted by name. All randomness comes from
    ``np.random.default_rng(seed)`` (groups drawn in name order, resamples in
    chunks of about 64 MB), so a seed reproduces the output exactly.

    * Sample level (``clusters=None``): each group's n_g samples are redrawn
      n_g times with replacement *within the group*, so every group keeps its
      size in every resample (a group of 5 is never empty -> never NaN).
      ``overall`` = sum_g n_g m_g / N, the mean over all resampled samples.
    * Cluster level (``clusters`` = one id per sample, e.g. subject id; every
      cluster must lie in one group, else ``MetricInputError``): in group g with K_g
      clusters, draw weights W ~ Multinomial(K_g, 1/K_g) (K_g clusters drawn with
      replacement); with per-cluster sums S and sizes n, the group mean is
      (W @ S) / (W @ n) = sum of drawn samples' values / number of drawn samples,
      and ``overall`` = sum_g W_g @ S_g / sum_g W_g @ n_g.
    """
    v = check_values(values, allow_inf=False)
    names, inv = check_groups(groups, v.size)
    b_total = check_positive_int(n_resamples, "n_resamples")
    rng = np.random.default_rng(seed)
    if clusters is None:
        by_group, tot_sum, tot_n = _resample_within_groups(v, inv, len(names), b_total, rng)
    else:
        by_group, tot_sum, tot_n = _resample_clusters_within_groups(v, inv, names, clusters, b_total, rng)
    return {"by_group": by_group, "groups": names, "overall": tot_sum / tot_n}


def _resample_within_groups(v: np.ndarray, inv: np.ndarray, g: int, b_total: int, rng: np.random.Generator):
    """Sample level: ``(by_group (B, G) means, overall sums (B,), overall counts (B,))``."""
    by_group = np.empty((b_total, g), dtype=np.float64)
    tot_sum = np.zeros(b_total, dtype=np.float64)
    tot_n = np.zeros(b_total, dtype=np.float64)
    for j in range(g):
        vg = v[inv == j]
        ng = vg.size
        step = max(1, _CHUNK_BYTES // (16 * ng))
        for start in range(0, b_total, step):
            b = min(step, b_total - start)
            idx = rng.integers(0, ng, size=(b, ng))
            by_group[start:start + b, j] = vg[idx].mean(axis=1)
        tot_sum += by_group[:, j] * ng
        tot_n += ng
    return by_group, tot_sum, tot_n


def _cluster_groups(clusters, inv: np.ndarray, names: list, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(cluster index per sample, group index per cluster, K)``; a cluster spanning two groups raises."""
    g = len(names)
    cinv, k = check_clusters(clusters, n)
    pairs = np.unique(cinv * g + inv)
    if pairs.size != k:
        per_cluster = np.bincount(pairs // g, minlength=k)
        bad = int(np.flatnonzero(per_cluster > 1)[0])
        cid = np.asarray(clusters)[np.flatnonzero(cinv == bad)[0]].item()
        in_groups = [names[x] for x in np.unique(inv[cinv == bad])]
        raise MetricInputError(
            f"cluster {cid!r} spans several groups {in_groups}; every cluster (e.g. subject) must lie "
            "within one group for a stratified cluster bootstrap"
        )
    cgroup = np.empty(k, dtype=np.int64)
    cgroup[pairs // g] = pairs % g
    return cinv, cgroup, k


def _resample_clusters_within_groups(v: np.ndarray, inv: np.ndarray, names: list, clusters, b_total: int,
                                     rng: np.random.Generator):
    """Cluster level: ``(by_group (B, G) means, overall sums (B,), overall counts (B,))``."""
    g = len(names)
    cinv, cgroup, k = _cluster_groups(clusters, inv, names, v.size)
    by_group = np.empty((b_total, g), dtype=np.float64)
    tot_sum = np.zeros(b_total, dtype=np.float64)
    tot_n = np.zeros(b_total, dtype=np.float64)
    sums = np.bincount(cinv, weights=v, minlength=k)
    sizes = np.bincount(cinv, minlength=k).astype(np.float64)
    for j in range(g):
        members = np.flatnonzero(cgroup == j)
        kg = members.size
        s_g, n_g = sums[members], sizes[members]
        step = max(1, _CHUNK_BYTES // (16 * kg))
        for start in range(0, b_total, step):
            b = min(step, b_total - start)
            w = rng.multinomial(kg, np.full(kg, 1.0 / kg), size=b).astype(np.float64)
            ws, wn = w @ s_g, w @ n_g
            by_group[start:start + b, j] = ws / wn
            tot_sum[start:start + b] += ws
            tot_n[start:start + b] += wn
    return by_group, tot_sum, tot_n


def bootstrap_disparities(values, groups, n_resamples=1000, seed=0, clusters=None) -> dict:
    """``(B,)`` bootstrap draws of the disparity summaries of :func:`disaggregate`.

    From :func:`grouped_bootstrap` (same arguments, same draws) computes per
    resample, over the G group means m_g: ``min``, ``max``,
    ``difference_between_groups``, ``ratio_between_groups`` (NaN where max = 0),
    ``difference_to_overall``, ``ratio_to_overall`` (NaN where overall = 0),
    ``std_ddof0``, ``std_ddof1`` (NaN for G = 1) and ``ser`` = max_g(1 - m_g) /
    min_g(1 - m_g) (inf where the min is 0 < max, NaN where all are 0; only
    meaningful when values are 0/1 correctness). Also returns ``overall``.
    Take percentile intervals with :func:`facebench.metrics.bootstrap.percentile_interval`.
    """
    res = grouped_bootstrap(values, groups, n_resamples=n_resamples, seed=seed, clusters=clusters)
    m, overall = res["by_group"], res["overall"]
    lo, hi = m.min(axis=1), m.max(axis=1)
    return {
        "overall": overall,
        "min": lo,
        "max": hi,
        "difference_between_groups": hi - lo,
        "ratio_between_groups": np.asarray(_safe_div(lo, hi), dtype=np.float64),
        "difference_to_overall": np.abs(m - overall[:, None]).max(axis=1),
        "ratio_to_overall": np.asarray(_ratio_to_overall(m, overall), dtype=np.float64),
        "std_ddof0": np.asarray(_std(m, 0, axis=1), dtype=np.float64),
        "std_ddof1": np.asarray(_std(m, 1, axis=1), dtype=np.float64),
        "ser": np.asarray(_ser_from_errors(1.0 - m), dtype=np.float64),
    }


# --------------------------------------------------------------------------- verification fairness


def rates_at_threshold(genuine_scores, impostor_scores, threshold, higher_is_same=True) -> tuple[float, float]:
    """``(FMR, FNMR)`` at one threshold t.

    A comparison is accepted when ``score >= t`` (``higher_is_same=True``) or
    ``score <= t`` (``higher_is_same=False``). FMR = accepted impostors / impostors,
    FNMR = rejected genuine / genuine. An empty array gives NaN for its rate.
    """
    gen = _comparison_scores(genuine_scores, "genuine_scores", allow_empty=True)
    imp = _comparison_scores(impostor_scores, "impostor_scores", allow_empty=True)
    if gen.size == 0 and imp.size == 0:
        raise MetricInputError("genuine_scores and impostor_scores are both empty")
    t = check_real(threshold, "threshold")
    hi = check_bool(higher_is_same, "higher_is_same")
    acc_imp = (imp >= t) if hi else (imp <= t)
    acc_gen = (gen >= t) if hi else (gen <= t)
    fmr = float(acc_imp.mean()) if imp.size else float("nan")
    fnmr = float(1.0 - acc_gen.mean()) if gen.size else float("nan")
    return fmr, fnmr


def threshold_at_fmr(impostor_scores, target_fmr, higher_is_same=True) -> float:
    """Most permissive global threshold with FMR <= ``target_fmr``.

    With n impostor scores, at most k = floor(target_fmr * n) impostors may be
    accepted. For ``higher_is_same=True`` (accept ``score >= t``) the result is
    the smallest float64 t with FMR(t) <= target: ``t = nextafter(s_(k+1), +inf)``
    where s_(k+1) is the (k+1)-th largest impostor score; tie rule: all
    impostors tied with s_(k+1) are rejected, so FMR(t) may fall below the
    target when scores tie. For ``higher_is_same=False`` (accept ``score <= t``)
    it is the largest t: ``nextafter(s_(k+1), -inf)`` with s_(k+1) the (k+1)-th
    smallest. If k >= n every impostor may be accepted and t is the
    least strict impostor score itself (FMR = 1).

    Raises ``MetricInputError`` when target_fmr < 1/n (the impostor set cannot
    resolve the target; at least ceil(1/target_fmr) comparisons are needed).
    """
    imp = _comparison_scores(impostor_scores, "impostor_scores")
    hi = check_bool(higher_is_same, "higher_is_same")
    target = check_fraction(target_fmr, "target_fmr", "(0, 1]", "1e-3")
    n = imp.size
    k = int(np.floor(target * n * (1.0 + 1e-12)))  # tolerate 0.29 * 100 = 28.999...
    if k < 1:
        need = int(np.ceil(1.0 / target * (1.0 - 1e-12)))
        raise MetricInputError(
            f"target_fmr={target:g} cannot be resolved with {n} impostor comparisons (FMR moves in steps of "
            f"1/{n} = {1.0 / n:.3g}); need at least {need} impostor comparisons (ideally 10x more)"
        )
    if k >= n:
        return float(imp.min() if hi else imp.max())
    # (k+1)-th strictest score: descending order for similarities, ascending for distances
    s = -np.partition(-imp, k)[k] if hi else np.partition(imp, k)[k]
    return float(np.nextafter(s, np.inf if hi else -np.inf))


def group_error_rates(scores, same, groups, threshold, higher_is_same=True) -> dict:
    """Per-group FMR / FNMR at ONE global threshold (NIST FRVT demographics).

    ``scores``: one comparison score per pair; ``same``: True for genuine
    (mated) pairs, False for impostor pairs; ``groups``: the pair's group.
    FMR_g = accepted impostors_g / n_impostor_g, FNMR_g = rejected genuine_g /
    n_genuine_g (NaN when the group has none). Returns
    ``{"groups", "threshold", "fmr", "fnmr", "n_genuine", "n_impostor"}`` with
    dicts keyed by group (sorted by name).
    """
    s = _comparison_scores(scores, "scores")
    m = check_binary_flags(same, s.size, "same", "True = genuine/mated pair")
    names, inv = check_groups(groups, s.size)
    t = check_real(threshold, "threshold")
    hi = check_bool(higher_is_same, "higher_is_same")
    accept = (s >= t) if hi else (s <= t)
    g = len(names)
    n_gen = np.bincount(inv, weights=m, minlength=g)
    n_imp = np.bincount(inv, weights=~m, minlength=g)
    fm = np.bincount(inv, weights=accept & ~m, minlength=g)
    fnm = np.bincount(inv, weights=~accept & m, minlength=g)
    fmr = _safe_div(fm, n_imp)
    fnmr = _safe_div(fnm, n_gen)
    return {
        "groups": names,
        "threshold": t,
        "fmr": {k: float(x) for k, x in zip(names, fmr)},
        "fnmr": {k: float(x) for k, x in zip(names, fnmr)},
        "n_genuine": {k: int(x) for k, x in zip(names, n_gen)},
        "n_impostor": {k: int(x) for k, x in zip(names, n_imp)},
    }


def _max_over(x: np.ndarray, den: float) -> float:
    hi = float(x.max())
    if den > 0:
        return hi / den
    return float("inf") if hi > 0 else float("nan")


def demographic_differentials(fmr_by_group, fnmr_by_group) -> dict:
    """NIST FRVT Part 8 style differentials of per-group FMR / FNMR at one threshold.

    ``*_max_min_ratio`` = max_g r_g / min_g r_g;
    ``*_max_geomean_ratio`` = max_g r_g / (prod_g r_g)^(1/G) (1 = parity).
    Inputs: mappings group -> rate (same groups) or aligned arrays; NaN rates
    raise ``MetricInputError``. Zero rates: if the denominator (min or geometric mean,
    0 as soon as one group has rate 0) is 0 the ratio is ``inf`` when the max
    is > 0 and NaN when every group has rate 0.
    """
    fmr, fnmr = _rates_pair(fmr_by_group, fnmr_by_group)
    out = {}
    for name, r in (("fmr", fmr), ("fnmr", fnmr)):
        geo = float(np.exp(np.mean(np.log(r)))) if (r > 0).all() else 0.0
        out[f"{name}_max_min_ratio"] = _max_over(r, float(r.min()))
        out[f"{name}_max_geomean_ratio"] = _max_over(r, geo)
    return {k: out[k] for k in ("fmr_max_min_ratio", "fnmr_max_min_ratio",
                                "fmr_max_geomean_ratio", "fnmr_max_geomean_ratio")}


def fairness_discrepancy_rate(fmr_by_group, fnmr_by_group, alpha=0.5) -> float:
    """Fairness Discrepancy Rate (de Freitas Pereira & Marcel, 2021) at one threshold.

    FDR = 1 - (alpha * max_{i,j}|FMR_i - FMR_j| + (1 - alpha) * max_{i,j}|FNMR_i - FNMR_j|),
    in [0, 1]; 1 = perfectly fair. ``alpha`` in [0, 1] weights false matches.
    Inputs as in :func:`demographic_differentials`.
    """
    fmr, fnmr = _rates_pair(fmr_by_group, fnmr_by_group)
    a = check_fraction(alpha, "alpha", "[0, 1]", "0.5")
    return float(1.0 - (a * (fmr.max() - fmr.min()) + (1.0 - a) * (fnmr.max() - fnmr.min())))
