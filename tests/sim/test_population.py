"""Who is in a fleet: variation within personas, blends, novel personas, time zones and
local routines, and shared devices that cannot tell their users apart."""

from __future__ import annotations

import collections
import statistics
import zoneinfo
from datetime import UTC, datetime

import pytest

from firmware_sim import (
    NOVEL_PERSONAS,
    PERSONAS,
    FaultSpec,
    Fleet,
    FleetSpec,
    LocalClock,
    PopulationSpec,
    SimulationError,
)

START = 1_767_225_600_000  # 2026-01-01 00:00 UTC
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def _population(**knobs: object) -> Fleet:
    """A large fleet (customers and devices only: no signals are generated)."""
    return Fleet.generate(FleetSpec(seed=2, devices=2000, days=30, start_ms=START,
                                    population=PopulationSpec(**knobs)))  # type: ignore[arg-type]  # fmt: skip


def test_customers_vary_around_their_persona() -> None:
    """variation=1: rates spread by ~30 % (log-normal), setpoints by ~0.9 °C, the day's
    rhythm moves; variation=0: every customer is an exact copy of the persona."""
    flat, varied = _population(variation=0.0), _population(variation=1.0)
    for c in flat.customers:
        assert flat.habits(c.subject) == PERSONAS[c.persona]
    by_persona: dict[str, list[str]] = collections.defaultdict(list)
    for c in varied.customers:
        by_persona[c.persona].append(c.subject)
    for persona, subjects in by_persona.items():
        habits = [varied.habits(s) for s in subjects]
        brews = [h.brews_per_day for h in habits]
        cv = statistics.stdev(brews) / statistics.mean(brews)
        assert 0.2 < cv < 0.45, (persona, cv)
        assert statistics.mean(brews) == pytest.approx(PERSONAS[persona].brews_per_day, rel=0.08)
        setpoints = [h.setpoint_c for h in habits]
        assert 0.6 < statistics.stdev(setpoints) < 1.3, persona
        peaks = collections.Counter(max(range(24), key=lambda h: x.activity[h]) for x in habits)
        assert len(peaks) >= 4, persona  # the busiest hour is not the same for everyone
        assert all(abs(sum(h.activity) - 1) < 1e-9 for h in habits)


def test_blended_customers_mix_two_personas() -> None:
    fleet = _population(blend_share=0.2)
    blended = [c for c in fleet.customers if c.blend is not None]
    assert len(blended) == pytest.approx(0.2 * len(fleet.customers), rel=0.15)
    for c in blended:
        assert c.blend in PERSONAS
        assert c.blend != c.persona
        assert 0.2 <= c.blend_weight <= 0.45
        main, other, mix = PERSONAS[c.persona], PERSONAS[c.blend], fleet.habits(c.subject)
        lo, hi = sorted((main.brews_per_day, other.brews_per_day))
        assert lo <= mix.brews_per_day <= hi
        # the main persona dominates
        assert (
            abs(mix.brews_per_day - main.brews_per_day)
            <= abs(mix.brews_per_day - other.brews_per_day) + 1e-9
        )
    assert all(c.blend is None and c.blend_weight == 0 for c in _population().customers)


def test_novel_personas_appear_only_in_fleets_that_ask() -> None:
    plain, novel = _population(), _population(novel_share=0.1)
    assert {c.persona for c in plain.customers} == set(PERSONAS)
    new = [c for c in novel.customers if c.persona in NOVEL_PERSONAS]
    assert {c.persona for c in new} == set(NOVEL_PERSONAS)
    assert len(new) == pytest.approx(0.1 * len(novel.customers), rel=0.2)
    for c in new[:20]:
        assert novel.persona(c.subject) == NOVEL_PERSONAS[c.persona]
    # only the novel customers changed: everyone else is who they were
    same = [
        a for a, b in zip(plain.customers, novel.customers, strict=True) if a.persona == b.persona
    ]
    assert len(same) == len(novel.customers) - len(new)
    only = _population(novel_share=0.1, novel_personas=("shift_worker",))
    assert {c.persona for c in only.customers} - set(PERSONAS) == {"shift_worker"}


def test_planted_sub_personas_are_two_known_variants_of_each_persona() -> None:
    """sub_personas=1.5: every customer is variant 0 (2.5x less use, 2 h earlier) or 1
    (2.5x more, 2 h later) of their persona, about half each; without the knob nobody is."""
    fleet = _population(sub_personas=1.5)
    variants = collections.Counter(c.sub_persona for c in fleet.customers)
    assert set(variants) == {0, 1}
    assert variants[0] == pytest.approx(len(fleet.customers) / 2, rel=0.1)
    for c in fleet.customers:
        persona, own = PERSONAS[c.persona], fleet.habits(c.subject)
        factor = 2.5 if c.sub_persona else 1 / 2.5
        assert own.brews_per_day == pytest.approx(persona.brews_per_day * factor)
        assert own.tv_sessions_per_day == pytest.approx(persona.tv_sessions_per_day * factor)
        busiest = max(range(24), key=lambda h: persona.activity[h])
        moved = max(range(24), key=lambda h: own.activity[h])
        assert (moved - busiest) % 24 == (2 if c.sub_persona else 22)
    assert all(c.sub_persona is None for c in _population().customers)
    with pytest.raises(SimulationError, match="sub_personas"):
        PopulationSpec(sub_personas=-1.0)


