"""The fleet model: deterministic, covers products and personas, injects faults as asked."""

from __future__ import annotations

import gc
import time
from collections import Counter

import pytest

from firmware_sim import (
    DAY_MS,
    PERSONAS,
    FaultSpec,
    Fleet,
    FleetSpec,
    GroundTruth,
    SimulationError,
)
from protocol import CATALOG, PRODUCTS, SignalIn, TwinSyncError, check_device

START = 1_790_000_040_000  # a fixed minute, so fleets are comparable across runs
NOW = START + 2 * DAY_MS
KEY = bytes(range(32))
YEAR_2100_MS = 4_102_444_800_000


def _fleet(**kw: object) -> Fleet:
    return Fleet.generate(FleetSpec(**{"seed": 3, "devices": 40, "start_ms": START, **kw}))  # type: ignore[arg-type]


def _dump(fleet: Fleet) -> list[tuple[str, list[dict[str, object]]]]:
    return [(d, [s.model_dump() for s in sigs]) for d, sigs in fleet.all_signals().items()]


def test_same_seed_same_fleet_different_seed_different() -> None:
    a, b, c = _fleet(), _fleet(), _fleet(seed=4)
    assert a.customers == b.customers
    assert a.devices == b.devices
    assert repr(_dump(a)) == repr(_dump(b))  # repr: NaN glitches compare equal too
    assert {d: a.reboots(d) for d in a.device_map} == {d: b.reboots(d) for d in b.device_map}
    assert a.customers != c.customers
    assert repr(_dump(a)) != repr(_dump(c))


def test_signals_are_cached_and_lazy() -> None:
    fleet = _fleet()
    first = fleet.devices[0].device_id
    assert fleet.signals(first) is fleet.signals(first)
    with pytest.raises(SimulationError):
        fleet.signals("no-such-device")


def test_generates_100_device_days_at_scale() -> None:
    """Every product, a realistic number of signals. (Speed is measured, not asserted:
    docs/simulation.md has the figures.)"""
    fleet = Fleet.generate(FleetSpec(seed=1, devices=100, days=1.0, start_ms=START))
    total = sum(len(s) for s in fleet.all_signals().values())
    assert 20_000 < total < 150_000
    per_product = Counter[str]()
    for d in fleet.devices:
        per_product[d.product] += len(fleet.signals(d.device_id))
    assert set(per_product) == set(PRODUCTS)


def test_generation_leaves_the_garbage_collector_as_it_found_it() -> None:
    """Streams are built with the cyclic collector paused (for speed): it is on again
    afterwards, and a caller who had turned it off finds it still off."""
    fleet = _fleet(devices=3, days=0.5)
    first, second, *_ = (d.device_id for d in fleet.devices)
    assert gc.isenabled()
    fleet.signals(first)
    assert gc.isenabled()
    gc.disable()
    try:
        fleet.signals(second)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_products_personas_households_and_ids() -> None:
    fleet = Fleet.generate(FleetSpec(seed=5, devices=100, start_ms=START))
    assert len(fleet.devices) == 100
    assert {d.product for d in fleet.devices} == set(PRODUCTS)
    assert {c.persona for c in fleet.customers} == set(PERSONAS)
    assert len({d.household for d in fleet.devices}) > 20
    assert any(len(d.users) > 1 for d in fleet.devices)  # shared devices exist
    subjects = {c.subject for c in fleet.customers}
    assert len(subjects) == len(fleet.customers)
    assert any(s.startswith("LOY-") for s in subjects)
    assert any("@" in s for s in subjects)
    for d in fleet.devices:
        assert check_device(d.device_id) == d.device_id
        assert set(d.users) <= subjects
        assert d.product != "wearable" or len(d.users) == 1
        household = {c.subject for c in fleet.customers if c.household == d.household}
        assert set(d.users) <= household
        for s in fleet.signals(d.device_id):  # every signal is the product's (or a glitch)
            assert s.name.removesuffix("_v2") in PRODUCTS[d.product]
            assert s.subject in d.users


def test_churners_are_labelled_and_use_their_devices_less() -> None:
    loyal = Fleet.generate(FleetSpec(seed=2, devices=120, days=2, start_ms=START, churn_fraction=0))
    gone = Fleet.generate(FleetSpec(seed=2, devices=120, days=2, start_ms=START, churn_fraction=1))
    assert not any(c.churner for c in loyal.customers)
    assert all(c.churner for c in gone.customers)
    for c in gone.customers:
        assert c.churn_ms is not None
        assert c.churn_day is not None
        assert c.churn_ms == START + int(c.churn_day * DAY_MS)

    def usage(fleet: Fleet) -> int:
        names = {"coffee.brew", "tv.watch", "wearable.steps"}
        return sum(1 for sigs in fleet.all_signals().values() for s in sigs if s.name in names)

    assert usage(gone) < 0.9 * usage(loyal)  # churn times spread past the window end


