"""Life beyond churn: seasons (heating, cooling, daylight), holidays, illness, lasting
habit changes, and genuine large events labelled as such (not anomalies)."""

from __future__ import annotations

import collections
import statistics

import pytest

from firmware_sim import (
    FaultSpec,
    Fleet,
    FleetSpec,
    Household,
    LifeSpec,
    PopulationSpec,
)

JANUARY = 1_767_225_600_000  # 2026-01-01 00:00 UTC
JULY = 1_782_864_000_000  # 2026-07-01 00:00 UTC
DAY_MS = 86_400_000
USES = {"coffee": "coffee.brew", "tv": "tv.watch"}


def _fleet(start: int, zones: tuple[str, ...], **life: object) -> Fleet:
    return Fleet.generate(
        FleetSpec(
            seed=14, devices=60, days=7, start_ms=start, churn_fraction=0.0,
            faults=FaultSpec.none(), population=PopulationSpec(timezones=zones),
            life=LifeSpec(**life),  # type: ignore[arg-type]
        )
    )  # fmt: skip


def _energy_per_day(fleet: Fleet) -> float:
    days = fleet.spec.days
    total = count = 0.0
    for d in fleet.devices:
        if d.product == "thermostat":
            count += 1
            total += sum(float(s.value) for s in fleet.signals(d.device_id)
                         if s.name == "thermostat.energy")  # fmt: skip
    return total / count / days


def test_heating_follows_the_season_of_the_hemisphere() -> None:
    north = ("Europe/Berlin",)
    south = ("Australia/Sydney",)
    berlin_winter = _energy_per_day(_fleet(JANUARY, north, seasons=True))
    berlin_summer = _energy_per_day(_fleet(JULY, north, seasons=True))
    sydney_summer = _energy_per_day(_fleet(JANUARY, south, seasons=True))
    sydney_winter = _energy_per_day(_fleet(JULY, south, seasons=True))
    assert berlin_winter > 4 * berlin_summer
    assert sydney_winter > 2 * sydney_summer
    assert 5 < berlin_winter < 60  # kWh a day: a heat pump in a cold month
    # without seasons the heating is the same all year (the easy fleet's)
    flat = _energy_per_day(_fleet(JANUARY, north)), _energy_per_day(_fleet(JULY, north))
    assert flat[0] == pytest.approx(flat[1], rel=0.1)


