"""Anomalies of every size and kind, each labelled: spikes, level shifts, stuck sensors,
out-of-pattern use; small ones are not the huge jumps a threshold catches."""

from __future__ import annotations

import collections
import dataclasses

import pytest

from firmware_sim import (
    ANOMALY_SIZES,
    AnomalyMix,
    FaultSpec,
    Fleet,
    FleetSpec,
    GroundTruth,
)

START = 1_790_000_040_000
HOUR_MS = 3_600_000
NOW = START + 8 * 86_400_000 + HOUR_MS
KEY = bytes(range(32))
VARIED = dataclasses.replace(FaultSpec.none(), anomaly_rate=0.01, anomaly_mix=AnomalyMix.varied())
SPEC = FleetSpec(seed=31, devices=40, days=8, start_ms=START, churn_fraction=0.0, faults=VARIED)
#: the jump a simple detector flags (tests/sim/test_labels.py: it finds every large spike)
DETECT = {
    "thermostat.temperature_c": 5.0,
    "thermostat.setpoint_c": 5.0,
    "wearable.heart_rate_bpm": 60,
    "coffee.water_level_pct": 30.0,
    "tv.volume": 30,
}


@pytest.fixture(scope="module")
def fleets() -> tuple[Fleet, Fleet]:
    """The fleet with anomalies, and the same fleet without (anomalies draw apart)."""
    plain = dataclasses.replace(SPEC, faults=dataclasses.replace(VARIED, anomaly_rate=0.0))
    return Fleet.generate(SPEC), Fleet.generate(plain)


def test_every_kind_and_size_is_injected_and_labelled(fleets: tuple[Fleet, Fleet]) -> None:
    fleet, _ = fleets
    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    truth = GroundTruth.compute(fleet, KEY, 1, now_ms=NOW, max_signal_age_ms=30 * 86_400_000)
    for d in fleet.devices:
        labels = fleet.truth(d.device_id).anomalies
        assert fleet.anomalies(d.device_id) == frozenset(labels)
        outcome = {seq: status for seq, status, _ in truth.outcomes[d.device_id]}
        for seq, label in labels.items():
            seen[(label.kind, label.size)] += 1
            assert outcome[seq] == "accepted"  # valid readings: only their context is wrong
            assert label.signal in ANOMALY_SIZES or label.kind == "out_of_pattern"
    kinds = {k for k, _ in seen}
    assert kinds == {"spike", "level_shift", "stuck", "out_of_pattern"}
    for kind in kinds:
        assert {s for k, s in seen if k == kind} == {"small", "medium", "large"}, kind


def test_the_rest_of_the_stream_is_untouched(fleets: tuple[Fleet, Fleet]) -> None:
    """Every difference from the anomaly-free fleet is a labelled anomaly."""
    fleet, plain = fleets
    for d in fleet.devices:
        labels = fleet.truth(d.device_id).anomalies
        clean = {(s.ts, s.name): s.value for s in plain.signals(d.device_id)}
        for s in fleet.signals(d.device_id):
            if s.seq in labels:
                continue
            assert clean.get((s.ts, s.name), "missing") == s.value, (d.device_id, s)


def _episodes(fleet: Fleet, plain: Fleet, kind: str) -> list[tuple[str, str, float, list[float]]]:
    """(signal, size, magnitude, differences from the genuine readings) per episode."""
    out: dict[tuple[str, int], tuple[str, str, float, list[float]]] = {}
    for d in fleet.devices:
        labels = fleet.truth(d.device_id).anomalies
        clean = {(s.ts, s.name): float(s.value) for s in plain.signals(d.device_id)
                 if s.name in ANOMALY_SIZES}  # fmt: skip
        last: dict[str, float] = {}
        for s in fleet.signals(d.device_id):
            label = labels.get(s.seq)
            if label is None:
                if s.name in ANOMALY_SIZES:
                    last[s.name] = float(s.value)
                continue
            if label.kind != kind:
                continue
            genuine = clean.get((s.ts, s.name), last.get(s.name))  # a spike has no slot
            if genuine is None:
                continue
            entry = out.setdefault(
                (d.device_id, label.episode), (s.name, label.size, label.magnitude, [])
            )
            entry[3].append(float(s.value) - genuine)
    return list(out.values())


def test_spikes_and_level_shifts_are_as_big_as_their_size_class(
    fleets: tuple[Fleet, Fleet],
) -> None:
    fleet, plain = fleets
    for kind in ("spike", "level_shift"):
        episodes = _episodes(fleet, plain, kind)
        assert len(episodes) > 20, kind
        for _signal, _size, magnitude, diffs in episodes:
            assert diffs
            for diff in diffs:  # (rounding to the reading's precision, clipping at a range edge)
                assert abs(diff) <= magnitude + 0.6
            assert max(abs(x) for x in diffs) >= magnitude - 0.6
    by_signal: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for signal, size, magnitude, _ in _episodes(fleet, plain, "spike"):
        by_signal[(signal, size)].append(magnitude)
    for (signal, size), magnitudes in by_signal.items():
        lo, hi = ANOMALY_SIZES[signal][("small", "medium", "large").index(size)]
        assert all(lo <= m <= hi for m in magnitudes), (signal, size)
    # a typical small anomaly is a third of a typical large one, or less
    mid = [(sum(sizes[0]) / 2, sum(sizes[2]) / 2) for sizes in ANOMALY_SIZES.values()]
    assert all(small <= large / 2.5 for small, large in mid)


