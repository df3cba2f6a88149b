"""What sensors and links do to a device's readings (``SensorSpec``).

Applied to a device's true events in this order: measurement noise and sensor drift
(values change), then, after anomalies are injected, outages (the device is off: no
signals) and i.i.d. loss (a signal is never sent). Each step has a random generator of
its own (seed and device), and does nothing, not even a draw, when its knob is off.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
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
_TWO_PI = 2.0 * math.pi
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
    uniform, plan_of = rng.random, plan.get
    spare: float | None = None
    out = list(events)
    for i, event in enumerate(events):
        how = plan_of(event[1])  # most events are not analog readings: look no further
        if how is None:
            continue
        sd, fault, lo, hi, integer = how
        x = float(event[2])  # an analog reading is a number (faults come later)
        if sd:
            # rng.gauss(0, sd), inlined (the same Box-Muller pairs, value for value): a
            # training fleet has millions of analog readings and the call was half the cost
            if spare is None:
                angle, radius = uniform() * _TWO_PI, math.sqrt(-2.0 * math.log(1.0 - uniform()))
                z, spare = math.cos(angle) * radius, math.sin(angle) * radius
            else:
                z, spare = spare, None
            x += z * sd
        if fault is not None and event[0] >= fault.start_ms:
            x += fault.per_day * (event[0] - fault.start_ms) / DAY_MS
        if x < lo:
            x = lo
        elif x > hi:
            x = hi
        out[i] = (event[0], event[1], round(x) if integer else round(x, 1), event[3])
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
    ``loss``), ``marked`` re-indexed to them, and how many were silenced and lost.

    ``events`` are in time order. One draw per event outside the outages, in order (so
    the same events are lost however the work is split); whole runs are sliced and
    filtered at once, because this runs over every signal of a training fleet.
    """
    marks = dict(marked or {})
    if not spans and loss <= 0:
        return events, marks, 0, 0
    chance = rng.random
    if not spans and not marks:
        kept = [e for e in events if chance() >= loss]
        return kept, {}, 0, len(events) - len(kept)
    times = [e[0] for e in events]
    runs: list[tuple[int, int]] = []  # [lo, hi) index runs outside every outage
    lo = 0
    for a, b in spans:  # sorted, disjoint [a, b) spans
        first = bisect_left(times, a, lo)
        if first > lo:
            runs.append((lo, first))
        lo = max(lo, bisect_left(times, b, lo))
    runs.append((lo, len(events)))
    keep: list[int] = []
    for lo, hi in runs:
        keep += [i for i in range(lo, hi) if chance() >= loss] if loss > 0 else range(lo, hi)
    outside = sum(hi - lo for lo, hi in runs)
    kept_marks: dict[int, T] = {}
    for i, mark in sorted(marks.items()):
        k = bisect_left(keep, i)
        if k < len(keep) and keep[k] == i:
            kept_marks[k] = mark
    return [events[i] for i in keep], kept_marks, len(events) - outside, outside - len(keep)
