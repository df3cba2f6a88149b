"""The named profiles: easy is the historical fleet value for value; realistic turns every
kind of real-world mess on, deterministically, and no single raw feature gives the
personas away any more (issue 12)."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from firmware_sim import (
    AnomalyMix,
    ChurnSpec,
    FaultSpec,
    Fleet,
    FleetSpec,
    LifeSpec,
    PopulationSpec,
    SensorSpec,
    SimulationError,
)
from protocol import SchemaError, check_signal_value, signal_spec

START = 1_790_000_040_000
WINTER = 1_767_225_600_000  # 2026-01-01 00:00 UTC
YEAR_2100_MS = 4_102_444_800_000


def _digest(fleet: Fleet) -> str:
    """Everything a test could observe of the easy fleet, hashed."""
    m = hashlib.sha256()
    m.update(
        repr(
            [
                (c.subject, c.household, c.persona, c.churn_ms, c.disengage_ms)
                for c in fleet.customers
            ]
        ).encode()
    )
    m.update(
        repr(
            [(d.device_id, d.product, d.household, d.users, d.skew_ms) for d in fleet.devices]
        ).encode()
    )
    for d in fleet.devices:
        for s in fleet.signals(d.device_id):
            m.update(repr((s.seq, s.ts, s.subject, s.name, s.value)).encode())
        m.update(repr(fleet.reboots(d.device_id)).encode())
        m.update(repr(sorted(fleet.anomalies(d.device_id))).encode())
    return m.hexdigest()[:16]


@pytest.mark.parametrize(
    ("spec", "digest"),
    [
        (FleetSpec(seed=3, devices=40, days=3, start_ms=START), "404c2341f07db1b7"),
        (
            FleetSpec(
                seed=5, devices=30, days=10, start_ms=START, churn_fraction=0.5,
                faults=FaultSpec(anomaly_rate=0.02, skew_fraction=0.3),
            ),
            "cd510b394165f37f",
        ),
    ],
)  # fmt: skip
def test_easy_profile_is_the_historical_fleet_value_for_value(spec: FleetSpec, digest: str) -> None:
    """The digests were taken from the simulator before the realistic knobs existed:
    with every knob off, customers, devices, signals, reboots and anomalies are the
    same, draw for draw (the knobs draw from generators of their own)."""
    assert FleetSpec.easy(seed=spec.seed) == FleetSpec(seed=spec.seed)
    assert _digest(Fleet.generate(spec)) == digest


def test_realistic_turns_every_knob_on_and_keeps_changes() -> None:
    spec = FleetSpec.realistic(seed=4, devices=10, days=2)
    easy = FleetSpec()
    for part in ("faults", "population", "life", "churn", "sensors"):
        assert getattr(spec, part) != getattr(easy, part), part
    assert spec.churn.monthly_rate is not None
    assert 0.01 <= spec.churn.monthly_rate <= 0.03  # real churn is 1-3 % a month
    assert spec.population.timezones
    assert spec.life.seasons
    assert spec.sensors.loss > 0
    assert not spec.faults.anomaly_mix.legacy
    assert (spec.seed, spec.devices, spec.days) == (4, 10, 2)
    sub = FleetSpec.realistic(sensors=SensorSpec(loss=0.2))
    assert sub.sensors == SensorSpec(loss=0.2)  # a sub-spec given replaces the realistic one
    assert sub.population == spec.population
    with pytest.raises(SimulationError, match="no field 'sensor'"):
        FleetSpec.realistic(sensor=SensorSpec())


def test_realistic_is_deterministic_and_seeded() -> None:
    def make(seed: int) -> Fleet:
        return Fleet.generate(FleetSpec.realistic(seed=seed, devices=24, days=4, start_ms=START))

    a, b, c = make(8), make(8), make(9)
    assert a.customers == b.customers
    assert a.devices == b.devices
    assert a.households == b.households
    assert repr(a.all_signals()) == repr(b.all_signals())
    assert [a.truth(d.device_id) for d in a.devices] == [b.truth(d.device_id) for d in b.devices]
    assert a.labels() == b.labels()
    assert repr(a.all_signals()) != repr(c.all_signals())
    assert a.customers != c.customers


def test_bad_knobs_are_refused_with_what_to_change() -> None:
    for bad, match in (
        (lambda: SensorSpec(loss=1.0), "loss must be below 1"),
        (lambda: SensorSpec(noise=-1), "noise must be >= 0"),
        (lambda: PopulationSpec(variation=5), r"variation must be in \[0, 3\]"),
        (lambda: PopulationSpec(timezones=("Mars/Olympus",)), "Mars/Olympus"),
        (lambda: PopulationSpec(novel_share=0.1, novel_personas=("alien",)), "novel_personas"),
        (lambda: ChurnSpec(ramp_days=(30, 10)), "ramp_days must be"),
        (lambda: ChurnSpec(floor=(0.5, 1.5)), "floor must be"),
        (lambda: ChurnSpec(monthly_rate=2.0), "at most 1"),
        (lambda: LifeSpec(holidays_per_year=-1), "must be >= 0"),
        (lambda: AnomalyMix(small=0, medium=0, large=0), "size class"),
        (lambda: FaultSpec(max_drift_ppm=5000), "max_drift_ppm"),
    ):
        with pytest.raises(SimulationError, match=match):
            bad()


# -- not trivially separable ---------------------------------------------------------------
def _raw_features(fleet: Fleet) -> dict[str, tuple[list[str], dict[str, list[float]]]]:
    """Per product, one row per (device, reported customer): the obvious raw numbers an
    outsider would try first (levels, rates, the mean hour of use, UTC)."""
    rows: dict[tuple[str, str, str], dict[str, list[tuple[int, float]]]] = {}
    for d in fleet.devices:
        seen: set[int] = set()
        for s in fleet.signals(d.device_id):
            if s.seq in seen or s.ts in (0, YEAR_2100_MS):
                continue
            seen.add(s.seq)
            try:
                value = check_signal_value(signal_spec(s.name), s.value)
            except SchemaError:
                continue
            row = rows.setdefault((d.product, d.device_id, s.subject), {})
            number = float(value) if not isinstance(value, str) else float(value == "eco")
            row.setdefault(s.name, []).append((s.ts, number))
    days = fleet.spec.days
    out: dict[str, tuple[list[str], dict[str, list[float]]]] = {}
    for (product, _device, subject), sig in rows.items():

        def mean(name: str, sig: dict[str, list[tuple[int, float]]] = sig) -> float:
            values = [v for _, v in sig.get(name, [])]
            return sum(values) / len(values) if values else math.nan

        def total(name: str, sig: dict[str, list[tuple[int, float]]] = sig) -> float:
            return sum(v for _, v in sig.get(name, [])) / days

        def hour(name: str, sig: dict[str, list[tuple[int, float]]] = sig) -> float:
            hours = [(t // 3_600_000) % 24 for t, _ in sig.get(name, [])]
            if not hours:
                return math.nan
            x = sum(math.cos(2 * math.pi * h / 24) for h in hours)
            y = sum(math.sin(2 * math.pi * h / 24) for h in hours)
            return (math.atan2(y, x) * 24 / (2 * math.pi)) % 24

        features = {
            "coffee": {"brews": total("coffee.brew"), "strength": mean("coffee.strength"),
                       "hour": hour("coffee.brew")},
            "thermostat": {"setpoint": mean("thermostat.setpoint_c"),
                           "temperature": mean("thermostat.temperature_c"),
                           "energy": total("thermostat.energy"), "eco": mean("thermostat.mode")},
            "wearable": {"steps": total("wearable.steps"), "hr": mean("wearable.heart_rate_bpm"),
                         "sleep": mean("wearable.sleep"), "hour": hour("wearable.steps")},
            "tv": {"watch": total("tv.watch"), "volume": mean("tv.volume"),
                   "hour": hour("tv.watch")},
        }[product]  # fmt: skip
        labels, table = out.setdefault(product, ([], {}))
        labels.append(fleet.customer(subject).persona)
        for name, value in features.items():
            table.setdefault(name, []).append(value)
    return out


def _best_single_feature_ari(fleet: Fleet) -> tuple[float, str]:
    """The best ARI against personas of k-means (k = personas) on one raw feature."""
    best = (0.0, "")
    for product, (labels, table) in _raw_features(fleet).items():
        k = len(set(labels))
        for name, values in table.items():
            x = np.asarray(values, float)
            ok = ~np.isnan(x)
            if len(set(x[ok].round(3))) < k:
                continue
            pred = KMeans(k, n_init=10, random_state=0).fit_predict(x[ok].reshape(-1, 1))
            score = adjusted_rand_score(np.asarray(labels)[ok], pred)
            best = max(best, (score, f"{product}.{name}"))
    return best


def test_no_single_raw_feature_gives_the_personas_away() -> None:
    """Easy fleet: one raw number (a wearer's steps a day, a thermostat's mean setpoint)
    recovers the personas exactly (ARI 1.0), as issue 12 found. Realistic fleet: the best
    single raw feature stays far below that (0.18 on this seed when written; 0.18-0.35
    on seeds 21-23)."""
    easy = Fleet.generate(FleetSpec(seed=21, devices=160, days=14, start_ms=WINTER,
                                    churn_fraction=0.0))  # fmt: skip
    real = Fleet.generate(FleetSpec.realistic(seed=21, devices=160, days=14, start_ms=WINTER))
    easy_ari, easy_feature = _best_single_feature_ari(easy)
    real_ari, real_feature = _best_single_feature_ari(real)
    assert easy_ari > 0.95, easy_feature
    assert real_ari < 0.4, (real_ari, real_feature)


def test_each_knob_alone_leaves_everything_else_alone() -> None:
    """Loss alone removes signals and changes nothing else: the stream that is sent is
    the easy stream minus some of its signals (faults off, so seqs are comparable by
    content)."""
    base = FleetSpec(seed=6, devices=12, days=2, start_ms=START, faults=FaultSpec.none())
    lossy = dataclasses.replace(base, sensors=SensorSpec(loss=0.3))
    a, b = Fleet.generate(base), Fleet.generate(lossy)
    assert a.customers == b.customers
    assert a.devices == b.devices
    kept = sent = 0
    for d in a.devices:
        full = collections.Counter((s.ts, s.name, repr(s.value)) for s in a.signals(d.device_id))
        part = collections.Counter((s.ts, s.name, repr(s.value)) for s in b.signals(d.device_id))
        assert not part - full  # nothing new, nothing changed
        kept += sum(part.values())
        sent += sum(full.values())
        assert b.truth(d.device_id).lost == sum(full.values()) - sum(part.values())
    assert kept == pytest.approx(0.7 * sent, rel=0.03)
