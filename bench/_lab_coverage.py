"""The strategy lab's interval coverage against the simulator's truth (no services).

For each seed: a fleet (``ChurnSpec(monthly_rate=1.0)``: about 60 % of customers would
leave in the 30 days after the simulated day), an offer with a hidden true effect per
persona (``OfferTruth``), a fresh keyed assignment of every customer to treated or
holdout (``cloud_hub.store.assign``, the hub's), the treated exposed; then the churned
counts per arm, Newcombe's 95 % interval of the uplift (the hub's) and whether it holds
the true average effect on the assigned customers. Coverage is the share of seeds whose
interval holds it: near 0.95 is honest. The hub, broker and agents are left out on
purpose: tests/e2e/test_lab_fleet.py shows the counts they produce equal these.

``python -m bench.run`` does not run it (it measures no speed); call
``lab_coverage(seeds=400, devices=120)`` (docs/hub.md, "Strategy lab", has the figures).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cloud_hub.api import newcombe
from cloud_hub.store import assign
from firmware_sim import DAY_MS, ChurnSpec, Fleet, FleetSpec, OfferSpec, OfferTruth

__all__ = ["LAB_EFFECT", "lab_coverage"]

#: the hidden effects of the offer in the e2e proof (tests/e2e/test_lab_fleet.py)
LAB_EFFECT = {
    "early_bird": 0.7,
    "night_owl": 0.2,
    "homebody": 0.5,
    "commuter": 0.4,
    "weekend_warrior": 0.6,
}


def lab_coverage(
    seeds: int = 400, devices: int = 120, effect: Mapping[str, float] = LAB_EFFECT
) -> dict[str, float]:
    """The interval's coverage over ``seeds`` fleets of ``devices`` (and the mean
    number of customers)."""
    held, customers = 0, 0
    for seed in range(1, seeds + 1):
        spec = FleetSpec(
            seed=seed, devices=devices, days=1.0, start_ms=1_790_000_000_000,
            churn=ChurnSpec(monthly_rate=1.0),
        )  # fmt: skip
        fleet = Fleet.generate(spec)
        truth = OfferTruth(fleet, OfferSpec(effect=dict(effect), seed=seed))
        start, end = fleet.end_ms, fleet.end_ms + 30 * DAY_MS
        subjects = [c.subject for c in fleet.customers]
        arms = assign(os.urandom(16), f"exp-{seed:012x}", [(s, "") for s in subjects], 0.5)
        for s in subjects:
            if arms[s] == "treated":
                truth.expose(s, start)
        counts = {"treated": [0, 0], "holdout": [0, 0]}
        for s in subjects:
            counts[arms[s]][0] += 1
            counts[arms[s]][1] += truth.churns(s, start, end)
        (n_t, k_t), (n_h, k_h) = counts["treated"], counts["holdout"]
        _d, low, high = newcombe(k_h, n_h, k_t, n_t)
        held += low <= truth.true_uplift(subjects, start, end) <= high
        customers += len(subjects)
    return {"coverage": held / seeds, "customers": customers / seeds, "seeds": seeds}
