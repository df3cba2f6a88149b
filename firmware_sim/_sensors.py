"""What sensors and links do to a device's readings (``SensorSpec``).

Applied to a device's true events in this order: measurement noise and sensor drift
(values change), then, after anomalies are injected, outages (the device is off: no
signals) and i.i.d. loss (a signal is never sent). Each step has a random generator of
its own (seed and device), and does nothing, not even a draw, when its knob is off.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import TypeVar

from protocol import CATALOG

from ._knobs import SensorSpec
from ._labels import SensorFault
from ._life import poisson
from ._stream import DAY_MS, HOUR_MS, Event

__all__ = ["NOISE_SD", "drifts", "drop", "outages", "perturb"]

#: measurement noise (standard deviation at SensorSpec.noise = 1) of analog gauges:
#: a room thermistor, an optical heart-rate sensor, a tank's level sensor. Digital
#: settings (setpoint, volume) have none.
NOISE_SD = {
    "thermostat.temperature_c": 0.2,
    "wearable.heart_rate_bpm": 3.0,
    "coffee.water_level_pct": 1.5,
}
#: drift per day of a drifting sensor (drawn in this range, either sign)
_DRIFT_PER_DAY = {
    "thermostat.temperature_c": (0.02, 0.06),
    "wearable.heart_rate_bpm": (0.1, 0.3),
    "coffee.water_level_pct": (0.1, 0.3),
}
_ANALOG = {"thermostat": "thermostat.temperature_c", "wearable": "wearable.heart_rate_bpm",
           "coffee": "coffee.water_level_pct"}  # fmt: skip
_MAX_OUTAGE_MS = 7 * DAY_MS
T = TypeVar("T")


def _limits(name: str) -> tuple[float, float, bool]:
    spec = CATALOG[name]
    lo = spec.minimum if spec.minimum is not None else -math.inf
    hi = spec.maximum if spec.maximum is not None else math.inf
    return lo, hi, spec.type == "int"


#: analog gauge -> (lowest, highest, integer?) of what the device reports
_LIMITS = {name: _limits(name) for name in NOISE_SD}


def drifts(
    spec: SensorSpec, rng: random.Random, product: str, start: int, end: int
) -> list[SensorFault]:
    """The device's drifting sensor, if it has one (``SensorSpec.drift_share``)."""
    name = _ANALOG.get(product)
    if name is None or spec.drift_share <= 0 or rng.random() >= spec.drift_share:
        return []
    at = start + rng.randrange(max(1, end - start))
    per_day = rng.uniform(*_DRIFT_PER_DAY[name]) * rng.choice((-1, 1))
    return [SensorFault("drift", name, at, round(per_day, 4))]


def perturb(
    events: list[Event], spec: SensorSpec, rng: random.Random, faults: Sequence[SensorFault]
) -> list[Event]:
    """The events with measurement noise and drift on their analog readings."""
    if spec.noise <= 0 and not faults:
        return events
    drift = {f.signal: f for f in faults}
    # per analog signal: noise sd, drift fault, limits (looked up once, not per reading)
    plan = {
        name: (sd * spec.noise, drift.get(name), *_LIMITS[name]) for name, sd in NOISE_SD.items()
    }
    gauss = rng.gauss
    out = list(events)
    for i, (ts, name, value, subject) in enumerate(events):
        how = plan.get(name)
        if how is None or isinstance(value, bool | str):
            continue
        sd, fault, lo, hi, integer = how
        x = float(value) + gauss(0.0, sd) if sd else float(value)
        if fault is not None and ts >= fault.start_ms:
            x += fault.per_day * (ts - fault.start_ms) / DAY_MS
        x = max(lo, min(hi, x))
        out[i] = (ts, name, round(x) if integer else round(x, 1), subject)
    return out


def outages(spec: SensorSpec, rng: random.Random, start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) spans the device is off: Poisson starts, log-normal lengths."""
    if spec.outages_per_month <= 0:
        return []
    spans: list[tuple[int, int]] = []
    for _ in range(poisson(rng, spec.outages_per_month * (end - start) / DAY_MS / 30)):
        at = start + rng.randrange(max(1, end - start))
        length = min(
            _MAX_OUTAGE_MS, int(spec.outage_median_h * HOUR_MS * rng.lognormvariate(0, 1.2))
        )
        spans.append((at, at + max(60_000, length)))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def drop(
    events: list[Event],
    spans: Sequence[tuple[int, int]],
    loss: float,
    rng: random.Random,
    marked: Mapping[int, T] | None = None,
) -> tuple[list[Event], dict[int, T], int, int]:
    """The events that are sent (none in an outage, each lost with probability
    ``loss``), ``marked`` re-indexed to them, and how many were silenced and lost."""
    marks = dict(marked or {})
    if not spans and loss <= 0:
        return events, marks, 0, 0
    kept: list[Event] = []
    kept_marks: dict[int, T] = {}
    silenced = lost = k = 0
    for i, event in enumerate(events):
        ts = event[0]
        while k < len(spans) and spans[k][1] <= ts:
            k += 1
        if k < len(spans) and spans[k][0] <= ts:
            silenced += 1
            continue
        if loss > 0 and rng.random() < loss:
            lost += 1
            continue
        if marks and i in marks:
            kept_marks[len(kept)] = marks[i]
        kept.append(event)
    return kept, kept_marks, silenced, lost