def test_households_live_in_zones_and_devices_know_theirs() -> None:
    zones = ("Europe/Berlin", "Asia/Kolkata", "Australia/Sydney", "-03:00")
    fleet = _population(timezones=zones, unset_tz_share=0.05)
    counts = collections.Counter(h.tz for h in fleet.households)
    assert set(counts) == set(zones)
    assert min(counts.values()) > 0.15 * len(fleet.households)
    unset = [d for d in fleet.devices if d.tz != fleet.household(d.device_id).tz]
    assert all(d.tz == "UTC" for d in unset)  # left on the factory setting
    assert len(unset) == pytest.approx(0.05 * len(fleet.devices), rel=0.3)
    assert all(d.tz == "UTC" for d in _population().devices)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Sydney",
                                  "Asia/Kolkata", "+05:30", "UTC"])  # fmt: skip
def test_local_clock_agrees_with_the_tz_database(zone: str) -> None:
    """Offsets (DST included: Berlin and New York change in March, Sydney in April and
    October) match zoneinfo at every hour of a year."""
    start = START
    clock = LocalClock(zone, start, start + 365 * DAY_MS)
    info = zoneinfo.ZoneInfo("Asia/Kolkata" if zone == "+05:30" else zone)
    offsets = set()
    for t in range(start, start + 365 * DAY_MS, 7 * HOUR_MS):
        delta = datetime.fromtimestamp(t / 1000, tz=UTC).astimezone(info).utcoffset()
        assert delta is not None
        assert clock.local(t) - t == int(delta.total_seconds() * 1000), (zone, t)
        offsets.add(clock.local(t) - t)
    assert len(offsets) == (
        2 if zone in ("Europe/Berlin", "America/New_York", "Australia/Sydney") else 1
    )


def test_routines_run_on_the_local_clock() -> None:
    """Early birds in Tokyo and New York both brew most at 6-7 in the morning, local
    time: 14 hours apart in UTC."""
    zones = PopulationSpec(timezones=("Asia/Tokyo", "America/New_York"))
    spec = FleetSpec(seed=4, devices=160, days=14, start_ms=START, churn_fraction=0.0,
                     faults=FaultSpec.none(), population=zones)  # fmt: skip
    fleet = Fleet.generate(spec)
    local: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    utc: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for d in fleet.devices:
        if d.product != "coffee":
            continue
        zone = fleet.household(d.device_id).tz
        clock = LocalClock(zone, fleet.start_ms, fleet.end_ms)
        for s in fleet.signals(d.device_id):
            if s.name == "coffee.brew" and fleet.customer(s.subject).persona == "early_bird":
                local[zone][(clock.local(s.ts) // HOUR_MS) % 24] += 1
                utc[zone][(s.ts // HOUR_MS) % 24] += 1
    for zone in ("Asia/Tokyo", "America/New_York"):
        assert sum(local[zone].values()) > 100, zone
        assert local[zone].most_common(1)[0][0] in (5, 6, 7), zone
    tokyo = utc["Asia/Tokyo"].most_common(1)[0][0]
    new_york = utc["America/New_York"].most_common(1)[0][0]
    assert (new_york - tokyo) % 24 == 14  # UTC+9 vs UTC-5 in January


def test_shared_devices_that_cannot_tell_users_apart() -> None:
    """'account': every use is reported under the account holder, the real user is in
    the truth. 'mixed': about ``misattribution`` of the uses go to another member."""
    base = {"seed": 9, "devices": 80, "days": 7, "start_ms": START, "faults": FaultSpec.none()}
    account = Fleet.generate(FleetSpec(**base, population=PopulationSpec(single_subject_share=1.0)))  # type: ignore[arg-type]
    checked = 0
    for d in account.devices:
        if len(d.users) < 2:
            assert d.attribution == "per_user"
            continue
        assert d.attribution == "account"
        truth = account.truth(d.device_id)
        assert {s.subject for s in account.signals(d.device_id)} == {d.users[0]}
        if d.product in ("coffee", "tv"):
            assert set(truth.true_subjects.values()) <= set(d.users[1:])
            checked += bool(truth.true_subjects)
    assert checked > 5
    mixed = Fleet.generate(FleetSpec(**base, population=PopulationSpec(misattribution=0.2)))  # type: ignore[arg-type]
    wrong = uses = 0
    for d in mixed.devices:
        if len(d.users) < 2 or d.product not in ("coffee", "tv"):
            continue
        assert d.attribution == "mixed"
        truth = mixed.truth(d.device_id)
        for s in mixed.signals(d.device_id):
            if s.name in ("coffee.brew", "tv.power") and s.value is not False:
                uses += 1
                real = truth.true_subjects.get(s.seq, s.subject)
                assert real in d.users
                wrong += real != s.subject
    assert uses > 100
    assert wrong / uses == pytest.approx(0.2, abs=0.06)
