"""Ground truth for models: churn with a disengagement precursor, and injected anomalies."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

from firmware_sim import (
    CHURN_PRECURSOR_MS,
    DAY_MS,
    Customer,
    FaultSpec,
    Fleet,
    FleetSpec,
    GroundTruth,
    SimulationError,
)
from protocol import CATALOG, SignalIn, check_signal_value, signal_spec

START = 1_790_000_040_000  # a fixed minute, so fleets are comparable across runs
NOW = START + 3 * DAY_MS + 3 * 3_600_000  # after the 3-day fleets, beyond any clock skew
KEY = bytes(range(32))
YEAR_2100_MS = 4_102_444_800_000
USAGE = {"coffee.brew", "tv.watch", "wearable.steps"}
#: usage that is a change of a re-reported setting
CHANGES = {"thermostat.setpoint_c"}
GAUGES = {n for n, s in CATALOG.items() if s.kind == "gauge"}
#: the smallest jump of an injected anomaly from the recent genuine value
MIN_JUMP = {
    "thermostat.temperature_c": 7.9,  # 8 °C, rounded to 0.1
    "thermostat.setpoint_c": 7.9,
    "wearable.heart_rate_bpm": 70,
    "coffee.water_level_pct": 39.9,
    "tv.volume": 40,
}
#: a jump this large is flagged by the test detector
DETECT = {
    "thermostat.temperature_c": 5.0,
    "thermostat.setpoint_c": 5.0,
    "wearable.heart_rate_bpm": 60,
    "coffee.water_level_pct": 30.0,
    "tv.volume": 30,
}
ANOMALOUS = FaultSpec(anomaly_rate=0.02)


def _fleet(**kw: object) -> Fleet:
    spec = {"seed": 3, "devices": 20, "days": 3, "start_ms": START, **kw}
    return Fleet.generate(FleetSpec(**spec))  # type: ignore[arg-type]


def _unique(signals: list[SignalIn]) -> list[SignalIn]:
    """The stream without duplicate sends (each seq once, first send)."""
    top = 0
    out = []
    for s in signals:
        if s.seq > top:
            top = s.seq
            out.append(s)
    return out


def _valid(s: SignalIn) -> bool:
    try:
        check_signal_value(signal_spec(s.name), s.value)
    except Exception:
        return False
    return s.ts not in (0, YEAR_2100_MS)


# -- anomalies ---------------------------------------------------------------------------
def test_anomaly_rate_is_validated_and_off_by_default() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(SimulationError):
            FaultSpec(anomaly_rate=bad)
    assert FaultSpec().anomaly_rate == 0.0
    assert FaultSpec.none().anomaly_rate == 0.0
    for faults in (FaultSpec(), FaultSpec.none()):
        fleet = _fleet(faults=faults, devices=10)
        assert all(fleet.anomalies(d.device_id) == frozenset() for d in fleet.devices)
    with pytest.raises(SimulationError):
        fleet.anomalies("no-such-device")


def test_anomalies_are_deterministic() -> None:
    a, b, c = _fleet(faults=ANOMALOUS), _fleet(faults=ANOMALOUS), _fleet(faults=ANOMALOUS, seed=4)
    sets_a = {d.device_id: a.anomalies(d.device_id) for d in a.devices}
    assert sets_a == {d.device_id: b.anomalies(d.device_id) for d in b.devices}
    assert repr(a.all_signals()) == repr(b.all_signals())
    assert sets_a != {d.device_id: c.anomalies(d.device_id) for d in c.devices}
    first = a.devices[0].device_id
    assert a.anomalies(first) is a.anomalies(first)


def test_anomaly_rate_is_roughly_as_requested() -> None:
    fleet = _fleet(faults=ANOMALOUS)
    injected = genuine = 0
    per_name = Counter[str]()
    for d in fleet.devices:
        seqs = fleet.anomalies(d.device_id)
        for s in _unique(fleet.signals(d.device_id)):
            if s.seq in seqs:
                injected += 1
                per_name[s.name] += 1
            elif s.name in GAUGES and _valid(s):
                genuine += 1
        assert seqs <= {s.seq for s in fleet.signals(d.device_id)}  # all in the stream
    assert genuine > 5_000
    assert 0.015 * genuine < injected < 0.025 * genuine
    assert set(per_name) <= GAUGES
    assert len(per_name) >= 4  # volume readings are rare: it may have none here


def test_anomalies_are_valid_but_far_from_the_recent_value() -> None:
    fleet = _fleet(faults=ANOMALOUS, devices=40)
    seen = 0
    for d in fleet.devices:
        seqs = fleet.anomalies(d.device_id)
        recent: dict[str, float] = {}  # the last genuine reading of each gauge
        for s in _unique(fleet.signals(d.device_id)):
            if s.seq not in seqs:
                if s.name in GAUGES and _valid(s):
                    recent[s.name] = float(s.value)
                continue
            seen += 1
            spec = CATALOG[s.name]
            assert spec.kind == "gauge"
            assert check_signal_value(spec, s.value) == s.value  # in range, right type
            assert type(s.value) is (float if spec.type == "float" else int)
            assert fleet.start_ms <= s.ts - d.skew_ms < fleet.end_ms
            assert s.subject in d.users
            assert abs(float(s.value) - recent[s.name]) >= MIN_JUMP[s.name]
    assert seen > 100


def test_anomalies_are_accepted_and_leave_the_rest_of_the_stream_alone() -> None:
    plain = _fleet(faults=FaultSpec(duplicate_rate=0.0))
    spiked = _fleet(faults=FaultSpec(duplicate_rate=0.0, anomaly_rate=0.05))
    truth = GroundTruth.compute(spiked, KEY, 1, now_ms=NOW)
    for d in spiked.devices:
        seqs = spiked.anomalies(d.device_id)
        outcomes = {seq: status for seq, status, _ in truth.outcomes[d.device_id]}
        assert all(outcomes[seq] == "accepted" for seq in seqs)

        def body(signals: list[SignalIn], skip: frozenset[int]) -> list[object]:
            return [(s.ts, s.name, repr(s.value), s.subject) for s in signals if s.seq not in skip]

        rest = body(spiked.signals(d.device_id), seqs)
        assert rest == body(plain.signals(d.device_id), frozenset())
        assert len(spiked.reboots(d.device_id)) == len(plain.reboots(d.device_id))
    assert sum(bool(spiked.anomalies(d.device_id)) for d in spiked.devices) > 15
    plain_counts = GroundTruth.compute(plain, KEY, 1, now_ms=NOW).counts()
    injected = sum(len(spiked.anomalies(d.device_id)) for d in spiked.devices)
    assert truth.counts()["accepted"] == plain_counts["accepted"] + injected
    assert truth.counts()["rejected"] == plain_counts["rejected"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_simple_deviation_detector_finds_them(seed: int) -> None:
    """Flag a reading far from both the previous reading and the last unflagged one."""
    fleet = _fleet(seed=seed, faults=ANOMALOUS)
    tp = fp = fn = 0
    for d in fleet.devices:
        seqs = fleet.anomalies(d.device_id)
        prev: dict[str, float] = {}
        normal: dict[str, float] = {}
        for s in _unique(fleet.signals(d.device_id)):
            if s.name not in GAUGES or not _valid(s):
                continue
            x, limit = float(s.value), DETECT[s.name]
            flag = s.name in prev and abs(x - prev[s.name]) > limit
            flag = flag and abs(x - normal[s.name]) > limit
            prev[s.name] = x
            if not flag:
                normal[s.name] = x
            tp += flag and s.seq in seqs
            fp += flag and s.seq not in seqs
            fn += not flag and s.seq in seqs
    assert tp / (tp + fp) >= 0.9
    assert tp / (tp + fn) >= 0.9


# -- churn -------------------------------------------------------------------------------
def test_churn_dates_and_precursor_labels() -> None:
    a, b = _fleet(churn_fraction=0.5), _fleet(churn_fraction=0.5)
    assert a.customers == b.customers
    churners = [c for c in a.customers if c.churner]
    assert churners
    assert any(not c.churner for c in a.customers)
    for c in a.customers:
        if not c.churner:
            assert c.churn_ms is c.disengage_ms is c.churn_day is None
            assert c.engagement(START + 5 * DAY_MS) == 1.0
            continue
        assert c.churn_ms is not None
        assert c.churn_day is not None
        assert 0.3 * 3 <= c.churn_day <= 1.5 * 3
        assert c.churn_ms == START + int(c.churn_day * DAY_MS)
        assert c.disengage_ms == c.churn_ms - CHURN_PRECURSOR_MS == c.churn_ms - 21 * DAY_MS
    described = a.describe()["customers"]
    assert [d["disengage_ms"] for d in described] == [c.disengage_ms for c in a.customers]


def test_engagement_declines_for_21_days_then_drops_to_zero() -> None:
    churn = START + 30 * DAY_MS
    c = Customer("x", 1, "homebody", True, churn, 30.0)
    assert c.disengage_ms == churn - 21 * DAY_MS
    assert c.engagement(churn - 22 * DAY_MS) == 1.0
    assert c.engagement(churn - 21 * DAY_MS) == 1.0
    assert c.engagement(churn - 10 * DAY_MS - DAY_MS // 2) == pytest.approx(0.625)
    assert c.engagement(churn) == pytest.approx(0.25)
    assert c.engagement(churn + DAY_MS) < 0.02
    assert c.engagement(churn + 3 * DAY_MS) < 1e-4
    curve = [c.engagement(churn - 25 * DAY_MS + h * 3_600_000) for h in range(30 * 24)]
    assert all(x >= y for x, y in itertools.pairwise(curve))  # never recovers
    assert max(abs(x - y) for x, y in itertools.pairwise(curve)) < 0.1  # smooth
    assert Customer("y", 1, "homebody", False, None).engagement(churn) == 1.0
    with pytest.raises(SimulationError):
        Customer("z", 1, "homebody", False, None, None, churn)
    with pytest.raises(SimulationError):
        Customer("z", 1, "homebody", True, churn, 30.0, churn + 1)


def _usage(
    fleet: Fleet, subjects: set[str] | None = None, product: str | None = None
) -> dict[str, list[int]]:
    """Subject -> timestamps (true device time) of the usage signals attributed to them."""
    wanted = {c.subject for c in fleet.customers} if subjects is None else subjects
    out: dict[str, list[int]] = {s: [] for s in wanted}
    for d in fleet.devices:
        if not wanted & set(d.users) or product not in (None, d.product):
            continue
        last: dict[str, object] = {}
        for s in _unique(fleet.signals(d.device_id)):
            if not _valid(s):
                continue
            if s.name in CHANGES:  # a setting re-reported unchanged is nobody's action
                if last.get(s.name) == s.value:
                    continue
                last[s.name] = s.value
            elif s.name not in USAGE:
                continue
            if s.subject in wanted:
                out[s.subject].append(s.ts - d.skew_ms)
    return out


def test_churners_use_their_devices_less_and_less_then_stop() -> None:
    fleet = _fleet(seed=11, devices=60, days=40, churn_fraction=1.0, faults=FaultSpec.none())
    whole_story = {  # from a week before the decline to a few days after churning
        c.subject
        for c in fleet.customers
        if c.disengage_ms is not None
        and c.churn_ms is not None
        and c.disengage_ms - 7 * DAY_MS >= fleet.start_ms
        and c.churn_ms + 3 * DAY_MS <= fleet.end_ms
    }
    assert len(whole_story) >= 10
    weeks = Counter[int]()  # week relative to churn (-4: before the decline) -> usage
    after = 0
    for subject, stamps in _usage(fleet, whole_story).items():
        churn = fleet.customer(subject).churn_ms
        assert churn is not None
        for ts in stamps:
            if ts >= churn + DAY_MS:
                after += 1
            elif ts >= churn - 28 * DAY_MS:
                weeks[math.floor((ts - churn) / (7 * DAY_MS))] += 1
    assert set(weeks) <= {-4, -3, -2, -1, 0}
    assert weeks[-4] > weeks[-3] > weeks[-2] > weeks[-1]  # declining week after week
    assert weeks[-1] < 0.6 * weeks[-4]
    assert after <= 0.01 * weeks[-4]  # ~0 a day after churning


def test_every_product_shows_the_decline() -> None:
    """Each product's usage declines before churn (thermostat adjustments included).

    A skipped heating change used to be retried 10 minutes later, so a churning
    thermostat customer's adjustments did not decline at all.
    """
    fleet = _fleet(seed=12, devices=80, days=40, churn_fraction=1.0, faults=FaultSpec.none())
    declining = {
        c.subject
        for c in fleet.customers
        if c.disengage_ms is not None
        and c.disengage_ms - 7 * DAY_MS >= fleet.start_ms
        and c.disengage_ms + 21 * DAY_MS <= fleet.end_ms
    }
    for product in ("coffee", "thermostat", "tv", "wearable"):
        before = during = 0
        for subject, stamps in _usage(fleet, declining, product).items():
            start = fleet.customer(subject).disengage_ms
            assert start is not None
            before += sum(1 for t in stamps if start - 7 * DAY_MS <= t < start)
            # the last week before churning: engagement from 0.5 down to 0.25
            during += sum(1 for t in stamps if start + 14 * DAY_MS <= t < start + 21 * DAY_MS)
        assert before > 20, product
        assert during < 0.6 * before, product


def test_non_churners_are_unaffected() -> None:
    spec = {"seed": 11, "devices": 30, "days": 7}
    loyal = _fleet(**spec, churn_fraction=0.0)
    mixed = _fleet(**spec, churn_fraction=0.4)
    # churn changes who churns, nothing else about the customers and devices
    strip = [(c.subject, c.household, c.persona) for c in loyal.customers]
    assert strip == [(c.subject, c.household, c.persona) for c in mixed.customers]
    assert loyal.devices == mixed.devices
    same = 0
    for d in mixed.devices:  # a device nobody churns on gives the very same stream
        if not any(mixed.customer(u).churner for u in d.users):
            assert repr(mixed.signals(d.device_id)) == repr(loyal.signals(d.device_id))
            same += 1
    assert same > 5
    before, now = _usage(loyal), _usage(mixed)
    stay = [c.subject for c in mixed.customers if not c.churner]
    gone = [c.subject for c in mixed.customers if c.churner]
    assert len(stay) > 10
    assert len(gone) >= 5
    # on shared devices too: the loyal ones' usage is statistically the same
    assert sum(len(now[s]) for s in stay) == pytest.approx(
        sum(len(before[s]) for s in stay), rel=0.05
    )
    assert sum(len(now[s]) for s in gone) < 0.9 * sum(len(before[s]) for s in gone)
