"""The strategy lab's statistics (cloud_hub/api/_uplift.py) against published values.

Newcombe's hybrid score interval (method 10) reproduces the worked examples of Newcombe
(1998), "Interval estimation for the difference between independent proportions",
Statistics in Medicine 17, table II, to the 4 decimals printed there; the Wilson
interval and the Katz log risk-ratio interval are checked against hand computation.
"""

from __future__ import annotations

import math

import pytest

from cloud_hub.api import newcombe, relative_effect, wilson


@pytest.mark.parametrize(
    ("k1", "n1", "k2", "n2", "low", "high"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
    ],
)
def test_newcombe_method_10_matches_the_papers_examples(
    k1: int, n1: int, k2: int, n2: int, low: float, high: float
) -> None:
    d, lo, hi = newcombe(k1, n1, k2, n2)
    assert d == pytest.approx(k1 / n1 - k2 / n2)
    assert round(lo, 4) == low
    assert round(hi, 4) == high


def test_wilson_interval() -> None:
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(0, 10)[0] == 0.0
    assert wilson(10, 10)[1] == 1.0


def test_relative_effect_is_one_minus_the_risk_ratio_with_katz_interval() -> None:
    value, low, high = relative_effect(10, 100, 20, 100)  # type: ignore[misc]
    se = math.sqrt(1 / 10 - 1 / 100 + 1 / 20 - 1 / 100)
    assert value == pytest.approx(0.5)
    assert low == pytest.approx(1 - 0.5 * math.exp(1.959963984540054 * se))
    assert high == pytest.approx(1 - 0.5 * math.exp(-1.959963984540054 * se))
    # An empty treated arm: Haldane's 0.5 keeps the interval finite.
    empty = relative_effect(0, 50, 10, 50)
    assert empty is not None
    assert empty[0] == 1.0
    assert math.isfinite(empty[1])
    assert empty[1] < 1.0
    # No churner in the holdout: no effect to measure.
    assert relative_effect(3, 50, 0, 50) is None
