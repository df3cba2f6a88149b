"""Behaviour features: exact values on hand-made streams, bounds, persistence, personas."""

from __future__ import annotations

import statistics

import pytest

from firmware_sim import FaultSpec, Fleet, FleetSpec
from protocol import COMMON_FEATURES, WINDOW_DAYS, FeatureState, SchemaError, feature_names

DAY = 86_400_000
HOUR = 3_600_000
# A Monday, 00:00 UTC (2026-11-02), so weekday arithmetic in the tests is plain.
MONDAY = 1_793_577_600_000


def _f(state: FeatureState, now_ms: int) -> dict[str, float]:
    return dict(zip(state.names, state.vector(now_ms), strict=True))


def test_schema_is_common_features_then_habits() -> None:
    assert feature_names("coffee")[: len(COMMON_FEATURES)] == COMMON_FEATURES
    assert feature_names("coffee")[len(COMMON_FEATURES) :] == (
        "habit_strength",
        "habit_cups_per_day",
    )
    with pytest.raises(SchemaError):
        feature_names("toaster")


def test_values_on_a_known_stream() -> None:
    fs = FeatureState("coffee")
    # 7 days: a brew at 07:00 every day, strength 4; a brew at 20:00 on the last 2 days.
    for d in range(7):
        fs.update("coffee.brew", MONDAY + d * DAY + 7 * HOUR, 1)
        fs.update("coffee.strength", MONDAY + d * DAY + 7 * HOUR + 1, 4)
    for d in (5, 6):  # Saturday, Sunday
        fs.update("coffee.brew", MONDAY + d * DAY + 20 * HOUR, 2)
    fs.update("coffee.water_level_pct", MONDAY + 3 * DAY, 50.0)  # a reading, not usage
    f = _f(fs, MONDAY + 6 * DAY + 22 * HOUR)
    # 9 brews + the strength setting once (re-reporting the same strength is no action)
    events = 7 + 2 + 1
    assert f["share_morning"] == pytest.approx(8 / events)
    assert f["share_evening"] == pytest.approx(2 / events)
    assert f["share_night"] == f["share_afternoon"] == 0
    assert f["share_weekend"] == pytest.approx(4 / events)
    assert f["events_per_day_7d"] == pytest.approx(events / 7)
    assert f["events_per_day_28d"] == pytest.approx(events / 7)  # seen for 7 days only
    assert f["trend_7_vs_21"] == pytest.approx(1.0)  # no history before the week: neutral
    assert f["active_days_28d"] == pytest.approx(1.0)
    assert f["recency_h"] == pytest.approx(2.0)
    assert f["habit_strength"] == pytest.approx(4.0)
    assert f["habit_cups_per_day"] == pytest.approx((7 + 4) / 7)


def test_decline_shows_in_trend_and_recency() -> None:
    fs = FeatureState("tv")
    for d in range(28):
        for h in (20, 21) if d < 21 else ():
            fs.update("tv.watch", MONDAY + d * DAY + h * HOUR, 30.0)
    f = _f(fs, MONDAY + 28 * DAY - 1)
    assert f["events_per_day_7d"] == 0
    assert f["trend_7_vs_21"] == 0
    assert f["trend_14_vs_14"] == pytest.approx((7 * 2 / 14) / 2)
    assert f["recency_h"] == pytest.approx(7 * 24 + 3, abs=0.01)
    assert f["active_days_28d"] == pytest.approx(21 / 28)


def test_memory_is_bounded_to_the_window() -> None:
    fs = FeatureState("wearable")
    for d in range(200):
        fs.update("wearable.steps", MONDAY + d * DAY + 9 * HOUR, 1000)
    assert len(fs.to_state()["days"]) == WINDOW_DAYS
    f = _f(fs, MONDAY + 199 * DAY + 10 * HOUR)
    assert f["habit_steps_per_day"] == pytest.approx(1000)
    fs.update("wearable.steps", MONDAY, 5)  # far too old: ignored
    assert len(fs.to_state()["days"]) == WINDOW_DAYS


def test_state_round_trips_and_rejects_garbage() -> None:
    fs = FeatureState("thermostat")
    for d in range(10):
        fs.update("thermostat.setpoint_c", MONDAY + d * DAY + 18 * HOUR, 21.5)
        fs.update("thermostat.energy", MONDAY + d * DAY + 19 * HOUR, 3.0)
    again = FeatureState.from_state(fs.to_state())
    now = MONDAY + 10 * DAY
    assert again.vector(now) == fs.vector(now)
    with pytest.raises(SchemaError):
        FeatureState.from_state({"product": "thermostat", "days": {"x": 1}})


def test_personas_are_told_apart_by_their_features() -> None:
    fleet = Fleet.generate(
        FleetSpec(seed=5, devices=80, days=14, churn_fraction=0.0, faults=FaultSpec.none())
    )
    morning: dict[str, list[float]] = {}
    for dev in fleet.devices:
        if dev.product != "coffee":
            continue
        states: dict[str, FeatureState] = {}
        for s in fleet.signals(dev.device_id):
            states.setdefault(s.subject, FeatureState("coffee")).update(s.name, s.ts, s.value)
        for subject, fs in states.items():
            persona = fleet.customer(subject).persona
            f = _f(fs, fleet.end_ms)
            morning.setdefault(persona, []).append(f["share_morning"])
    assert statistics.mean(morning["early_bird"]) > statistics.mean(morning["night_owl"]) + 0.1
