"""Behaviour features: exact values on hand-made streams, bounds, persistence, personas."""

from __future__ import annotations

import math
import statistics

import pytest

from firmware_sim import FaultSpec, Fleet, FleetSpec
from protocol import (
    COMMON_FEATURES,
    WINDOW_DAYS,
    Coverage,
    FeatureState,
    LocalTime,
    SchemaError,
    feature_floor,
    feature_names,
)

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
    older = fs.to_state()  # an older agent's snapshot: no usual rate, no uses
    del older["usual"]
    older["days"] = {d: v[:2] for d, v in older["days"].items()}
    with pytest.raises(SchemaError):  # the agent starts that customer afresh
        FeatureState.from_state(older)


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


def _brews(state: FeatureState, days: range, hours: tuple[int, ...]) -> None:
    for d in days:
        for h in hours:
            state.update("coffee.brew", MONDAY + d * DAY + h * HOUR, 1)


def test_recent_use_is_compared_with_the_customers_usual_use() -> None:
    steady, fading = FeatureState("coffee"), FeatureState("coffee")
    _brews(steady, range(47), (7, 19))
    _brews(fading, range(40), (7, 19))
    _brews(fading, range(40, 47), (7,))  # half the usual brews for a week
    now = MONDAY + 46 * DAY + 21 * HOUR
    s, f = _f(steady, now), _f(fading, now)
    # the usual rate is learnt from the days before the last two weeks
    assert s["usual_uses_per_day"] == pytest.approx(2.0)
    assert f["usual_uses_per_day"] == pytest.approx(2.0)
    assert s["usual_days"] == pytest.approx(f["usual_days"])
    assert 20 < s["usual_days"] < 33
    for days in (3, 7, 14):
        assert abs(s[f"uses_vs_usual_{days}d"]) < 0.3
    # 7 brews where 14 were due: about 2 standard deviations below
    assert f["uses_vs_usual_7d"] < -1.5
    assert f["uses_vs_usual_3d"] < f["uses_vs_usual_7d"] / 2 < 0
    # at 21:00: the steady customer brewed at 19:00, the fading one skipped it
    assert s["silence_vs_usual"] < 0.5 < 1.0 < f["silence_vs_usual"]


def test_usual_use_follows_the_customers_week_and_day() -> None:
    """A weekend-only customer's quiet week is no warning; a skipped weekend is."""
    fs = FeatureState("coffee")
    weekends = [w * 7 + d for w in range(4) for d in (5, 6)]  # four weekends
    for d in weekends:
        _brews(fs, range(d, d + 1), (9, 12, 16))
    friday_evening = MONDAY + (4 * 7 + 4) * DAY + 20 * HOUR  # 5 quiet days since Sunday
    f = _f(fs, friday_evening)
    assert f["usual_uses_per_day"] == pytest.approx(6 / 7, rel=0.2)
    assert abs(f["uses_vs_usual_3d"]) < 0.5
    assert f["recency_h"] == pytest.approx(4 * 24 + 28)  # long in hours...
    assert f["silence_vs_usual"] < 1.5  # ...but the customer does not brew on weekdays
    monday = MONDAY + 5 * 7 * DAY + 8 * HOUR  # after a weekend without a brew
    f = _f(fs, monday)
    assert f["silence_vs_usual"] > 4
    assert f["uses_vs_usual_3d"] < -1.5


def test_a_use_is_the_products_unit_of_engagement() -> None:
    tv, wearable = FeatureState("tv"), FeatureState("wearable")
    for d in range(30):
        for h in (18, 21):  # two sessions a day: switched on, watched, switched off
            t = MONDAY + d * DAY + h * HOUR
            tv.update("tv.power", t, True)
            for m in range(1, 12):
                tv.update("tv.watch", t + m * 5 * 60_000, 5.0)
            tv.update("tv.power", t + HOUR, False)
            tv.update("tv.power", t + HOUR + 10 * 60_000, False)  # a standby heartbeat
        for m in range(0, 16 * 60, 5):  # worn from 06:00 to 22:00: a reading every 5 min
            wearable.update("wearable.heart_rate_bpm", MONDAY + d * DAY + 6 * HOUR + m * 60_000, 60)
    now = MONDAY + 30 * DAY
    assert _f(tv, now)["usual_uses_per_day"] == pytest.approx(2.0)
    assert _f(wearable, now)["usual_uses_per_day"] == pytest.approx(16 * 12)
    # a readings-only wearable (not worn since): the silence is long for this customer
    later = _f(wearable, now + 2 * DAY)
    assert later["silence_vs_usual"] > 300
    assert later["uses_vs_usual_3d"] == -10.0  # clipped


