"""The strategy lab's statistics: outcome rates, their difference and ratio, with 95 %
confidence intervals.

An experiment compares the churn rate of its holdout with that of its treated twins.

- **Uplift** (absolute): ``p_holdout - p_treated``, the share of customers the offer
  keeps, with **Newcombe's hybrid score interval** (Newcombe 1998, method 10): each
  rate's Wilson score interval, combined. Unlike the Wald interval it stays inside
  [-1, 1], does not collapse to a point when a rate is 0 or 1, and keeps close to its
  nominal coverage with a few dozen twins per arm, the size of a first experiment.
- **Relative effect**: ``1 - p_treated / p_holdout``, the share of would-be churners the
  offer keeps, which is what a campaign forecast multiplies a churn risk by. Its interval
  is the log risk-ratio (Katz) interval, with 0.5 added to each cell when one is empty
  (Haldane), so it exists for every experiment that has any churner in its holdout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Z95", "Rates", "newcombe", "relative_effect", "wilson"]

#: the normal quantile of a two-sided 95 % interval
Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a rate of ``k`` in ``n`` (``(0, 1)`` when ``n == 0``)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0 or n the bound is exactly 0 or 1 (the float sum would miss it by a hair).
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """``p1 - p2`` and its hybrid score interval (Newcombe's method 10)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, low, high


def relative_effect(
    k_treated: int, n_treated: int, k_holdout: int, n_holdout: int, z: float = Z95
) -> tuple[float, float, float] | None:
    """``1 - p_treated / p_holdout`` and its interval (Katz log risk ratio, Haldane's 0.5
    for an empty cell); None when the holdout has no churner (no effect to measure)."""
    if k_holdout == 0 or n_treated == 0:
        return None
    a, b = float(k_treated), float(k_holdout)
    n_a, n_b = float(n_treated), float(n_holdout)
    if a in (0, n_a) or b == n_b:
        a, b, n_a, n_b = a + 0.5, b + 0.5, n_a + 1, n_b + 1
    ratio = (a / n_a) / (b / n_b)
    se = math.sqrt(1 / a - 1 / n_a + 1 / b - 1 / n_b)
    low, high = ratio * math.exp(-z * se), ratio * math.exp(z * se)
    return 1 - (k_treated / n_treated) / (k_holdout / n_holdout), 1 - high, 1 - low


@dataclass(frozen=True)
class Rates:
    """One experiment's outcome counts and what follows from them."""

    treated: int
    treated_churned: int
    holdout: int
    holdout_churned: int

    def summary(self) -> dict[str, object]:
        """The answer's ``result``: each arm's rate (Wilson interval), the uplift
        (Newcombe) and the relative effect (Katz); null where an arm is empty."""
        out: dict[str, object] = {}
        for arm, n, k in (
            ("treated", self.treated, self.treated_churned),
            ("holdout", self.holdout, self.holdout_churned),
        ):
            low, high = wilson(k, n)
            out[arm] = {
                "twins": n,
                "churned": k,
                "rate": k / n if n else None,
                "low": low if n else None,
                "high": high if n else None,
            }
        if self.treated and self.holdout:
            d, low, high = newcombe(
                self.holdout_churned, self.holdout, self.treated_churned, self.treated
            )
            out["uplift"] = {"value": d, "low": low, "high": high, "method": "newcombe"}
        else:
            out["uplift"] = None
        effect = relative_effect(
            self.treated_churned, self.treated, self.holdout_churned, self.holdout
        )
        out["effect"] = (
            None
            if effect is None
            else {"value": effect[0], "low": effect[1], "high": effect[2], "method": "katz"}
        )
        return out
