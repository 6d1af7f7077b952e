"""Corruption-robustness metrics (facebench.metrics.robustness): spec 4.1 golden vectors, units, exclusions,
named references, and the resolution threshold."""

from __future__ import annotations

import numpy as np
import pytest

from facebench.errors import MetricInputError
from facebench.metrics import robustness as R

ALEX = R.ALEXNET_MEAN_ERRORS


def everywhere(value_of) -> dict:
    """Five equal per-severity values per benchmark corruption, value_of(corruption name)."""
    return {c: [value_of(c)] * 5 for c in R.BENCHMARK_CORRUPTIONS}


def test_the_alexnet_table_sums_and_averages_as_the_spec_says():
    assert list(ALEX) == list(R.BENCHMARK_CORRUPTIONS)
    assert sum(ALEX.values()) == pytest.approx(11.834896, abs=1e-9)
    assert np.mean(list(ALEX.values())) == pytest.approx(0.788993, abs=1e-6)
    assert R.ALEXNET.errors is ALEX and "alexnet" in R.ALEXNET.name


def test_alexnet_errors_give_mce_100_and_u_mce_78_8993():
    errors = everywhere(ALEX.get)
    assert R.mean_corruption_error(errors, R.ALEXNET, unit="fraction") == pytest.approx(100.0)
    ce = R.corruption_errors(errors, R.ALEXNET, unit="fraction")
    assert list(ce) == list(R.BENCHMARK_CORRUPTIONS) and list(ce.values()) == pytest.approx([1.0] * 15)
    assert R.unnormalized_mce(errors, unit="fraction") == pytest.approx(78.8993, abs=1e-4)


def test_half_the_alexnet_errors_give_mce_50():
    errors = everywhere(lambda c: 0.5 * ALEX[c])
    assert R.mean_corruption_error(errors, R.ALEXNET, unit="fraction") == pytest.approx(50.0)


def test_constant_error_040():
    errors = everywhere(lambda c: 0.40)
    expected = 100 * np.mean([0.40 / ALEX[c] for c in R.BENCHMARK_CORRUPTIONS])
    assert R.mean_corruption_error(errors, R.ALEXNET, unit="fraction") == pytest.approx(expected)
    assert R.unnormalized_mce(errors, unit="fraction") == pytest.approx(40.0)


def test_ce_is_the_ratio_of_sums_over_severities():
    ref = R.reference_errors("ref-model", {"fog": [0.1, 0.2, 0.3, 0.4, 0.5]}, unit="fraction")
    ce = R.corruption_errors({"fog": [0.05, 0.1, 0.1, 0.2, 0.3]}, ref, unit="fraction", corruptions=["fog"])
    assert ce == {"fog": pytest.approx(0.75 / 1.5)}


def test_errors_equal_to_clean_give_relative_mce_0():
    result = R.relative_mce(everywhere(lambda c: 0.3), 0.3, R.ALEXNET, unit="fraction")
    assert result.value == pytest.approx(0.0) and not result.excluded and result.reference == R.ALEXNET.name


def test_relative_ce_formula_and_exclusion_when_the_denominator_is_not_positive():
    ref = R.reference_errors("ref-model", {"fog": [0.5] * 5, "snow": [0.6] * 5, "frost": [0.2] * 5},
                             unit="fraction", clean_error=0.3)
    result = R.relative_mce({"fog": [0.4] * 5, "snow": [0.5] * 5, "frost": [0.25] * 5}, 0.2, ref,
                            unit="fraction", corruptions=["fog", "snow", "frost"])
    assert result.per_corruption == {"fog": pytest.approx(1.0), "snow": pytest.approx(1.0)}
    assert list(result.excluded) == ["frost"] and "<= 0" in result.excluded["frost"]
    assert result.value == pytest.approx(100.0)
    none_left = R.relative_mce({"frost": [0.25] * 5}, 0.2, ref, unit="fraction", corruptions=["frost"])
    assert none_left.value is None and "frost" in none_left.excluded


def test_accuracies_as_fractions_or_percent_give_the_same_mce():
    as_fraction = R.mean_corruption_error(everywhere(lambda c: 0.6), R.ALEXNET, unit="fraction", kind="accuracy")
    as_percent = R.mean_corruption_error(everywhere(lambda c: 60.0), R.ALEXNET, unit="percent", kind="accuracy")
    assert as_fraction == pytest.approx(as_percent)
    assert as_fraction == pytest.approx(100 * np.mean([0.4 / ALEX[c] for c in R.BENCHMARK_CORRUPTIONS]))


