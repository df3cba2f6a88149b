"""Anomaly baselines: every feature compares a reading with the device's own history.

A spike stands out and the return to normal does not; a level is nobody's anomaly (the
same stream shifted by a constant gives the same features); the local hour's routine
is learnt; a noisy sensor that stops moving stands out, a setting that holds still does
not; state persists and an older layout is refused.
"""

from __future__ import annotations

import random

import pytest

from protocol import ANOMALY_FEATURES, LocalTime, SchemaError, SignalBaseline, is_baselined

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
# A Monday, 00:00 UTC (2026-11-02)
MONDAY = 1_793_577_600_000
Z, JUMP, STEP, HOUR_Z, RUN = (ANOMALY_FEATURES.index(n) for n in ANOMALY_FEATURES)


def _room(b: SignalBaseline, days: int, *, level: float = 21.0, seed: int = 1) -> list[list[float]]:
    """A room read every 10 minutes: ``level`` with 0.2 °C of sensor noise."""
    rnd = random.Random(seed)
    return [
        b.observe(round(level + rnd.gauss(0, 0.2), 1), MONDAY + i * 10 * MIN)
        for i in range(days * 144)
    ]


def test_only_ranged_numeric_gauges_have_baselines() -> None:
    assert is_baselined("thermostat.temperature_c")
    assert not is_baselined("coffee.brew")  # a counter
    assert not is_baselined("tv.genre")
    with pytest.raises(SchemaError):
        SignalBaseline("coffee.brew")


def test_spike_is_far_out_and_the_return_is_not() -> None:
    b = SignalBaseline("thermostat.temperature_c")
    normal = _room(b, 2)
    at = MONDAY + 2 * DAY
    spike = b.observe(33.0, at)
    back = b.observe(21.1, at + 10 * MIN)
    assert max(f[Z] for f in normal[20:]) < 6
    assert spike[Z] > 10
    assert spike[HOUR_Z] > 10
    assert spike[STEP] > 10  # the room usually moves a few tenths between readings
    assert spike[JUMP] > 0.1  # 12 °C of a 110 °C range
    assert back[Z] < 6
    assert abs(back[JUMP]) < 0.02  # measured against the last normal reading, not the spike


def test_a_level_is_nobodys_anomaly() -> None:
    """A home kept at 24 °C reads exactly like one kept at 19 °C, 5 °C lower."""
    warm, cool = (
        SignalBaseline("thermostat.temperature_c"),
        SignalBaseline("thermostat.temperature_c"),
    )
    a = _room(warm, 3, level=24.0)
    b = _room(cool, 3, level=19.0)
    flat = [(x, y) for fa, fb in zip(a, b, strict=True) for x, y in zip(fa, fb, strict=True)]
    assert all(abs(x - y) < 1e-6 for x, y in flat)
    steady = SignalBaseline("thermostat.setpoint_c")
    for i in range(200):  # a setpoint of 24 °C re-reported every hour
        features = steady.observe(24.0, MONDAY + i * HOUR)
    assert features[Z] == features[HOUR_Z] == features[STEP] == 0.0


def test_the_local_hours_routine_is_learnt() -> None:
    """A setback to 17 °C every night at 23:00 local becomes routine for ``hour_z``;
    the same value at noon stays far out."""
    berlin = LocalTime("Europe/Berlin")
    b = SignalBaseline("thermostat.setpoint_c", berlin)
    night: list[list[float]] = []
    for d in range(14):
        for h in range(24):
            value = 17.0 if h in (23, 0, 1, 2, 3, 4, 5) else 21.0
            features = b.observe(value, berlin.utc_ms(MONDAY + d * DAY + h * HOUR))
            if h == 23:
                night.append(features)
    assert night[0][HOUR_Z] == night[0][Z] > 2  # no history of the hour yet: news
    assert night[-1][Z] > 2.5  # against the whole day, the setback still stands out...
    assert night[-1][HOUR_Z] < 0.5  # ...against the hour, it is routine
    noon = b.observe(17.0, berlin.utc_ms(MONDAY + 14 * DAY + 12 * HOUR))
    assert noon[HOUR_Z] > 5
    # the same routine on a UTC clock puts the setback at 22:00: a different hour
    utc = SignalBaseline("thermostat.setpoint_c")
    for d in range(14):
        for h in range(24):
            value = 17.0 if h in (23, 0, 1, 2, 3, 4, 5) else 21.0
            utc.observe(value, berlin.utc_ms(MONDAY + d * DAY + h * HOUR))
    assert set(utc.hours) == set(b.hours) == set(range(24))
    assert utc.hours[22].mean == pytest.approx(17.0, abs=0.5)
    assert b.hours[22].mean == pytest.approx(21.0, abs=0.5)


