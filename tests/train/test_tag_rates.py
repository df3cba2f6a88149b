"""The default tag catalog tells customers apart on a simulated realistic fleet.

Every default tag holds for some customers and for at most half of them, per product:
a tag true for (nearly) everyone or no one says nothing. The rates docs/edge-agent.md
quotes ("Behaviour tags") are this measurement on a larger fleet:
``tag_rates(devices=240, seed=7)``.
"""

from __future__ import annotations

import dataclasses

from firmware_sim import Fleet, FleetSpec
from protocol import DEFAULT_TAGS, TAG_NAMES, feature_names
from twinsync.training import customer_rows, cutoffs

DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01, as the trainer's fleets


def tag_rates(devices: int, seed: int) -> dict[str, tuple[int, dict[str, float]]]:
    """product -> (customer snapshots, tag field -> share of them the tag holds for):
    weekly snapshots after two weeks of history, on a realistic fleet at a real churn
    rate (2 % of customers a month)."""
    spec = FleetSpec.realistic(seed=seed, devices=devices, days=56.0, start_ms=START_MS)
    spec = dataclasses.replace(
        spec,
        # as the trainer's fleets: a replay has no agent to reboot
        faults=dataclasses.replace(spec.faults, reboots_per_day=0.0),
        churn=dataclasses.replace(spec.churn, monthly_rate=0.02),
    )
    fleet = Fleet.generate(spec)
    times = cutoffs(fleet, 7.0, seed)
    out = {}
    for product in sorted(TAG_NAMES):
        rows = customer_rows(fleet, product, times, min_history_days=14.0)
        names = feature_names(product)
        held: dict[str, int] = {}
        for x in rows.x:
            for field, on in DEFAULT_TAGS.evaluate(
                product, dict(zip(names, x, strict=True))
            ).items():
                held[field] = held.get(field, 0) + on
        out[product] = (len(rows.x), {f: n / max(1, len(rows.x)) for f, n in held.items()})
    return out


def test_every_default_tag_holds_for_some_customers_and_at_most_half() -> None:
    rates = tag_rates(devices=120, seed=7)
    for product, (rows, shares) in rates.items():
        assert rows >= 40, product
        assert set(shares) == {t.field for t in DEFAULT_TAGS.for_product(product)}
        for field, share in shares.items():
            assert 0.0 < share <= 0.5, (field, share)
