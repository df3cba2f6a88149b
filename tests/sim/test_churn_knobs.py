"""Churn as it happens: 1-3 % a month, warnings of every length and depth or none at
all, products abandoned one after the other, and customers who leave one product only."""

from __future__ import annotations

import collections
import math
import statistics

import pytest

from firmware_sim import (
    ChurnSpec,
    Customer,
    FaultSpec,
    Fleet,
    FleetSpec,
    ProductChurn,
)

START = 1_767_225_600_000
DAY_MS = 86_400_000
REALISTIC = FleetSpec.realistic().churn
USES = {"coffee": "coffee.brew", "tv": "tv.watch", "wearable": "wearable.steps"}


def _population(days: float = 60, **churn: object) -> Fleet:
    spec = FleetSpec(seed=1, devices=4000, days=days, start_ms=START,
                     churn=ChurnSpec(**churn) if churn else REALISTIC)  # type: ignore[arg-type]  # fmt: skip
    return Fleet.generate(spec)  # customers only: signals are never asked for


def test_realistic_churn_is_one_to_three_percent_a_month() -> None:
    fleet = _population()
    customers = fleet.customers
    gone = [c for c in customers if c.churn_ms is not None and c.churn_ms < fleet.end_ms]
    months = fleet.spec.days / 30
    monthly = -math.log(1 - len(gone) / len(customers)) / months
    assert len(customers) > 2500
    assert 0.01 <= monthly <= 0.03, monthly
    # churners whose date lies up to 30 days after the window are labelled too (they
    # may be declining already), later ones are not
    later = [
        c for c in customers if c.churner and c.churn_ms is not None and c.churn_ms >= fleet.end_ms
    ]
    assert later
    assert all(c.churn_ms is not None and c.churn_ms < fleet.end_ms + 30 * DAY_MS for c in later)


def test_warnings_vary_and_some_churners_give_none() -> None:
    churners = [c for c in _population().customers if c.churner]
    ramps = [(c.churn_ms - c.disengage_ms) / DAY_MS for c in churners]  # type: ignore[operator]
    silent = [c for c, r in zip(churners, ramps, strict=True) if r == 0]
    assert len(silent) / len(churners) == pytest.approx(REALISTIC.no_warning_share, abs=0.1)
    warned = [r for r in ramps if r > 0]
    assert min(warned) < 8
    assert max(warned) > 35
    floors = [c.churn_floor for c in churners if c.disengage_ms != c.churn_ms]
    assert min(floors) < 0.3
    assert max(floors) > 0.8
    assert all(c.churn_floor == 1.0 for c in silent)
    for c in silent[:20]:  # no decline at all before the churn date
        assert c.churn_ms is not None
        assert c.engagement(c.churn_ms - 1) == 1.0
        assert c.engagement(c.churn_ms + DAY_MS) < 0.1


def test_a_churners_products_stop_one_after_the_other() -> None:
    churners = [c for c in _population().customers if c.churner and len(c.product_churn) > 1]
    assert len(churners) > 50
    spreads = []
    for c in churners:
        stops = [p.churn_ms for p in c.product_churn]
        assert max(stops) == c.churn_ms  # the last product stops on the churn date
        assert min(stops) >= c.churn_ms - REALISTIC.stagger_days * DAY_MS
        assert not any(p.partial for p in c.product_churn if p.churn_ms == c.churn_ms)
        spreads.append((max(stops) - min(stops)) / DAY_MS)
        if c.disengage_ms != c.churn_ms:  # each product on a ramp of its own
            assert len({p.churn_ms - p.disengage_ms for p in c.product_churn}) > 1
    assert statistics.median(spreads) > 3


