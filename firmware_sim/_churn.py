"""Churn: who leaves, when, with how much warning, and from which products.

The easy fleet's churn is one ramp for everyone: use declines linearly for 21 days to
25 % at the churn date, then decays to ~0 within a day. :class:`ChurnSpec` draws it per
churner instead (ramp length and depth, or no warning at all), staggers the products of
a churner (each winds down on its own ramp, up to ``stagger_days`` apart), and adds
partial churn (one product left, the others kept). :func:`plan_churn` records all of it
on the :class:`~firmware_sim.Customer` as ground truth.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._knobs import ChurnSpec
    from ._population import Customer

__all__ = [
    "CHURN_FLOOR",
    "CHURN_PRECURSOR_MS",
    "CHURN_TAU_MS",
    "ProductChurn",
    "plan_churn",
    "ramp",
]

DAY_MS = 86_400_000
#: How long before churning a churner's usage starts to decline (the easy fleet).
CHURN_PRECURSOR_MS = 21 * DAY_MS
#: A churner's usage multiplier on the churn date (the easy fleet's end of the decline).
CHURN_FLOOR = 0.25
#: After the churn date the remaining usage decays with this time constant (~0 in a day).
CHURN_TAU_MS = DAY_MS // 3
#: churn later than this after the window is not recorded (no horizon reaches it)
_HORIZON_MS = 30 * DAY_MS
_MONTH_MS = 30 * DAY_MS


def ramp(ts_ms: int, disengage_ms: int, churn_ms: int, floor: float) -> float:
    """Use multiplier: 1 until ``disengage_ms``, linear to ``floor`` at ``churn_ms``, then
    exponential decay (time constant 8 h). ``disengage_ms == churn_ms``: no warning."""
    if ts_ms < disengage_ms:
        return 1.0
    if ts_ms < churn_ms:
        done = (ts_ms - disengage_ms) / (churn_ms - disengage_ms)
        return 1.0 - (1.0 - floor) * done
    return floor * math.exp(-(ts_ms - churn_ms) / CHURN_TAU_MS)


@dataclass(frozen=True)
class ProductChurn:
    """When a customer stops using one product, and how they wind down before.

    ``partial``: the customer keeps their other products (they are no churner).
    """

    product: str
    churn_ms: int
    disengage_ms: int
    #: use at ``churn_ms`` relative to usual (1.0 with ``disengage_ms == churn_ms``: no
    #: warning at all)
    floor: float
    partial: bool = False

    def engagement(self, ts_ms: int) -> float:
        """Use multiplier of this product at ``ts_ms``."""
        return ramp(ts_ms, self.disengage_ms, self.churn_ms, self.floor)


def _warning(rng: random.Random, spec: ChurnSpec) -> tuple[float, float]:
    """(ramp days, floor) of one churner: none at all for ``no_warning_share`` of them."""
    if rng.random() < spec.no_warning_share:
        return 0.0, 1.0
    return rng.uniform(*spec.ramp_days), rng.uniform(*spec.floor)


def plan_churn(
    customer: Customer,
    products: list[str],
    spec: ChurnSpec,
    rng: random.Random,
    start_ms: int,
    end_ms: int,
) -> Customer:
    """``customer`` with churn drawn per ``spec`` (``products``: the ones they use).

    With ``spec.monthly_rate`` the churn time is exponential from the window start (the
    customer is recorded as a churner when it falls before the window end + 30 days);
    otherwise the customer keeps the churn date the easy fleet gave them.
    """
    churn_ms = customer.churn_ms
    if spec.monthly_rate is not None:
        at = (
            start_ms + int(rng.expovariate(spec.monthly_rate / _MONTH_MS))
            if spec.monthly_rate > 0
            else None
        )
        churn_ms = at if at is not None and at < end_ms + _HORIZON_MS else None
    days, floor = _warning(rng, spec)
    per_product: list[ProductChurn] = []
    if churn_ms is not None:
        # Products stop in some order, up to stagger_days apart (the last on churn_ms),
        # each on a ramp of its own around the customer's.
        last = rng.randrange(len(products)) if products else 0
        for i, product in enumerate(products):
            stop = churn_ms - (0 if i == last else int(rng.uniform(0, spec.stagger_days) * DAY_MS))
            if days == 0.0:
                per_product.append(ProductChurn(product, stop, stop, 1.0))
                continue
            own = days * rng.uniform(0.5, 1.5) if spec.stagger_days > 0 else days
            depth = min(
                1.0, max(0.0, floor + (rng.uniform(-0.15, 0.15) if spec.stagger_days > 0 else 0.0))
            )
            per_product.append(ProductChurn(product, stop, stop - int(own * DAY_MS), depth))
    if spec.partial_monthly_rate > 0 and len(products) >= 2:
        at = start_ms + int(rng.expovariate(spec.partial_monthly_rate / _MONTH_MS))
        product = rng.choice(products)
        p_days, p_floor = _warning(rng, spec)
        before_full = churn_ms is None or at < churn_ms - int(spec.ramp_days[1] * DAY_MS)
        if at < end_ms + _HORIZON_MS and before_full:
            partial = ProductChurn(product, at, at - int(p_days * DAY_MS), p_floor, partial=True)
            per_product = [p for p in per_product if p.product != product] + [partial]
    if churn_ms is None:
        return replace(
            customer, churner=False, churn_ms=None, churn_day=None, disengage_ms=None,
            churn_floor=CHURN_FLOOR, product_churn=tuple(per_product),
        )  # fmt: skip
    return replace(
        customer,
        churner=True,
        churn_ms=churn_ms,
        churn_day=round((churn_ms - start_ms) / DAY_MS, 4),
        disengage_ms=churn_ms - int(days * DAY_MS),
        churn_floor=floor,
        product_churn=tuple(sorted(per_product, key=lambda p: p.product)),
    )
