"""Corruption-robustness metrics (ImageNet-C style, spec 1.4, 1.5, 4.1) and the resolution threshold (2.4).

Conventions:
* E^f_{s,c} is the model's error on corruption c at severity s = 1..5; callers pass errors or accuracies
  (``kind``) as fractions or percentages (``unit``, required: the unit check of spec 1.7/4.1 refuses
  fractions above 1 and "percentages" that are all <= 1). Everything is computed on error fractions.
* CE_c = sum_s E^f_{s,c} / sum_s E^ref_{s,c} against a NAMED reference (``ReferenceErrors``: per corruption
  either its five errors or their mean); mCE = 100 * mean_c CE_c (%). No reference is ever implied:
  ``ALEXNET`` (ImageNet-C's AlexNet errors) must be passed explicitly.
* u-mCE (unnormalised) = 100 * mean_c mean_s E^f_{s,c} (%), needs no reference.
* relative CE_c = sum_s (E^f_{s,c} - E^f_clean) / sum_s (E^ref_{s,c} - E^ref_clean); a corruption whose
  denominator is <= 0 is excluded (and reported with the reason), never divided by.
* Averages run over ``corruptions`` (default: the 15 benchmark corruptions in canonical order; the
  reference's test.py averaged all 19, spec 1.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from facebench.errors import MetricInputError

from ._validation import check_bool, check_choice, check_consistent_length, check_fraction, check_real, \
    check_score_vector

#: The 15 benchmark corruptions, canonical order (hendrycks/robustness; the order of ALEXNET_MEAN_ERRORS).
BENCHMARK_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                         "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                         "elastic_transform", "pixelate", "jpeg_compression")
N_SEVERITIES = 5
#: AlexNet's ImageNet-C error per corruption, mean over the 5 severities, as fractions (google-research/augmix
#: imagenet.py "Raw AlexNet errors taken from hendrycks/robustness"; spec 1.4). Keyed by name, not by position.
ALEXNET_MEAN_ERRORS = dict(zip(BENCHMARK_CORRUPTIONS, (
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816, 0.826572, 0.819324,
    0.564592, 0.853204, 0.646056, 0.717840, 0.606500)))
#: AlexNet's clean ImageNet top-1 error for relative mCE: about 43.5 % (the spec marks it unverified).
ALEXNET_CLEAN_ERROR = 0.435
UNITS = ("fraction", "percent")
KINDS = ("error", "accuracy")


@dataclass(frozen=True)
class ReferenceErrors:
    """A named reference model's corruption errors (fractions): per corruption a mean over the five
    severities or the five values; ``clean_error`` (fraction) is needed only for relative mCE."""

    name: str
    errors: Mapping[str, float | Sequence[float]]
    clean_error: float | None = None


ALEXNET = ReferenceErrors("alexnet-imagenet-c (hendrycks/robustness; values from google-research/augmix)",
                          ALEXNET_MEAN_ERRORS, ALEXNET_CLEAN_ERROR)


def to_error_fraction(values, unit: str, kind: str = "error", name: str = "values") -> np.ndarray:
    """``values`` (errors or accuracies, fractions or percentages) as error fractions in [0, 1] (float64)."""
    check_choice(unit, UNITS, "unit")
    check_choice(kind, KINDS, "kind")
    arr = check_score_vector(np.atleast_1d(np.asarray(values)), name)
    top = 1.0 if unit == "fraction" else 100.0
    if arr.min() < 0 or arr.max() > top:
        hint = "; these look like percentages: pass unit='percent'" if unit == "fraction" else ""
        raise MetricInputError(f"{name} must lie in [0, {top:g}] for unit={unit!r}, got "
                               f"[{arr.min():g}, {arr.max():g}]{hint}")
    if unit == "percent" and arr.max() <= 1.0 and arr.max() > 0:
        raise MetricInputError(f"{name} are all <= 1 with unit='percent': these look like fractions; pass "
                               "unit='fraction' (values that really are all below 1 % can be divided by 100)")
    fractions = arr / top
    return 1.0 - fractions if kind == "accuracy" else fractions


def reference_errors(name: str, errors: Mapping, unit: str, clean_error=None, kind: str = "error") -> ReferenceErrors:
    """A ``ReferenceErrors`` from a model run's values in any unit/kind (stored as error fractions)."""
    if not isinstance(name, str) or not name.strip():
        raise MetricInputError("a reference needs a non-empty name (model id, weights and preprocessing)")
    converted = {c: _severity_errors(v, unit, kind, f"reference errors[{c!r}]", allow_mean=True)
                 for c, v in errors.items()}
    clean = None if clean_error is None else float(to_error_fraction(clean_error, unit, kind, "clean_error")[0])
    return ReferenceErrors(name, converted, clean)


def _severity_errors(values, unit, kind, name, allow_mean=False) -> np.ndarray:
    arr = to_error_fraction(values, unit, kind, name)
    if arr.size != N_SEVERITIES and not (allow_mean and arr.size == 1):
        need = "five values (severities 1-5)" + (" or their mean" if allow_mean else "")
        raise MetricInputError(f"{name} has {arr.size} value(s); give {need}")
    return arr


