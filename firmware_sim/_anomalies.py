"""Injected anomalies: valid readings (in range, right type) that are wrong for the device.

Two injections. :func:`legacy_spikes` is the easy fleet's: after a genuine gauge reading,
with probability ``anomaly_rate``, one extra large jump (8-15 °C, +70 bpm, ...) halfway
(at most 2 minutes) towards the next reading. :func:`inject` is the varied one
(``FaultSpec.anomaly_mix``): each anomaly has a kind (spike, level shift, stuck sensor,
out-of-pattern use) and a size class (small, medium, large: :data:`SIZES`), and every
reading it touches is labelled with both. Both come from a generator of their own.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import cast

from protocol import CATALOG, Scalar

from ._knobs import ANOMALY_KINDS, SIZE_CLASSES, AnomalyMix
from ._labels import AnomalyKind, AnomalyLabel, SizeClass
from ._stream import DAY_MS, HOUR_MS, MINUTE_MS, Event

__all__ = ["SIZES", "Extra", "inject", "legacy_spikes", "next_at_hour", "quiet_hour"]

#: an inserted anomalous event and its label
Extra = tuple[Event, AnomalyLabel]

#: signal -> magnitude range (its unit) of a small, medium and large anomaly. Large is the
#: easy fleet's jump; a typical small one is a third of a typical large one or less
#: (about what a day's genuine variation of the signal spans).
SIZES: dict[str, tuple[tuple[float, float], ...]] = {
    "thermostat.temperature_c": ((1.5, 3.0), (3.0, 6.0), (8.0, 15.0)),
    "thermostat.setpoint_c": ((2.0, 3.0), (4.0, 6.0), (8.0, 12.0)),
    "wearable.heart_rate_bpm": ((25.0, 40.0), (40.0, 70.0), (70.0, 120.0)),
    "coffee.water_level_pct": ((10.0, 20.0), (20.0, 35.0), (40.0, 60.0)),
    "tv.volume": ((12.0, 20.0), (20.0, 35.0), (40.0, 60.0)),
}
#: the usage signal an out-of-pattern anomaly of each product is about
_USE = {"coffee": "coffee.brew", "tv": "tv.power", "thermostat": "thermostat.setpoint_c",
        "wearable": "wearable.heart_rate_bpm"}  # fmt: skip


def _clip(name: str, value: float) -> float:
    spec = CATALOG[name]
    lo = spec.minimum if spec.minimum is not None else -math.inf
    hi = spec.maximum if spec.maximum is not None else math.inf
    return float(max(lo, min(hi, value)))


def _typed(name: str, value: float) -> Scalar:
    return round(value) if CATALOG[name].type == "int" else round(value, 1)


# -- the easy fleet's large spikes --------------------------------------------------------
def _temperature(rng: random.Random, value: float) -> Scalar:
    """A room 8-15 °C off its last reading within minutes."""
    jump = rng.uniform(8.0, 15.0) * rng.choice((-1, 1))
    return round(_clip("thermostat.temperature_c", value + jump), 1)


def _setpoint(rng: random.Random, value: float) -> Scalar:
    """A setpoint 8-12 °C off (away from the range edge the jump would cross)."""
    up = value + 12.0 <= 35.0 and (value - 12.0 < 5.0 or rng.random() < 0.5)
    jump = rng.uniform(8.0, 12.0) * (1 if up else -1)
    return round(_clip("thermostat.setpoint_c", value + jump), 1)


def _heart_rate(rng: random.Random, value: float) -> Scalar:
    """170-230 bpm out of the blue (at least 70 above the last reading)."""
    return int(_clip("wearable.heart_rate_bpm", max(rng.randint(170, 230), value + 70)))


def _water_level(rng: random.Random, value: float) -> Scalar:
    """The tank 40-60 points fuller (emptier when that would overflow) without a refill."""
    jump = rng.uniform(40.0, 60.0)
    return round(_clip("coffee.water_level_pct", value + jump if value <= 40 else value - jump), 1)


def _volume(rng: random.Random, value: float) -> Scalar:
    """Volume to 90-100 from below 50 (to 0-10 from 50 and above)."""
    return rng.randint(90, 100) if value < 50 else rng.randint(0, 10)


#: gauge signal -> (rng, recent genuine value) -> implausible but valid value
_LEGACY: dict[str, Callable[[random.Random, float], Scalar]] = {
    "thermostat.temperature_c": _temperature,
    "thermostat.setpoint_c": _setpoint,
    "wearable.heart_rate_bpm": _heart_rate,
    "coffee.water_level_pct": _water_level,
    "tv.volume": _volume,
}


def _next_same(events: list[Event], end_ms: int) -> list[int]:
    """For each event, the time of the next event of the same signal (or ``end_ms``)."""
    following: dict[str, int] = {}
    after = [0] * len(events)
    for i in range(len(events) - 1, -1, -1):
        name = events[i][1]
        after[i] = following.get(name, end_ms)
        following[name] = events[i][0]
    return after


def _next_reading(events: list[Event], gauges: list[int], end_ms: int) -> dict[int, int]:
    """:func:`_next_same` of the ``gauges`` only (every reading of their signals)."""
    following: dict[str, int] = {}
    after: dict[int, int] = {}
    for i in reversed(gauges):
        name = events[i][1]
        after[i] = following.get(name, end_ms)
        following[name] = events[i][0]
    return after


def legacy_spikes(events: list[Event], rate: float, rng: random.Random, end_ms: int) -> list[Extra]:
    """The easy fleet's anomalies: extra large jumps, (event, label) in time order."""
    after = _next_same(events, end_ms)
    extra: list[Extra] = []
    episode = 0
    for i, (ts, name, value, subject) in enumerate(events):
        jump = _LEGACY.get(name)
        if jump is None or isinstance(value, bool | str) or rng.random() >= rate:
            continue
        at = ts + min((after[i] - ts) // 2, 2 * MINUTE_MS)
        new = jump(rng, value)
        episode += 1
        label = AnomalyLabel("spike", "large", name, episode, round(abs(float(new) - value), 3))
        extra.append(((at, name, new, subject), label))
    extra.sort(key=lambda e: e[0][0])
    return extra


# -- the varied injection -----------------------------------------------------------------
def _pick(rng: random.Random, names: tuple[str, ...], mix: AnomalyMix) -> str:
    weights = [getattr(mix, n) for n in names]
    return rng.choices(names, weights)[0]


def _size_of(name: str, departure: float) -> SizeClass:
    _small, medium, large = SIZES[name]
    if departure >= large[0]:
        return "large"
    return "medium" if departure >= medium[0] else "small"


def _offset(rng: random.Random, name: str, value: float, magnitude: float) -> float:
    """``value`` moved by ``magnitude`` up or down, whichever stays in the catalog range."""
    spec = CATALOG[name]
    up_ok = spec.maximum is None or value + magnitude <= spec.maximum
    down_ok = spec.minimum is None or value - magnitude >= spec.minimum
    up = up_ok and (not down_ok or rng.random() < 0.5)
    return value + magnitude if up else value - magnitude


def _starts(gauges: list[int], rate: float, rng: random.Random) -> Iterator[int]:
    """The ``gauges`` (event indices) where an anomaly starts: each with probability
    ``rate``, independently. The gaps between starts are drawn (geometric) rather than a
    draw per reading: a training fleet has millions of readings and a few hundred starts."""
    miss = math.log1p(-rate) if rate < 1.0 else -math.inf  # log P(no start at a reading)
    k = -1
    while True:
        k += 1 + int(math.log(1.0 - rng.random()) / miss)  # readings passed over, then one
        if k >= len(gauges):
            return
        yield gauges[k]


def inject(
    events: list[Event],
    rate: float,
    mix: AnomalyMix,
    rng: random.Random,
    *,
    product: str,
    end_ms: int,
    quiet_time: Callable[[int], int],
) -> tuple[list[Event], dict[int, AnomalyLabel], list[Extra]]:
    """Varied anomalies: (events with readings changed in place, index -> label of the
    changed ones, inserted extra events with their labels in time order).
    ``quiet_time(ts)``: the next time after ``ts`` at the hour the device's main user is
    least active (out-of-pattern use goes there)."""
    out = list(events)
    tags: dict[int, AnomalyLabel] = {}
    extra: list[Extra] = []
    gauges = [i for i, e in enumerate(events) if e[1] in SIZES]  # numeric readings
    after: dict[int, int] = {}  # the next reading of the same signal: made at the first spike
    times = [e[0] for e in events]
    busy: dict[str, int] = {}  # signal -> no new anomaly of it before this time
    episode = 0
    for i in _starts(gauges, rate, rng):
        ts, name, value, subject = events[i]
        assert not isinstance(value, bool | str)  # gauges are numeric
        if ts < busy.get(name, 0) or i in tags:
            continue
        kind = cast(AnomalyKind, _pick(rng, ANOMALY_KINDS, mix))
        size = cast(SizeClass, _pick(rng, SIZE_CLASSES, mix))
        magnitude = rng.uniform(*SIZES[name][SIZE_CLASSES.index(size)])
        episode += 1
        if kind == "spike":
            after = after or _next_reading(events, gauges, end_ms)
            at = ts + min((after[i] - ts) // 2, 2 * MINUTE_MS)
            new = _typed(name, _clip(name, _offset(rng, name, value, magnitude)))
            label = AnomalyLabel(kind, size, name, episode, round(magnitude, 3))
            extra.append(((at, name, new, subject), label))
        elif kind in ("level_shift", "stuck"):
            until = ts + int(rng.uniform(0.5, 6.0) * HOUR_MS)
            if kind == "stuck":
                until += int(rng.uniform(1.0, 6.0) * HOUR_MS)
            up = _offset(rng, name, value, magnitude) > value
            touched = [j for j in range(i, bisect_right(times, until)) if events[j][1] == name]
            if kind == "stuck":
                touched = touched[1:]  # the first reading is the genuine value it sticks at
                departure = max((abs(float(events[j][2]) - value) for j in touched), default=0.0)
                size, magnitude = _size_of(name, departure), departure
            label = AnomalyLabel(kind, size, name, episode, round(magnitude, 3))
            for j in touched:
                jts, jname, jvalue, jsubject = events[j]
                if kind == "stuck":
                    new = _typed(name, value)
                else:
                    shifted = float(jvalue) + (magnitude if up else -magnitude)
                    new = _typed(name, _clip(name, shifted))
                out[j] = (jts, jname, new, jsubject)
                tags[j] = label
            busy[name] = until
        else:
            at = quiet_time(ts)
            extra += _out_of_pattern(rng, product, size, episode, at, subject, events, times)
    extra = [e for e in extra if e[0][0] < end_ms]
    extra.sort(key=lambda e: e[0][0])
    return out, tags, extra


def _last_value(events: list[Event], times: list[int], name: str, at: int) -> float | None:
    for j in range(bisect_right(times, at) - 1, max(-1, bisect_right(times, at) - 2000), -1):
        if events[j][1] == name:
            return float(events[j][2])
    return None


def _out_of_pattern(
    rng: random.Random,
    product: str,
    size: SizeClass,
    episode: int,
    at: int,
    subject: str,
    events: list[Event],
    times: list[int],
) -> list[Extra]:
    """Use at the user's quietest hour: brews, a TV session, a setpoint, a racing heart."""
    grade = SIZE_CLASSES.index(size)
    signal = _USE[product]
    found: list[Event] = []
    if product == "coffee":
        for k in range(rng.randint(*((1, 1), (2, 3), (4, 6))[grade])):
            t = at + k * rng.randrange(2 * MINUTE_MS, 6 * MINUTE_MS)
            found += [
                (t, "coffee.brew", 1, subject),
                (t + 1, "coffee.strength", rng.choice((1, 5)), subject),
            ]
        magnitude = float(len(found) // 2)
    elif product == "tv":
        length = (30, 60, 120)[grade] * MINUTE_MS
        volume = rng.randint(*((20, 35), (50, 70), (85, 100))[grade])
        found = [(at, "tv.power", True, subject), (at + 1, "tv.volume", volume, subject)]
        found += [
            (at + k * 5 * MINUTE_MS, "tv.watch", 5.0, subject)
            for k in range(1, length // (5 * MINUTE_MS) + 1)
        ]
        found.append((at + length + 1, "tv.power", False, subject))
        magnitude = float(volume)
    else:  # a setpoint or a heart rate far from what the user's quiet hour shows
        base = _last_value(events, times, signal, at)
        if base is None:
            return []
        magnitude = rng.uniform(*SIZES[signal][grade])
        value = _typed(signal, _clip(signal, _offset(rng, signal, base, magnitude)))
        count = 1 if product == "thermostat" else rng.randint(5, 15)
        found = [(at + k * 2 * MINUTE_MS, signal, value, subject) for k in range(count)]
    label = AnomalyLabel("out_of_pattern", size, signal, episode, round(magnitude, 3))
    return [(e, label) for e in found]


def quiet_hour(activity: tuple[float, ...]) -> int:
    """The hour of the day a routine is least active."""
    return min(range(24), key=lambda h: activity[h])


def next_at_hour(local_ms: int, hour: int, rng: random.Random) -> int:
    """How many ms after ``local_ms`` a random moment of the next ``hour`` (local) is."""
    day = local_ms // DAY_MS * DAY_MS
    target = day + hour * HOUR_MS + rng.randrange(HOUR_MS)
    if target <= local_ms:
        target += DAY_MS
    return target - local_ms