def test_a_stuck_sensor_stands_out_a_still_setting_does_not() -> None:
    room = SignalBaseline("thermostat.temperature_c")
    _room(room, 2)
    at = MONDAY + 2 * DAY
    stuck = [room.observe(21.3, at + i * 10 * MIN) for i in range(24)]  # 4 hours of 21.3
    assert stuck[0][RUN] < 2
    assert stuck[-1][RUN] > 5
    setting = SignalBaseline("thermostat.setpoint_c")
    runs = []
    for d in range(10):  # 21 °C all day, 18 °C at night: runs of hours are the norm
        for h in range(24):
            runs.append(setting.observe(18.0 if h < 6 else 21.0, MONDAY + d * DAY + h * HOUR)[RUN])
    assert max(runs[-48:]) < 2  # against > 5 for the stuck room above


def test_a_setting_with_long_and_short_holds_is_measured_by_its_longest() -> None:
    """A setpoint held for minutes on weekday evenings and all weekend long: a weekend
    hold is many times the mean hold, but not longer than the usual longest, so
    ``run_vs_usual`` stays low (measured against the mean hold it was > 3 here, and the
    shipped model flagged steady setpoints on clean devices)."""
    b = SignalBaseline("thermostat.setpoint_c")
    weekend: list[float] = []
    at = MONDAY
    for week in range(6):
        for day in range(7):
            for h in range(24):
                if day >= 5:  # the weekend: one value, re-reported every hour
                    value = 20.0
                else:  # weekdays: a change every hour or two in the evening
                    value = 19.0 + (h % 3 if h >= 17 else 0) + (0.5 if h < 6 else 0.0)
                f = b.observe(value, at + (day * 24 + h) * HOUR)
                if day >= 5 and week >= 3:
                    weekend.append(f[RUN])
        at += 7 * DAY
    assert max(weekend) < 2.0
    stuck_room = SignalBaseline("thermostat.temperature_c")
    _room(stuck_room, 2)
    later = MONDAY + 2 * DAY
    stuck = [stuck_room.observe(21.3, later + i * 10 * MIN) for i in range(24)]
    assert stuck[-1][RUN] > 5  # a noisy sensor's longest runs are a few readings


def test_an_hour_of_a_clean_sensor_is_not_overconfident() -> None:
    """A clean sensor's hour looks nearly constant; a reading within the device's
    ordinary spread at that hour stays within a few ``hour_z``."""
    b = SignalBaseline("wearable.heart_rate_bpm")
    for d in range(14):
        for m in range(0, 24 * 60, 5):
            h = m // 60
            value = 55.0 if h < 7 else 70.0 + (h % 4)  # clean: no noise at all
            b.observe(value, MONDAY + d * DAY + m * MIN)
    active = b.observe(80.0, MONDAY + 14 * DAY + 3 * HOUR)  # awake at 3 am: 25 bpm up
    assert active[HOUR_Z] > 3  # still news
    overall = b.overall
    assert overall is not None
    sigma = max(overall.var**0.5, 1.0)
    assert active[HOUR_Z] <= 2 * 25 / sigma + 1e-6  # at most half the spread as a scale


def test_state_round_trips_and_an_older_layout_is_refused() -> None:
    clock = LocalTime("Asia/Tokyo")
    b = SignalBaseline("wearable.heart_rate_bpm", clock)
    for i, v in enumerate((60, 62, 61, 64, 64, 64)):
        b.observe(v, MONDAY + i * 5 * MIN)
    again = SignalBaseline.from_state(b.name, b.to_state(), clock)
    later = MONDAY + HOUR
    assert again.observe(90, later) == b.observe(90, later)
    with pytest.raises(SchemaError):
        SignalBaseline.from_state(b.name, [60.0, 4.0, 60.0])  # an older agent's state
    bad = b.to_state()
    bad["hours"]["24"] = [60.0, 1.0, 3]
    with pytest.raises(SchemaError):
        SignalBaseline.from_state(b.name, bad)
    bad = b.to_state()
    bad["last"][2] = float("nan")
    with pytest.raises(SchemaError):
        SignalBaseline.from_state(b.name, bad)