def _model_table(errors: Mapping, unit, kind, corruptions) -> dict[str, np.ndarray]:
    if not isinstance(errors, Mapping):
        raise MetricInputError("errors must be a mapping corruption name -> five per-severity values")
    missing = [c for c in corruptions if c not in errors]
    if missing:
        raise MetricInputError(f"errors have no values for {missing}; pass corruptions=[...] to average over a "
                               "subset (and report which)")
    return {c: _severity_errors(errors[c], unit, kind, f"errors[{c!r}]") for c in corruptions}


def _as_reference(reference) -> ReferenceErrors:
    if not isinstance(reference, ReferenceErrors):
        raise MetricInputError("reference must be a ReferenceErrors (e.g. robustness.ALEXNET or "
                               "robustness.reference_errors(name, errors, unit=...)): never an implied table")
    return reference


def _reference_mean(reference: ReferenceErrors, corruption: str) -> float:
    if corruption not in reference.errors:
        raise MetricInputError(f"reference {reference.name!r} has no error for {corruption!r}")
    return float(_severity_errors(reference.errors[corruption], "fraction", "error",
                                  f"reference errors[{corruption!r}]", allow_mean=True).mean())


def corruption_errors(errors: Mapping, reference: ReferenceErrors, *, unit: str, kind: str = "error",
                      corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> dict[str, float]:
    """CE_c = mean_s E^f_{s,c} / mean_s E^ref_{s,c} (= the ratio of sums) per corruption, as ratios."""
    reference = _as_reference(reference)
    table = _model_table(errors, unit, kind, corruptions)
    out = {}
    for c, values in table.items():
        denominator = _reference_mean(reference, c)
        if denominator <= 0:
            raise MetricInputError(f"reference {reference.name!r} has error 0 on {c!r}; CE is undefined")
        out[c] = float(values.mean() / denominator)
    return out


def mean_corruption_error(errors: Mapping, reference: ReferenceErrors, *, unit: str, kind: str = "error",
                          corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> float:
    """mCE (%) = 100 * mean_c CE_c against ``reference``."""
    ce = corruption_errors(errors, reference, unit=unit, kind=kind, corruptions=corruptions)
    return 100.0 * float(np.mean(list(ce.values())))


def unnormalized_mce(errors: Mapping, *, unit: str, kind: str = "error",
                     corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> float:
    """u-mCE (%) = 100 * mean over corruptions of the mean error over severities (no reference)."""
    table = _model_table(errors, unit, kind, corruptions)
    return 100.0 * float(np.mean([values.mean() for values in table.values()]))


@dataclass(frozen=True)
class RelativeMCE:
    """Relative mCE (%, None when every corruption is excluded), per-corruption ratios, and the excluded
    corruptions with the reason."""

    value: float | None
    per_corruption: dict[str, float]
    excluded: dict[str, str] = field(default_factory=dict)
    reference: str = ""


def relative_mce(errors: Mapping, clean, reference: ReferenceErrors, *, unit: str, kind: str = "error",
                 corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> RelativeMCE:
    """Relative mCE = 100 * mean_c over the kept corruptions of sum_s (E_s - E_clean) / sum_s (R_s - R_clean);
    ``clean`` is the model's clean value in the same unit/kind as ``errors``."""
    reference = _as_reference(reference)
    table = _model_table(errors, unit, kind, corruptions)
    clean_error = float(to_error_fraction(clean, unit, kind, "clean")[0])
    if reference.clean_error is None:
        raise MetricInputError(f"reference {reference.name!r} has no clean_error; "
                               "relative mCE needs it (reference_errors(..., clean_error=...))")
    per, excluded = {}, {}
    for c, values in table.items():
        denominator = N_SEVERITIES * (_reference_mean(reference, c) - reference.clean_error)
        if denominator <= 0:
            excluded[c] = (f"reference's summed error increase over clean is {denominator:.6g} <= 0, so the "
                           "relative CE is undefined")
            continue
        per[c] = float((values - clean_error).sum() / denominator)
    value = 100.0 * float(np.mean(list(per.values()))) if per else None
    return RelativeMCE(value, per, excluded, reference.name)


def metric_threshold_resolution(resolutions, values, clean, fraction, interpolate: bool = False):
    """The resolution at which a higher-is-better metric first falls below ``fraction * clean``, scanning
    from the largest resolution down: without interpolation the largest tested resolution with
    value < fraction * clean (strictly); with ``interpolate=True`` the crossing point on the straight line
    between that resolution and the next larger one (the first resolution itself when it is already below).
    None when no tested resolution falls below."""
    res = check_score_vector(resolutions, "resolutions")
    vals = check_score_vector(values, "values")
    check_consistent_length(resolutions=res, values=vals)
    if (res <= 0).any() or len(np.unique(res)) != res.size:
        raise MetricInputError("resolutions must be distinct positive pixel sizes")
    threshold = check_fraction(fraction, "fraction", "(0, 1]", "0.9 not 90") * check_real(clean, "clean")
    check_bool(interpolate, "interpolate")
    order = np.argsort(-res)
    res, vals = res[order], vals[order]
    below = np.flatnonzero(vals < threshold)
    if below.size == 0:
        return None
    i = int(below[0])
    if not interpolate or i == 0:
        return float(res[i])
    r_hi, r_lo, v_hi, v_lo = res[i - 1], res[i], vals[i - 1], vals[i]
    return float(r_hi + (threshold - v_hi) * (r_lo - r_hi) / (v_lo - v_hi))