def test_no_comparison_without_a_usual_rate_yet() -> None:
    fs = FeatureState("coffee")
    _brews(fs, range(10), (7,))
    f = _f(fs, MONDAY + 10 * DAY)
    assert f["usual_days"] == 0
    assert f["uses_vs_usual_3d"] == f["uses_vs_usual_7d"] == f["uses_vs_usual_14d"] == 0
    assert f["usual_uses_per_day"] == pytest.approx(10 / 11)  # the rate so far stands in


def test_the_usual_rate_survives_the_window_and_restarts() -> None:
    """Days leaving the window are folded into two numbers that persist and decay."""
    fs = FeatureState("coffee")
    _brews(fs, range(120), (7, 8, 19))  # three a day for 120 days
    _brews(fs, range(120, 200), (7,))  # then one a day
    assert len(fs.to_state()["days"]) <= WINDOW_DAYS
    restored = FeatureState.from_state(fs.to_state())
    for state in (fs, restored):
        state.update("coffee.brew", MONDAY + 200 * DAY + 7 * HOUR, 1)
    now = MONDAY + 200 * DAY + 12 * HOUR
    assert restored.vector(now) == fs.vector(now)
    f = _f(fs, now)
    # every day up to 14 days ago, weighted exp(-age / 56 days)
    weights = [math.exp(-(186 - d) / 56) for d in range(187)]
    brews = [3 if d < 120 else 1 for d in range(187)]
    expected = sum(w * b for w, b in zip(weights, brews, strict=True)) / sum(weights)
    assert f["usual_uses_per_day"] == pytest.approx(expected)
    assert 1.2 < expected < 1.8  # 66 days on, the old habit is fading, not forgotten
    assert f["usual_days"] == pytest.approx(sum(weights))


# -- local time ------------------------------------------------------------------------
def test_days_dayparts_and_weekends_are_the_households() -> None:
    """07:00 in Tokyo is 22:00 UTC the day before: a morning brew, on the local day."""
    tokyo = LocalTime("Asia/Tokyo")
    local, utc = FeatureState("coffee", tokyo), FeatureState("coffee")
    for d in range(14):  # two weeks from a Monday, local time
        if d % 7 in (5, 6):  # Saturday and Sunday brews only, at 07:00 local
            ts = tokyo.utc_ms(MONDAY + d * DAY + 7 * HOUR)
            for state in (local, utc):
                state.update("coffee.brew", ts, 1)
    now = tokyo.utc_ms(MONDAY + 14 * DAY + 12 * HOUR)
    f, g = _f(local, now), _f(utc, now)
    assert f["share_morning"] == 1.0
    assert f["share_weekend"] == 1.0
    # The same brews on a UTC clock: evenings, half of them on a Friday.
    assert g["share_evening"] == 1.0
    assert g["share_weekend"] == 0.5


def test_the_same_local_routine_gives_the_same_features_in_any_zone() -> None:
    vectors = []
    for zone in ("America/New_York", "Asia/Kolkata", "+09:30"):
        clock = LocalTime(zone)
        fs = FeatureState("tv", clock)
        for d in range(30):
            for h in (7, 20):
                t = clock.utc_ms(MONDAY + d * DAY + h * HOUR)
                fs.update("tv.power", t, True)
                fs.update("tv.watch", t + 30 * 60_000, 30.0)
                fs.update("tv.power", t + HOUR, False)
        vectors.append(fs.vector(clock.utc_ms(MONDAY + 30 * DAY + 21 * HOUR)))
    assert vectors[0] == pytest.approx(vectors[1])
    assert vectors[0] == pytest.approx(vectors[2])


def test_rhythm_harmonics_place_the_routine_on_the_clock() -> None:
    mornings, evenings, both = (FeatureState("coffee") for _ in range(3))
    _brews(mornings, range(7), (6,))
    _brews(evenings, range(7), (18,))
    _brews(both, range(7), (6, 18))
    now = MONDAY + 7 * DAY
    m, e, b = _f(mornings, now), _f(evenings, now), _f(both, now)
    assert (m["rhythm_cos"], m["rhythm_sin"]) == (pytest.approx(0, abs=1e-9), pytest.approx(1))
    assert e["rhythm_sin"] == pytest.approx(-1)
    # Twice a day, twelve hours apart: no single peak, a strong second harmonic.
    assert b["rhythm_sin"] == pytest.approx(0, abs=1e-9)
    assert b["rhythm_cos2"] == pytest.approx(-1)