def test_homes_with_air_conditioning_cool_in_summer() -> None:
    fleet = _fleet(JULY, ("America/Phoenix",), seasons=True)
    modes: dict[bool, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for d in fleet.devices:
        if d.product == "thermostat":
            home = fleet.household(d.device_id)
            modes[home.cooling].update(str(s.value) for s in fleet.signals(d.device_id)
                                       if s.name == "thermostat.mode")  # fmt: skip
    assert modes[True]["cool"] > 0.8 * sum(modes[True].values())
    assert "cool" not in modes[False]
    assert modes[False]["off"] > 0.8 * sum(modes[False].values())
    assert (
        Household(1, "Europe/Helsinki").climate.daylight_h(JULY)
        > 18
        > 6.5
        > Household(1, "Europe/Helsinki").climate.daylight_h(JANUARY)
    )


def _use_by_day(fleet: Fleet) -> dict[tuple[str, str], collections.Counter[int]]:
    """(subject, product) -> day index -> uses (coffee brews, TV watch slices)."""
    out: dict[tuple[str, str], collections.Counter[int]] = collections.defaultdict(
        collections.Counter
    )
    for d in fleet.devices:
        name = USES.get(d.product)
        for s in fleet.signals(d.device_id):
            if s.name == name:
                out[(s.subject, d.product)][(s.ts - fleet.start_ms) // DAY_MS] += 1
    return out


def test_holidays_silence_the_home() -> None:
    fleet = Fleet.generate(FleetSpec(seed=3, devices=50, days=40, start_ms=JANUARY,
                                     churn_fraction=0.0, faults=FaultSpec.none(),
                                     life=LifeSpec(holidays_per_year=6.0)))  # fmt: skip
    away = at_home = 0
    holidays = 0
    for d in fleet.devices:
        if d.product not in USES:
            continue
        for c in map(fleet.customer, d.users):
            for e in c.life:
                if e.kind != "holiday" or e.end_ms is None:
                    continue
                holidays += 1
                for s in fleet.signals(d.device_id):
                    if s.name == USES[d.product] and s.subject == c.subject:
                        # (a TV session started before leaving may run a while)
                        if e.start_ms + 4 * 3_600_000 <= s.ts < e.end_ms:
                            away += 1
                        else:
                            at_home += 1
    assert holidays > 20
    assert at_home > 1000
    assert away == 0


def test_illness_changes_use_and_habit_changes_last() -> None:
    """Ill customers watch more TV; a lasting change to 'less' keeps use down after it."""
    fleet = Fleet.generate(FleetSpec(seed=5, devices=60, days=40, start_ms=JANUARY,
                                     churn_fraction=0.0, faults=FaultSpec.none(),
                                     life=LifeSpec(illness_per_year=8.0,
                                                   habit_changes_per_month=1.5)))  # fmt: skip
    uses = _use_by_day(fleet)
    ill_tv, usual_tv, before, after = [], [], [], []
    for (subject, product), days in uses.items():
        c = fleet.customer(subject)
        sick = {(t - fleet.start_ms) // DAY_MS for e in c.life if e.kind == "illness"
                for t in range(e.start_ms, e.end_ms or e.start_ms, DAY_MS)}  # fmt: skip
        if product == "tv" and sick:
            ill_tv += [days[d] for d in range(40) if d in sick]
            usual_tv += [days[d] for d in range(40) if d not in sick]
        for e in c.life:
            if e.kind == "habit_change" and e.product in (None, product) and e.factor < 1:
                day = (e.start_ms - fleet.start_ms) // DAY_MS
                if 7 <= day <= 32:
                    before.append(sum(days[d] for d in range(day - 7, day)))
                    after.append(sum(days[d] for d in range(day + 1, day + 8)))
    assert len(ill_tv) > 30
    assert statistics.mean(ill_tv) > 1.3 * statistics.mean(usual_tv)
    assert len(before) >= 10
    assert sum(after) < 0.8 * sum(before)


def test_genuine_large_events_are_labelled_and_are_not_anomalies() -> None:
    spec = FleetSpec.realistic(seed=7, devices=60, days=21, start_ms=JANUARY)
    fleet = Fleet.generate(spec)
    kinds: collections.Counter[str] = collections.Counter()
    for d in fleet.devices:
        truth = fleet.truth(d.device_id)
        by_seq = {s.seq: s for s in fleet.signals(d.device_id)}
        for g in truth.genuine:
            kinds[g.kind] += 1
            assert g.seqs
            assert not set(g.seqs) & set(truth.anomalies)
            assert g.subject in d.users
            values = [by_seq[q] for q in g.seqs]
            if g.kind == "party":
                assert sum(s.name == "coffee.brew" for s in values) >= 3  # some may be lost
            if g.kind == "workout":
                assert (
                    max(int(s.value) for s in values if s.name == "wearable.heart_rate_bpm") >= 115
                )
            if g.kind == "movie_night":
                assert max(int(s.value) for s in values if s.name == "tv.volume") >= 55
            if g.kind == "refill":
                assert float(values[0].value) >= 75
    assert {"refill", "party", "window_open", "workout", "movie_night"} <= set(kinds)


def test_an_opened_window_cools_the_room_fast() -> None:
    berlin = PopulationSpec(timezones=("Europe/Berlin",))
    often = LifeSpec(seasons=True, events_per_month=8.0)
    fleet = Fleet.generate(FleetSpec(seed=8, devices=80, days=14, start_ms=JANUARY,
                                     churn_fraction=0.0, faults=FaultSpec.none(),
                                     population=berlin, life=often))  # fmt: skip
    drops = []
    for d in fleet.devices:
        if d.product != "thermostat":
            continue
        signals = fleet.signals(d.device_id)
        temps = [(s.ts, float(s.value)) for s in signals if s.name == "thermostat.temperature_c"]
        for g in fleet.truth(d.device_id).genuine:
            assert g.kind == "window_open"
            before = [v for t, v in temps if g.start_ms - 1_800_000 <= t < g.start_ms]
            during = [v for t, v in temps if g.start_ms <= t <= g.end_ms]
            if before and during:
                drops.append(before[-1] - min(during))
    assert len(drops) > 10
    assert statistics.median(drops) > 2.0  # °C within the hour, in a Berlin January
