"""What sensors, links and clocks do: noise, drift, outages, loss, and device clocks that
are off and drift, never corrected (the truth knows by how much)."""

from __future__ import annotations

import dataclasses
import statistics

import pytest

from firmware_sim import DeviceClock, FaultSpec, Fleet, FleetSpec, SensorSpec

START = 1_767_225_600_000
DAY_MS = 86_400_000
RANGES = {"coffee.water_level_pct": (0, 100), "wearable.heart_rate_bpm": (25, 250)}
QUIET = FleetSpec(seed=12, devices=30, days=10, start_ms=START, churn_fraction=0.0,
                  faults=FaultSpec.none())  # fmt: skip


def _with(**sensors: object) -> Fleet:
    return Fleet.generate(dataclasses.replace(QUIET, sensors=SensorSpec(**sensors)))  # type: ignore[arg-type]


def _readings(fleet: Fleet, name: str) -> dict[tuple[str, int], float]:
    return {
        (d.device_id, s.ts): float(s.value)
        for d in fleet.devices
        for s in fleet.signals(d.device_id)
        if s.name == name
    }


def test_noise_is_added_to_analog_readings_only() -> None:
    plain, noisy = Fleet.generate(QUIET), _with(noise=1.0)
    for name, sd in (("thermostat.temperature_c", 0.2), ("wearable.heart_rate_bpm", 3.0),
                     ("coffee.water_level_pct", 1.5)):  # fmt: skip
        a, b = _readings(plain, name), _readings(noisy, name)
        assert a.keys() == b.keys()
        diffs = [b[k] - a[k] for k in a]
        assert len(diffs) > 500, name
        assert abs(statistics.mean(diffs)) < 0.1 * sd + 0.05, name
        assert statistics.stdev(diffs) == pytest.approx(sd, rel=0.2), name
    assert _readings(plain, "tv.volume") == _readings(noisy, "tv.volume")  # digital
    assert _readings(plain, "thermostat.setpoint_c") == _readings(noisy, "thermostat.setpoint_c")


def test_a_drifting_sensor_reads_further_off_each_day() -> None:
    plain, drifting = Fleet.generate(QUIET), _with(drift_share=1.0)
    checked = 0
    for d in drifting.devices:
        faults = drifting.truth(d.device_id).sensor_faults
        if d.product == "tv":
            assert faults == ()
            continue
        (fault,) = faults
        a = {s.ts: float(s.value) for s in plain.signals(d.device_id) if s.name == fault.signal}
        for s in drifting.signals(d.device_id):
            if s.name != fault.signal or s.ts < fault.start_ms + DAY_MS or s.ts not in a:
                continue
            expected = fault.per_day * (s.ts - fault.start_ms) / DAY_MS
            lo, hi = RANGES.get(fault.signal, (-40, 70))
            if not lo < a[s.ts] + expected < hi:
                continue  # (readings clipped at the catalog's range are not compared)
            assert float(s.value) - a[s.ts] == pytest.approx(expected, abs=0.6)
            checked += 1
        assert 0.01 < abs(fault.per_day) < 0.31
    assert checked > 100


def test_outages_silence_a_device_and_loss_drops_at_random() -> None:
    plain = Fleet.generate(QUIET)
    broken = _with(outages_per_month=6.0, outage_median_h=6.0, loss=0.1)
    spans = silenced = lost = total = 0
    for d in broken.devices:
        truth = broken.truth(d.device_id)
        spans += len(truth.outages)
        for a, b in truth.outages:
            assert a < b <= a + 7 * DAY_MS
            assert not any(a <= s.ts < b for s in broken.signals(d.device_id))
        silenced += truth.silenced
        lost += truth.lost
        total += len(plain.signals(d.device_id))
        assert (
            len(broken.signals(d.device_id))
            == len(plain.signals(d.device_id)) - truth.lost - truth.silenced
        )
    assert spans == pytest.approx(6.0 * 30 * 10 / 30, rel=0.3)
    assert silenced > 0.02 * total
    assert lost / (total - silenced) == pytest.approx(0.1, rel=0.05)


def test_device_clocks_are_off_and_drift_and_nobody_corrects_them() -> None:
    """Same fleet with and without drift (the drift has a generator of its own): each
    signal's timestamp moves by exactly drift x elapsed; the truth's clock maps device
    time back to the true instant."""
    faults = dataclasses.replace(FaultSpec.none(), skew_fraction=0.5, max_skew_ms=3_600_000)
    fixed = Fleet.generate(dataclasses.replace(QUIET, faults=faults))
    drifting = Fleet.generate(
        dataclasses.replace(QUIET, faults=dataclasses.replace(faults, max_drift_ppm=100.0))
    )
    assert [(d.device_id, d.skew_ms) for d in fixed.devices] == [
        (d.device_id, d.skew_ms) for d in drifting.devices
    ]
    drifted = 0
    for a, b in zip(fixed.devices, drifting.devices, strict=True):
        if not a.skew_ms:
            assert b.drift_ppm == 0  # a clock that is set (NTP) does not drift either
            continue
        assert abs(b.drift_ppm) <= 100
        drifted += b.drift_ppm != 0
        clock = drifting.clock(b.device_id)
        assert clock == DeviceClock(b.skew_ms, b.drift_ppm, drifting.start_ms)
        for x, y in zip(fixed.signals(a.device_id), drifting.signals(b.device_id), strict=True):
            assert (x.seq, x.name, x.value) == (y.seq, y.name, y.value)
            true = x.ts - a.skew_ms
            assert y.ts == clock.device_ms(true)
            assert y.ts - true == a.skew_ms + int(b.drift_ppm * (true - drifting.start_ms) / 1e6)
            assert abs(clock.true_ms(y.ts) - true) <= 1
    assert drifted > 5
    # After 10 days a 100 ppm clock is 86 s off beyond its offset.
    assert DeviceClock(0, 100.0, START).skew_at(START + 10 * DAY_MS) == 86_400


def test_the_realistic_fleet_loses_about_two_percent() -> None:
    fleet = Fleet.generate(FleetSpec.realistic(seed=3, devices=40, days=10, start_ms=START))
    sent = sum(len({s.seq for s in fleet.signals(d.device_id)}) for d in fleet.devices)
    lost = sum(fleet.truth(d.device_id).lost for d in fleet.devices)
    assert lost / (sent + lost) == pytest.approx(0.02, abs=0.006)