# -- coverage: a device that is off expects no use ---------------------------------------
def _coffee_days(
    state: FeatureState, coverage: Coverage, days: range, *, brews: bool = True
) -> None:
    """A machine reporting its tank every 30 minutes; brews at 07:00 and 19:00."""
    for d in days:
        for m in range(0, 24 * 60, 30):
            ts = MONDAY + d * DAY + m * 60_000
            coverage.observe(ts)
            state.update("coffee.water_level_pct", ts, 50.0)
        if brews:
            for h in (7, 19):
                coverage.observe(MONDAY + d * DAY + h * HOUR + 1)
                state.update("coffee.brew", MONDAY + d * DAY + h * HOUR + 1, 1)


def test_an_outage_is_not_a_decline_but_a_silence_while_on_is() -> None:
    """Three days unplugged: no use was expected then. Three days on without a brew: churn."""
    off_cov, idle_cov = Coverage(), Coverage()
    off, idle = FeatureState("coffee", coverage=off_cov), FeatureState("coffee", coverage=idle_cov)
    blind = FeatureState("coffee")  # no coverage: every hour counts (as before)
    _coffee_days(off, off_cov, range(40))
    _coffee_days(idle, idle_cov, range(40))
    _brews(blind, range(40), (7, 19))
    # Days 40-42: the first machine is unplugged; the second is on, and nobody brews.
    _coffee_days(idle, idle_cov, range(40, 43), brews=False)
    back = MONDAY + 43 * DAY + 6 * HOUR  # the first report after the outage
    for state, cov in ((off, off_cov), (idle, idle_cov)):
        cov.observe(back)
        state.update("coffee.water_level_pct", back, 50.0)
    f, g, h = _f(off, back), _f(idle, back), _f(blind, back)
    assert abs(f["uses_vs_usual_3d"]) < 1.0
    assert f["use_ratio_7d"] > 0.9
    assert f["silence_vs_usual"] < 1.0  # the hours it was off expected nothing
    # Per day it was on: three full days and, today, one hour of the seven so far.
    assert f["events_per_day_7d"] == pytest.approx(6 / (3 + 1 / 7))
    assert g["uses_vs_usual_3d"] < -1.5
    assert g["uses_vs_usual_7d"] < -1.5
    assert g["use_ratio_7d"] < 0.7
    assert g["silence_vs_usual"] > 5.0
    # Without coverage the outage looks exactly like the idle customer.
    assert h["uses_vs_usual_3d"] == pytest.approx(g["uses_vs_usual_3d"], abs=0.3)
    assert h["silence_vs_usual"] > 5.0


def test_a_wearable_does_not_discount_silence() -> None:
    """A watch reports only while worn: its silence is its wearer's, not an outage."""
    coverage = Coverage()
    fs = FeatureState("wearable", coverage=coverage)
    for d in range(30):
        for m in range(6 * 60, 22 * 60, 10):
            ts = MONDAY + d * DAY + m * 60_000
            coverage.observe(ts)
            fs.update("wearable.heart_rate_bpm", ts, 60)
    f = _f(fs, MONDAY + 33 * DAY)
    assert f["uses_vs_usual_3d"] == -10.0
    assert f["silence_vs_usual"] > 100


def test_coverage_and_features_round_trip_together() -> None:
    coverage = Coverage(LocalTime("Europe/Berlin"))
    fs = FeatureState("coffee", coverage.clock, coverage)
    _coffee_days(fs, coverage, range(20))
    _coffee_days(fs, coverage, range(22, 30))  # two days off
    again_cov = Coverage.from_state(coverage.to_state(), coverage.clock)
    again = FeatureState.from_state(fs.to_state(), coverage.clock, again_cov)
    now = MONDAY + 30 * DAY
    assert again.vector(now) == fs.vector(now)
    with pytest.raises(SchemaError):
        Coverage.from_state({"first": 1, "masks": {"x": 1}})


def test_a_state_of_an_older_layout_is_refused() -> None:
    """UTC-day buckets of an older agent would be read as local days: start afresh."""
    fs = FeatureState("coffee")
    _brews(fs, range(3), (7,))
    state = fs.to_state()
    del state["v"]
    with pytest.raises(SchemaError):
        FeatureState.from_state(state)


def test_every_feature_has_a_floor() -> None:
    for product in ("coffee", "thermostat", "tv", "wearable"):
        assert all(feature_floor(name) > 0 for name in feature_names(product))
    with pytest.raises(SchemaError):
        feature_floor("nope")