def test_partial_churn_leaves_one_product_and_keeps_the_others() -> None:
    fleet = _population(partial_monthly_rate=0.05)
    partial = [c for c in fleet.customers if any(p.partial for p in c.product_churn)]
    for c in partial:  # some leave the brand later: the product went first
        if c.churner:
            assert c.churn_ms is not None
            assert all(p.churn_ms < c.churn_ms for p in c.product_churn if p.partial)
    partial = [c for c in partial if not c.churner]  # the others stay customers
    assert len(partial) > 50
    for c in partial:
        assert c.churn_ms is None
        (left,) = c.product_churn
        assert c.churns(left.product) == left.churn_ms
        assert c.churns() is None
        assert c.engagement(left.churn_ms + 2 * DAY_MS, left.product) < 0.01
        others = {"coffee", "tv", "wearable", "thermostat"} - {left.product}
        assert all(c.engagement(left.churn_ms + 2 * DAY_MS, p) == 1.0 for p in others)


def test_the_legacy_ramp_and_the_new_knobs_agree_on_engagement() -> None:
    churn = START + 40 * DAY_MS
    easy = Customer("x", 1, "homebody", True, churn, 40.0)
    assert easy.engagement(churn - 10 * DAY_MS) == pytest.approx(1 - 0.75 * 11 / 21)
    ramped = Customer("y", 1, "homebody", True, churn, 40.0, churn - 5 * DAY_MS, churn_floor=0.6)
    assert ramped.engagement(churn - 6 * DAY_MS) == 1.0
    assert ramped.engagement(churn - 1) == pytest.approx(0.6, abs=1e-6)
    product = ProductChurn("tv", churn - 10 * DAY_MS, churn - 12 * DAY_MS, 0.5)
    staggered = Customer("z", 1, "homebody", True, churn, 40.0, product_churn=(product,))
    assert staggered.engagement(churn - 11 * DAY_MS, "tv") == pytest.approx(0.75)
    customer_ramp = 1 - 0.75 * 10 / 21  # products without a ramp follow the customer's
    assert staggered.engagement(churn - 11 * DAY_MS, "coffee") == pytest.approx(customer_ramp)
    assert staggered.engagement(churn - 11 * DAY_MS) == pytest.approx(customer_ramp)
    silent = Customer("w", 1, "homebody", True, churn, 40.0, churn, churn_floor=1.0)
    assert silent.engagement(churn - 1) == 1.0


def test_streams_decline_on_each_churners_own_ramp() -> None:
    """In the streams: churners with a long, deep warning use their products less in the
    last week than four weeks before; churners without warning do not."""
    spec = FleetSpec(seed=4, devices=200, days=60, start_ms=START, churn_fraction=0.0,
                     faults=FaultSpec.none(),
                     churn=ChurnSpec(monthly_rate=0.3, ramp_days=(3, 42), floor=(0.2, 0.9),
                                     no_warning_share=0.4))  # fmt: skip
    fleet = Fleet.generate(spec)
    weeks: dict[str, collections.Counter[str]] = {"warned": collections.Counter(),
                                                  "silent": collections.Counter()}  # fmt: skip
    for d in fleet.devices:
        name = USES.get(d.product)
        if name is None or len(d.users) != 1:
            continue
        c = fleet.customer(d.users[0])
        stop = c.churns(d.product)
        if stop is None or not fleet.start_ms + 35 * DAY_MS <= stop <= fleet.end_ms:
            continue
        assert c.disengage_ms is not None
        kind = "silent" if c.disengage_ms == c.churn_ms else "warned"
        if kind == "warned" and (c.churn_ms - c.disengage_ms < 20 * DAY_MS or c.churn_floor > 0.6):  # type: ignore[operator]
            continue  # only long, deep warnings must show within a week
        for s in fleet.signals(d.device_id):
            if s.name == name:
                if stop - 7 * DAY_MS <= s.ts < stop:
                    weeks[kind]["last"] += 1
                elif stop - 35 * DAY_MS <= s.ts < stop - 28 * DAY_MS:
                    weeks[kind]["before"] += 1
    assert weeks["warned"]["before"] > 100
    assert weeks["silent"]["before"] > 100
    assert weeks["warned"]["last"] < 0.75 * weeks["warned"]["before"]
    assert weeks["silent"]["last"] > 0.8 * weeks["silent"]["before"]