def test_unit_mistakes_are_refused():
    with pytest.raises(MetricInputError, match="unit='percent'"):
        R.unnormalized_mce(everywhere(lambda c: 40.0), unit="fraction")
    with pytest.raises(MetricInputError, match="look like fractions"):
        R.unnormalized_mce(everywhere(lambda c: 0.4), unit="percent")
    with pytest.raises(MetricInputError, match="unit must be one of"):
        R.unnormalized_mce(everywhere(lambda c: 0.4), unit="percentage")


def test_the_order_of_the_mapping_does_not_matter():
    errors = everywhere(lambda c: ALEX[c] * (0.5 if c == "fog" else 1.0))
    shuffled = dict(reversed(list(errors.items())))
    assert R.mean_corruption_error(errors, R.ALEXNET, unit="fraction") == \
        R.mean_corruption_error(shuffled, R.ALEXNET, unit="fraction")


def test_a_reference_is_never_implied_and_must_cover_the_corruptions():
    errors = everywhere(lambda c: 0.4)
    with pytest.raises(MetricInputError, match="never an implied table"):
        R.mean_corruption_error(errors, dict(ALEX), unit="fraction")
    with pytest.raises(MetricInputError, match="never an implied table"):
        R.relative_mce(errors, 0.3, dict(ALEX), unit="fraction")
    partial = R.reference_errors("partial", {"fog": 0.5}, unit="fraction")
    with pytest.raises(MetricInputError, match="has no error for 'gaussian_noise'"):
        R.mean_corruption_error(errors, partial, unit="fraction")
    with pytest.raises(MetricInputError, match="no clean_error"):
        R.relative_mce(errors, 0.3, partial, unit="fraction")
    with pytest.raises(MetricInputError, match="name"):
        R.reference_errors("", {"fog": 0.5}, unit="fraction")


def test_reference_errors_converts_units_and_kinds():
    ref = R.reference_errors("r", {"fog": [90.0, 80.0, 70.0, 60.0, 50.0]}, unit="percent", kind="accuracy",
                             clean_error=95.0)
    np.testing.assert_allclose(ref.errors["fog"], [0.1, 0.2, 0.3, 0.4, 0.5])
    assert ref.clean_error == pytest.approx(0.05)


def test_missing_corruptions_and_wrong_severity_counts_are_refused():
    errors = everywhere(lambda c: 0.4)
    del errors["frost"]
    with pytest.raises(MetricInputError, match="frost"):
        R.unnormalized_mce(errors, unit="fraction")
    assert R.unnormalized_mce(errors, unit="fraction", corruptions=["fog", "snow"]) == pytest.approx(40.0)
    with pytest.raises(MetricInputError, match="five values"):
        R.unnormalized_mce({"fog": [0.1, 0.2]}, unit="fraction", corruptions=["fog"])


# -- resolution threshold --------------------------------------------------------------------------------------
RES, ACC = [8, 12, 16, 32, 112], [0.30, 0.50, 0.80, 0.95, 0.99]


def test_threshold_without_interpolation_is_the_largest_tested_resolution_below():
    assert R.metric_threshold_resolution(RES, ACC, clean=0.99, fraction=0.9) == 16.0  # 0.8 < 0.891 <= 0.95
    shuffled = R.metric_threshold_resolution(RES[::-1], ACC[::-1], clean=0.99, fraction=0.9)
    assert shuffled == 16.0


def test_threshold_with_interpolation_is_on_the_line_between_neighbours():
    got = R.metric_threshold_resolution(RES, ACC, clean=0.99, fraction=0.9, interpolate=True)
    assert got == pytest.approx(32 + (0.891 - 0.95) * (16 - 32) / (0.80 - 0.95))


def test_threshold_edge_cases():
    assert R.metric_threshold_resolution(RES, ACC, clean=0.99, fraction=0.2) is None
    assert R.metric_threshold_resolution(RES, ACC, clean=1.0, fraction=1.0) == 112.0  # 0.99 < 1.0
    assert R.metric_threshold_resolution([16, 8], [0.9, 0.95], clean=1.0, fraction=0.95) == 16.0  # first crossing
    with pytest.raises(MetricInputError, match="fraction"):
        R.metric_threshold_resolution(RES, ACC, clean=0.99, fraction=90)
    with pytest.raises(MetricInputError, match="distinct"):
        R.metric_threshold_resolution([8, 8], [0.1, 0.2], clean=1.0, fraction=0.5)
    with pytest.raises(MetricInputError):
        R.metric_threshold_resolution([8, 16], [0.1], clean=1.0, fraction=0.5)


def test_metric_errors_are_value_errors_too():
    with pytest.raises(ValueError):
        R.to_error_fraction([1.5], unit="fraction")
    with pytest.raises(MetricInputError, match="numeric"):
        R.to_error_fraction(["a"], unit="fraction")