def test_a_stuck_sensor_repeats_one_value(fleets: tuple[Fleet, Fleet]) -> None:
    fleet, plain = fleets
    stuck = 0
    for d in fleet.devices:
        values: dict[int, set[object]] = collections.defaultdict(set)
        for s in fleet.signals(d.device_id):
            label = fleet.truth(d.device_id).anomalies.get(s.seq)
            if label is not None and label.kind == "stuck":
                values[label.episode].add(s.value)
        for episode in values.values():
            assert len(episode) == 1
            stuck += 1
    assert stuck > 10
    for _signal, _size, magnitude, diffs in _episodes(fleet, plain, "stuck"):
        # the magnitude is how far the truth moved away from the stuck value
        assert max(abs(x) for x in diffs) == pytest.approx(magnitude, abs=0.06)
    for d in fleet.devices:  # ... and the size class follows it
        for label in fleet.truth(d.device_id).anomalies.values():
            if label.kind == "stuck":
                _small, medium, large = ANOMALY_SIZES[label.signal]
                size = ("large" if label.magnitude >= large[0]
                        else "medium" if label.magnitude >= medium[0] else "small")  # fmt: skip
                assert label.size == size


def test_out_of_pattern_use_comes_at_the_users_quietest_hour(fleets: tuple[Fleet, Fleet]) -> None:
    fleet, _ = fleets
    checked = 0
    for d in fleet.devices:
        habits = fleet.habits(d.users[0])
        quiet = min(range(24), key=lambda h: habits.activity[h])
        for s in fleet.signals(d.device_id):
            label = fleet.truth(d.device_id).anomalies.get(s.seq)
            if label is None or label.kind != "out_of_pattern" or s.name != label.signal:
                continue
            hour = (s.ts // HOUR_MS) % 24  # the easy fleet's clock is UTC
            if s.name in ("coffee.brew", "tv.power"):  # a use starts in that hour
                assert hour in (quiet, (quiet + 1) % 24), (d.device_id, s)
            checked += 1
    assert checked > 10


def test_small_anomalies_are_not_what_a_jump_threshold_catches(
    fleets: tuple[Fleet, Fleet],
) -> None:
    """The detector that finds every large spike (tests/sim/test_labels.py) misses most
    small ones: varied anomalies make detection a real problem."""
    fleet, _ = fleets
    caught: dict[str, list[bool]] = collections.defaultdict(list)
    for d in fleet.devices:
        labels = fleet.truth(d.device_id).anomalies
        prev: dict[str, float] = {}
        for s in fleet.signals(d.device_id):
            if s.name not in DETECT:
                continue
            x = float(s.value)
            flag = s.name in prev and abs(x - prev[s.name]) > DETECT[s.name]
            prev[s.name] = x
            label = labels.get(s.seq)
            if label is not None and label.kind == "spike":
                caught[label.size].append(flag)
    recall = {size: sum(flags) / len(flags) for size, flags in caught.items()}
    assert recall["large"] >= 0.9
    assert recall["small"] <= 0.3


def test_out_of_pattern_use_needs_someone_using_the_device() -> None:
    """An out-of-pattern use is a use (a brew at 3 am): none from a customer who has
    churned the product or is away on holiday. Injected regardless before, a coffee
    machine brewed ~0.5 times a day for nobody, and churners never fell silent."""
    spec = dataclasses.replace(
        FleetSpec.realistic(seed=32, devices=60, days=40, start_ms=START),
        churn=dataclasses.replace(FleetSpec.realistic().churn, monthly_rate=0.4),
    )
    fleet = Fleet.generate(spec)
    margin = 3 * HOUR_MS  # a device's clock is up to 2 h off
    kept = after_churn = away = 0
    for d in fleet.devices:
        if d.product not in ("coffee", "tv"):
            continue
        labels = fleet.truth(d.device_id).anomalies
        for s in fleet.signals(d.device_id):
            label = labels.get(s.seq)
            if label is None or label.kind != "out_of_pattern" or s.name != label.signal:
                continue
            kept += 1
            customer = fleet.customer(s.subject)
            churn = customer.churns(d.product)
            after_churn += churn is not None and s.ts > churn + 86_400_000
            away += any(
                e.kind == "holiday" and e.start_ms + margin < s.ts < e.end_ms - margin
                for e in customer.life
            )
    assert kept > 20  # out-of-pattern use is still injected ...
    assert after_churn == 0  # ... never after its user left (their ramp is ~0 in a day)
    assert away == 0  # ... nor while they are away (coffee and TV rest on holiday)