def test_streams_are_ordered_with_increasing_seq() -> None:
    fleet = _fleet(devices=30, faults=FaultSpec(duplicate_rate=0.05))
    dups = 0
    for d in fleet.devices:
        sigs = fleet.signals(d.device_id)
        top = 0
        seen: dict[int, SignalIn] = {}
        for s in sigs:
            if s.seq <= top:  # a duplicate send repeats an earlier signal exactly
                assert seen[s.seq] == s
                dups += 1
            else:
                assert s.seq == top + 1  # no gaps
                top = s.seq
                seen[s.seq] = s
        genuine = [s.ts - d.skew_ms for s in seen.values() if s.ts not in (0, YEAR_2100_MS)]
        assert all(START <= t < fleet.end_ms for t in genuine)
        assert genuine == sorted(genuine)
        assert all(0 < i < len(sigs) for i in fleet.reboots(d.device_id))
    assert dups > 0


def test_no_faults_means_everything_is_accepted() -> None:
    fleet = _fleet(faults=FaultSpec.none())
    truth = GroundTruth.compute(fleet, KEY, 1, now_ms=NOW)
    assert set(truth.counts()) == {"accepted"}
    assert all(d.skew_ms == 0 for d in fleet.devices)
    assert all(not fleet.reboots(d.device_id) for d in fleet.devices)


def test_fault_rates_are_roughly_as_requested() -> None:
    faults = FaultSpec(
        glitch_rate=0.04,
        absurd_ts_rate=0.01,
        duplicate_rate=0.02,
        skew_fraction=0.3,
        max_skew_ms=3_600_000,
        reboots_per_day=2.0,
    )
    fleet = Fleet.generate(FleetSpec(seed=8, devices=150, start_ms=START, faults=faults))
    truth = GroundTruth.compute(fleet, KEY, 1, now_ms=NOW)
    counts = truth.counts()
    genuine = counts["accepted"]  # skew stays inside the window: every genuine one passes
    value_faults = counts["rejected"] - counts["rejected:timestamp"]
    assert value_faults == pytest.approx(0.04 * genuine, rel=0.15)
    assert counts["rejected:timestamp"] == pytest.approx(0.01 * genuine, rel=0.25)
    assert counts["duplicate"] == pytest.approx(0.02 * genuine, rel=0.15)
    for reason in ("wrong_type", "not_finite", "out_of_range", "unknown_signal"):
        assert counts[f"rejected:{reason}"] > 0
    skewed = [d.skew_ms for d in fleet.devices if d.skew_ms]
    assert len(skewed) == pytest.approx(0.3 * 150, rel=0.35)
    assert all(60_000 <= abs(s) <= 3_600_000 for s in skewed)
    assert {s > 0 for s in skewed} == {True, False}
    reboots = sum(len(fleet.reboots(d.device_id)) for d in fleet.devices)
    assert reboots == pytest.approx(2.0 * 150, rel=0.25)


def test_signal_values_are_valid_for_the_catalog_without_faults() -> None:
    fleet = _fleet(faults=FaultSpec.none(), devices=60)
    names = {s.name for sigs in fleet.all_signals().values() for s in sigs}
    assert names == set(CATALOG)  # every catalog signal is exercised


@pytest.mark.parametrize(
    "spec",
    [
        FleetSpec(devices=0),
        FleetSpec(days=0),
        FleetSpec(brand="Not A Brand"),
        FleetSpec(churn_fraction=2),
    ],
)
def test_bad_specs_are_refused(spec: FleetSpec) -> None:
    with pytest.raises(TwinSyncError):  # SimulationError, or IdentifierError for the brand
        Fleet.generate(spec)


def test_bad_fault_specs_are_refused() -> None:
    with pytest.raises(SimulationError):
        FaultSpec(glitch_rate=1.5)
    with pytest.raises(SimulationError):
        FaultSpec(max_skew_ms=-1)


def test_default_start_is_two_days_ago_on_a_minute() -> None:
    fleet = Fleet.generate(FleetSpec(devices=2))
    now = time.time_ns() // 1_000_000
    assert fleet.start_ms % 60_000 == 0
    assert now - 2 * DAY_MS - 60_000 <= fleet.start_ms <= now - 2 * DAY_MS + 60_000
    assert fleet.end_ms == fleet.start_ms + DAY_MS


def test_describe_is_json_with_labels() -> None:
    import json

    fleet = _fleet(devices=10)
    data = json.loads(json.dumps(fleet.describe()))
    assert data["spec"]["seed"] == 3
    assert data["spec"]["start_ms"] == START
    assert {c["persona"] for c in data["customers"]} <= set(PERSONAS)
    assert [d["device_id"] for d in data["devices"]] == [d.device_id for d in fleet.devices]
