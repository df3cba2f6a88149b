"""The churn ceiling from observed counts (twinsync/training/_count_ceiling.py): an oracle
that knows each customer's usual rate but sees only the uses the device reported.

docs/models.md quotes it beside the engagement ceiling to show where the warning runs out;
these tests show it finds a decline that is in the counts, finds none that is not, and
reads the counts the device really reported.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score as auc

from firmware_sim import ChurnSpec, Fleet, FleetSpec
from twinsync.training import count_ceiling, customer_rows, replay

DAY_MS = 86_400_000


def _counts(rng: np.random.Generator, rate: float, use: np.ndarray) -> list[int]:
    return [int(n) for n in rng.poisson(rate * use)]


def test_a_deep_decline_is_in_the_counts_and_the_oracle_finds_it() -> None:
    """The easy fleet's ramp (21 days down to 25 %): a few days before churning, a
    customer with three uses a day is plainly below their usual, and the oracle ranks
    nearly every churner above every loyal customer."""
    rng = np.random.default_rng(7)
    spec = ChurnSpec()  # one ramp: 21 days to 25 %
    rows, rates, truth = [], [], []
    back = np.arange(14) + 0.5
    for i in range(600):
        rate = float(rng.uniform(1.0, 6.0))
        churner = i % 3 == 0
        use = np.ones(14)
        if churner:
            lead = rng.uniform(0.5, 3.0)
            use = 1.0 - 0.75 * np.clip(1.0 - (lead + back) / 21.0, 0.0, 1.0)
        rows.append(_counts(rng, rate, use))
        rates.append(rate)
        truth.append(churner)
    score = count_ceiling(rows, rates, spec, horizon_days=14)
    assert auc(truth, score) > 0.95
    # Fewer uses than usual is riskier, for the same customer.
    low, usual = count_ceiling([[0] * 14, [3] * 14], [3.0, 3.0], spec, horizon_days=14)
    assert low > usual
    # Without a usual rate there is nothing to compare with.
    assert count_ceiling([[0] * 14], [0.0], spec, horizon_days=14)[0] == 0.0


def test_without_warning_the_oracle_is_at_chance() -> None:
    """Churners who stop without winding down use the product as loyal customers do:
    the counts carry no warning, and even the oracle cannot beat a coin."""
    rng = np.random.default_rng(8)
    spec = ChurnSpec(ramp_days=(3.0, 42.0), floor=(0.2, 0.9), no_warning_share=0.3)
    rows = [_counts(rng, 2.0, np.ones(14)) for _ in range(2000)]
    truth = [i % 2 == 0 for i in range(2000)]
    score = count_ceiling(rows, [2.0] * 2000, spec, horizon_days=14)
    assert abs(auc(truth, score) - 0.5) < 0.05


def test_rows_carry_the_uses_the_device_reported_day_by_day() -> None:
    """``daily_uses`` are the customer's brews in each of the 28 whole days (the feature
    window) before the cut-off, on the device's clock, counted from what the agent
    accepts (not from the truth), and ``usual_rate`` their brews per day before they
    wind down."""
    fleet = Fleet.generate(FleetSpec(seed=5, devices=12, days=34, churn_fraction=0.5))
    cut = fleet.start_ms + 30 * DAY_MS + 3_600_000
    rows = customer_rows(fleet, "coffee", [cut], min_history_days=14)
    assert rows.x
    assert len(rows.daily_uses) == len(rows.usual_rate) == len(rows.x)
    assert rows.churn_spec == fleet.spec.churn
    checked = 0
    for i, subject in enumerate(rows.subject):
        brews = [
            s.ts
            for s in replay(fleet, rows.device[i])
            if s.subject == subject and s.name == "coffee.brew"
        ]
        expected = [
            sum(1 for t in brews if cut - (d + 1) * DAY_MS <= t < cut - d * DAY_MS)
            for d in range(28)
        ]
        assert rows.daily_uses[i] == expected
        customer = fleet.customer(subject)
        until = min(fleet.end_ms, customer.churns("coffee") or fleet.end_ms)
        if customer.disengage_ms is not None:
            until = min(until, customer.disengage_ms)
        days = (until - fleet.start_ms) / DAY_MS
        assert rows.usual_rate[i] == sum(1 for t in brews if t < until) / days
        checked += sum(expected) > 0
    assert checked >= 3
