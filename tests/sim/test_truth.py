"""Ground truth rules on hand-built streams (docs/architecture.md, "Signals and the twin")."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from firmware_sim import FaultSpec, Fleet, FleetSpec, GroundTruth, SimulationError
from protocol import HLC, SignalIn, TwinState, pseudonymize

KEY = bytes(range(32))
NOW = 1_790_000_000_000
T = NOW - 3_600_000
ANN = "ann.smith.0042@example.com"
LOY = "LOY-00042-123456"


def sig(seq: int, name: str, value: object, ts: int = T, subject: str = ANN) -> SignalIn:
    return SignalIn.model_validate(
        {"seq": seq, "ts": ts, "subject": subject, "name": name, "value": value}
    )


def truth(
    *signals: SignalIn,
    max_signal_age_ms: int = 7 * 86_400_000,
    max_clock_ahead_ms: int = 300_000,
) -> GroundTruth:
    return GroundTruth.from_signals(
        "acme",
        {"dev-1": list(signals)},
        KEY,
        1,
        now_ms=NOW,
        max_signal_age_ms=max_signal_age_ms,
        max_clock_ahead_ms=max_clock_ahead_ms,
    )


def twin(subject: str = ANN) -> str:
    return pseudonymize(KEY, 1, subject)


def ns(ms: int, counter: int = 0) -> int:
    return HLC(ms, counter).to_ns()


def test_gauge_and_state_emit_only_on_change_per_twin_and_field() -> None:
    t = truth(
        sig(1, "thermostat.temperature_c", 21),
        sig(2, "thermostat.temperature_c", 21.0, T + 1),  # same value: no op
        sig(3, "thermostat.temperature_c", 21.5, T + 2),
        sig(4, "thermostat.temperature_c", 21, T + 3),  # back again: an op
        sig(5, "thermostat.temperature_c", 21, T + 4, subject=LOY),  # another twin
        sig(6, "thermostat.mode", "eco", T + 5),
        sig(7, "thermostat.mode", "eco", T + 6),
    )
    a, b = twin(), twin(LOY)
    assert t.expected_points == {
        ("acme", "dev-1", a, ns(T), "thermostat.temperature_c", 21.0),
        ("acme", "dev-1", a, ns(T + 2), "thermostat.temperature_c", 21.5),
        ("acme", "dev-1", a, ns(T + 3), "thermostat.temperature_c", 21.0),
        ("acme", "dev-1", b, ns(T + 4), "thermostat.temperature_c", 21.0),
        ("acme", "dev-1", a, ns(T + 5), "thermostat.mode", "eco"),
    }
    assert all(isinstance(p[5], float) for p in t.expected_points if "temp" in p[4])
    assert t.counts() == {"accepted": 7}
    assert t.twin_values(a) == {"thermostat.temperature_c": 21.0, "thermostat.mode": "eco"}


def test_counters_are_cumulative_int_stays_int_float_sums_in_order() -> None:
    t = truth(
        sig(1, "coffee.brew", 1),
        sig(2, "coffee.brew", 2, T + 1),
        sig(3, "thermostat.energy", 0.1, T + 2),
        sig(4, "thermostat.energy", 0.2, T + 3),
        sig(5, "thermostat.energy", 1, T + 4),  # an int is a valid float value
    )
    points = sorted(t.expected_points, key=lambda p: p[3])
    assert [p[5] for p in points] == [1, 3, 0.1, 0.1 + 0.2, 0.1 + 0.2 + 1.0]
    assert type(points[1][5]) is int
    assert type(points[4][5]) is float
    assert points[3][5] == 0.30000000000000004  # Python float addition, in signal order


def test_counters_merge_over_devices_per_twin() -> None:
    t = GroundTruth.from_signals(
        "acme",
        {
            "coffee-1": [sig(1, "coffee.brew", 2), sig(2, "coffee.brew", 1, T + 5)],
            "coffee-2": [sig(1, "coffee.brew", 4, T + 1)],
        },
        KEY,
        1,
        now_ms=NOW,
    )
    assert t.twin_values(twin()) == {"coffee.brews_total": 7}
    with pytest.raises(SimulationError):
        t.twin_values("1-" + "0" * 32)


def test_duplicates_and_consumed_seqs() -> None:
    t = truth(
        sig(1, "coffee.brew", 1),
        sig(1, "coffee.brew", 1),  # re-send: duplicate, no second op
        sig(2, "coffee.brew", 99, T + 1),  # rejected, but seq 2 is consumed
        sig(2, "coffee.brew", 1, T + 2),  # so this is a duplicate, not a retry
        sig(5, "coffee.brew", 1, T + 3),  # gaps are fine
        sig(4, "coffee.brew", 1, T + 4),  # below the last seq: duplicate
    )
    assert t.outcomes["dev-1"] == [
        (1, "accepted", None),
        (1, "duplicate", None),
        (2, "rejected", "out_of_range"),
        (2, "duplicate", None),
        (5, "accepted", None),
        (4, "duplicate", None),
    ]
    assert sorted(p[5] for p in t.expected_points) == [1, 2]
    assert t.counts() == {
        "accepted": 2,
        "duplicate": 3,
        "rejected": 1,
        "rejected:out_of_range": 1,
    }


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("coffee.teleport", 1, "unknown_signal"),
        ("coffee.brew", "two", "wrong_type"),
        ("coffee.brew", 1.5, "wrong_type"),
        ("coffee.brew", True, "wrong_type"),
        ("thermostat.temperature_c", math.nan, "not_finite"),
        ("thermostat.temperature_c", math.inf, "not_finite"),
        ("thermostat.temperature_c", 71, "out_of_range"),
        ("wearable.steps", -1, "out_of_range"),
        ("thermostat.mode", "turbo", "bad_choice"),
        ("tv.power", 1, "wrong_type"),
        ("coffee.teleport", "x", "unknown_signal"),  # the name is checked first
    ],
)
def test_validation_reasons(name: str, value: object, reason: str) -> None:
    t = truth(sig(1, name, value, ts=0))  # the value is checked before the timestamp
    assert t.outcomes["dev-1"] == [(1, "rejected", reason)]
    assert not t.expected_points
    assert not t.twins


def test_timestamp_window_is_inclusive_and_uses_now() -> None:
    age, ahead = 1_000_000, 5_000
    t = truth(
        sig(1, "tv.volume", 1, NOW - age),
        sig(2, "tv.volume", 2, NOW - age - 1),
        sig(3, "tv.volume", 3, NOW + ahead),
        sig(4, "tv.volume", 4, NOW + ahead + 1),
        sig(5, "tv.volume", 5, 0),
        sig(6, "tv.volume", 6, 4_102_444_800_000),
        max_signal_age_ms=age,
        max_clock_ahead_ms=ahead,
    )
    assert [o[1:] for o in t.outcomes["dev-1"]] == [
        ("accepted", None),
        ("rejected", "timestamp"),
        ("accepted", None),
        ("rejected", "timestamp"),
        ("rejected", "timestamp"),
        ("rejected", "timestamp"),
    ]


def test_hlc_every_accepted_signal_advances_the_clock() -> None:
    t = truth(
        sig(1, "tv.volume", 10, T),
        sig(2, "tv.volume", 10, T),  # no op, but the clock ticks: (T, 1)
        sig(3, "tv.volume", 11, T - 60_000),  # backwards device clock: (T, 2)
        sig(4, "tv.volume", 12, NOW + 10**9),  # rejected: the clock does not move
        sig(5, "tv.volume", 13, T),  # (T, 3)
        sig(6, "tv.volume", 14, T + 1),  # physical time moved on: (T + 1, 0)
    )
    assert sorted(p[3] for p in t.expected_points) == [
        ns(T),
        ns(T, 2),
        ns(T, 3),
        ns(T + 1),
    ]
    assert t.twin_values(twin()) == {"tv.volume": 14}


def test_subjects_are_normalised_before_pseudonymizing() -> None:
    t = truth(
        sig(1, "tv.volume", 10, subject="Ann.Smith.0042@Example.com "),
        sig(2, "tv.volume", 11, T + 1, subject=ANN),
    )
    assert {p[2] for p in t.expected_points} == {twin()}
    assert set(t.subjects) == {"Ann.Smith.0042@Example.com ", ANN}


def test_twin_state_matches_protocol_merge() -> None:
    t = truth(sig(1, "tv.volume", 10), sig(2, "tv.volume", 20, T + 1, subject=LOY))
    for tw, state in t.twins.items():
        fresh = TwinState()
        for _, device, ptwin, ts, fld, value in t.expected_points:
            if ptwin == tw:
                fresh.apply(device, HLC.from_ns(ts).pack(), fld, value)
        assert fresh.values() == state.values()


def test_compute_on_a_fleet_and_round_trip(tmp_path: Path) -> None:
    faults = FaultSpec(glitch_rate=0.05, duplicate_rate=0.02, reboots_per_day=3)
    fleet = Fleet.generate(
        FleetSpec(seed=9, devices=12, start_ms=NOW - 2 * 86_400_000, faults=faults)
    )
    t = GroundTruth.compute(fleet, KEY, 1, now_ms=NOW)
    assert set(t.outcomes) == set(fleet.device_map)
    assert all(len(t.outcomes[d]) == len(fleet.signals(d)) for d in fleet.device_map)
    assert {c.subject for c in fleet.customers} == set(t.subjects)
    assert any(
        math.isnan(v)
        for s in fleet.all_signals().values()
        for v in [x.value for x in s if isinstance(x.value, float)]
    )
    t.write(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "signals.jsonl",
        "points.jsonl",
        "twins.json",
        "summary.json",
    }
    back = GroundTruth.load(tmp_path)
    assert back.brand == t.brand
    assert back.expected_points == t.expected_points
    assert back.outcomes == t.outcomes
    assert back.reboots == {d: r for d, r in t.reboots.items() if r}
    assert {tw: back.twin_values(tw) for tw in back.twins} == {
        tw: t.twin_values(tw) for tw in t.twins
    }
    assert repr(sorted((d, list(s)) for d, s in back.signals.items())) == repr(
        sorted((d, list(s)) for d, s in t.signals.items())
    )
    used = {s.subject for sigs in t.signals.values() for s in sigs}
    assert set(back.subjects) == used


def test_subset_of_devices_and_bad_directory(tmp_path: Path) -> None:
    fleet = Fleet.generate(FleetSpec(seed=9, devices=8, start_ms=NOW - 2 * 86_400_000))
    some = [d.device_id for d in fleet.devices[:3]]
    t = GroundTruth.compute(fleet, KEY, 1, now_ms=NOW, devices=some)
    assert set(t.outcomes) == set(some)
    assert {p[1] for p in t.expected_points} <= set(some)
    with pytest.raises(SimulationError):
        GroundTruth.load(tmp_path / "nothing-here")


def test_unshared_fields_are_accepted_but_never_expected_on_the_hub() -> None:
    t = truth(sig(1, "wearable.heart_rate_bpm", 60), sig(2, "wearable.steps", 10, ts=T + 1))
    assert [o[1] for o in t.outcomes["dev-1"]] == ["accepted", "accepted"]
    # The heart rate still moved the clock: steps got the second stamp.
    assert t.expected_points == {("acme", "dev-1", twin(), ns(T + 1), "wearable.steps_total", 10)}
