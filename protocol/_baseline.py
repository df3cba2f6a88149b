"""Per-signal baselines for the anomaly models: how unusual is this reading *here*?

A gauge reading that passes validation can still be implausible for the device it comes
from (a room jumping 12 °C in ten minutes, a resting wearer at 210 bpm, a tank level
that stopped moving). The agent keeps one :class:`SignalBaseline` per gauge signal and
device; :meth:`SignalBaseline.observe` returns the reading's anomaly features
(:data:`protocol.ANOMALY_FEATURES`) and then learns from it. Every feature compares the
reading with this device's own history, never with a fixed level: a home kept at 24 °C
or a tank kept half full is nobody's anomaly (the earlier ``value_of_range`` input, the
reading's place in the catalog range, made the thermostat model flag every steady
setpoint of 23.2 °C and more).

- ``abs_z``: distance from a robust running mean, in running standard deviations;
- ``jump_of_range``: the signed change from the last reading that looked normal, as a
  fraction of the signal's declared range (a range is the catalog's, the same for
  every device: a scale, not a level);
- ``step_z``: the change from the previous reading against this device's usual change
  between readings (a noisy sensor wiggles, a digital setting holds still);
- ``hour_z``: distance from what this device shows at this local hour of the day (a
  setback at night is routine, the same setpoint at 3 am on a Tuesday out of the blue
  is not); the local hour comes from the household's :class:`protocol.LocalTime`;
- ``run_vs_usual``: how many readings in a row repeat the exact value, against the
  longest such runs this device usually has (a sensor that wiggles and then repeats
  itself for hours is stuck; a setting that holds still is not: its usual longest hold
  is long). The longest, not the mean: a setting's holds are heavy-tailed (minutes in
  the evening, a whole weekend), so a hold three times the *mean* one is ordinary, and
  a model given the mean flagged steady setpoints on every clean device.

Outliers are clipped when learning, so one spike neither drags the baseline nor makes
the return to normal look like a second anomaly. The trainer replays readings through
the same class, so training and inference see the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ._catalog import CATALOG, SignalSpec
from ._errors import SchemaError
from ._local_time import LocalTime

__all__ = ["ANOMALY_FEATURES", "SignalBaseline", "is_baselined"]

#: The anomaly models' inputs, in order (see the module docstring).
ANOMALY_FEATURES: tuple[str, ...] = ("abs_z", "jump_of_range", "step_z", "hour_z", "run_vs_usual")

_ALPHA = 0.1
#: per-hour statistics learn at least this fast (faster while an hour has few readings)
_HOUR_ALPHA = 0.05
#: an hour's spread is never taken as less than this share of the overall spread
_HOUR_SHARE = 0.5
#: an hour needs this many readings before its own statistics are used
_HOUR_MIN = 3
#: the usual step and the usual run length learn this fast
_STEP_ALPHA = 0.05
#: the usual longest run forgets this share of itself at each run that ends (a
#: decaying maximum: a record halves in ~70 runs, a week or two of a setting)
_RUN_DECAY = 0.01
#: runs of one value that must have ended before ``run_vs_usual`` means anything
_RUNS_MIN = 5
_RUNS_CAP = 1000
#: deviations are clipped to this many sigmas when learning
_CLIP_SIGMAS = 3.0
#: a reading this many sigmas off is not taken as the new "last normal" one
_NORMAL_SIGMAS = 6.0
_MAX_Z = 50.0
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_STATE_VERSION = 3


def is_baselined(name: str) -> bool:
    """Whether signal ``name`` is a numeric gauge with a declared range (has a baseline)."""
    spec = CATALOG.get(name)
    return (
        spec is not None
        and spec.kind == "gauge"
        and spec.type in ("int", "float")
        and spec.minimum is not None
        and spec.maximum is not None
    )


def _z(deviation: float, sigma: float) -> float:
    return min(_MAX_Z, abs(deviation) / sigma)


@dataclass
class _Moments:
    """A robust exponentially weighted mean and variance (one hour's, or all readings')."""

    mean: float
    var: float
    n: int = 1

    def learn(self, x: float, sigma: float, alpha: float) -> None:
        clipped = max(-_CLIP_SIGMAS * sigma, min(_CLIP_SIGMAS * sigma, x - self.mean))
        self.mean += alpha * clipped
        self.var = (1 - alpha) * (self.var + alpha * clipped * clipped)
        self.n += 1


@dataclass
class SignalBaseline:
    """Running statistics of one gauge signal on one device (see the module docstring).

    ``clock``: the household's local time (UTC when not given), for ``hour_z``.
    """

    name: str
    clock: LocalTime = field(default_factory=LocalTime)
    overall: _Moments | None = None
    last_normal: float = 0.0
    previous: float = 0.0
    #: the usual absolute change between consecutive readings
    step: float = 0.0
    #: readings in a row with the current value, and the usual longest such run
    run: int = 0
    usual_run: float = 1.0
    #: runs of one value that have ended (up to a cap: only the warm-up needs the count)
    runs: int = 0
    hours: dict[int, _Moments] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not is_baselined(self.name):
            raise SchemaError(f"{self.name!r} is not a numeric gauge with a range")
        spec: SignalSpec = CATALOG[self.name]
        assert spec.minimum is not None
        assert spec.maximum is not None
        self._range = float(spec.maximum) - float(spec.minimum)
        # Never trust a spread below 1 % of the range (a flat signal would make every
        # small change look infinite), nor a usual step below 0.2 % of it (a setting that
        # holds still for days is not infinitely surprised by a change).
        self._floor = 0.01 * self._range
        self._step_floor = 0.002 * self._range

    def observe(self, value: float, ts_ms: int) -> list[float]:
        """Anomaly features of ``value`` read at ``ts_ms`` (device clock); then learn."""
        x = float(value)
        hour = self.clock.local_ms(ts_ms) % _DAY_MS // _HOUR_MS
        if self.overall is None:
            self.overall = _Moments(x, (0.05 * self._range) ** 2)
            self.last_normal = self.previous = x
            self.run = 1
            self.hours[hour] = _Moments(x, self.overall.var)
            return [0.0] * len(ANOMALY_FEATURES)
        overall = self.overall
        sigma = max(math.sqrt(overall.var), self._floor)
        abs_z = _z(x - overall.mean, sigma)
        own = self.hours.get(hour)
        if own is not None and own.n >= _HOUR_MIN:
            # An hour's spread is within the overall one (which adds the spread between
            # hours); its first readings start from a wide prior that this caps. It is
            # never trusted below half the overall spread: an hour's few readings of a
            # clean sensor look nearly constant, and an ordinary reading then sat 10
            # sigmas off (the wearable model flagged a clean heart rate 1 reading in 70).
            hour_sigma = max(min(math.sqrt(own.var), sigma), _HOUR_SHARE * sigma, self._floor)
            hour_z = _z(x - own.mean, hour_sigma)
        else:
            hour_sigma, hour_z = sigma, abs_z
        change = abs(x - self.previous)
        step_z = min(_MAX_Z, change / max(self.step, self._step_floor))
        run = self.run + 1 if x == self.previous else 1
        # Until a few runs have ended, nobody knows how long this device holds a value.
        known = self.runs >= _RUNS_MIN
        features = [
            abs_z,
            (x - self.last_normal) / self._range,
            step_z,
            hour_z,
            min(_MAX_Z, run / (self.usual_run + 1.0)) if known else 0.0,
        ]
        # -- learn ---------------------------------------------------------------------
        overall.learn(x, sigma, _ALPHA)
        if own is None:
            self.hours[hour] = _Moments(x, overall.var)
        else:
            own.learn(x, hour_sigma, max(_HOUR_ALPHA, 1.0 / (own.n + 1)))
        usual_step = max(self.step, self._step_floor)
        self.step += _STEP_ALPHA * (min(change, _CLIP_SIGMAS * usual_step) - self.step)
        if run == 1:  # a run ended: learn its length (a stuck sensor's only partly)
            self.runs = min(self.runs + 1, _RUNS_CAP)
            ended = float(self.run)
            if known:
                ended = min(ended, 2.0 * self.usual_run + 2.0)
            # a decaying maximum: the longest recent hold, slowly forgotten
            self.usual_run = max((1.0 - _RUN_DECAY) * self.usual_run, ended, 1.0)
        self.run = run
        self.previous = x
        if abs_z < _NORMAL_SIGMAS:
            self.last_normal = x
        return features

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot."""
        moments = self.overall
        return {
            "v": _STATE_VERSION,
            "overall": None if moments is None else [moments.mean, moments.var, moments.n],
            "last": [
                self.last_normal,
                self.previous,
                self.step,
                self.run,
                self.usual_run,
                self.runs,
            ],
            "hours": {str(h): [m.mean, m.var, m.n] for h, m in self.hours.items()},
        }

    @classmethod
    def from_state(
        cls, name: str, state: dict[str, Any], clock: LocalTime | None = None
    ) -> SignalBaseline:
        """Inverse of :meth:`to_state`; raises SchemaError when malformed (an older
        agent's state included: the agent then starts the device's baselines afresh)."""
        try:
            if state.get("v") != _STATE_VERSION:
                raise ValueError(f"state layout {state.get('v')!r}, expected {_STATE_VERSION}")
            out = cls(name, clock if clock is not None else LocalTime())
            overall = state["overall"]
            if overall is not None:
                out.overall = _Moments(float(overall[0]), float(overall[1]), int(overall[2]))
            last, previous, step, run, usual_run, runs = state["last"]
            out.last_normal, out.previous, out.step = float(last), float(previous), float(step)
            out.run, out.usual_run, out.runs = int(run), float(usual_run), int(runs)
            out.hours = {
                int(h): _Moments(float(m[0]), float(m[1]), int(m[2]))
                for h, m in state["hours"].items()
            }
            if not all(0 <= h < 24 for h in out.hours):
                raise ValueError("an hour of the day is 0..23")
            values = [out.last_normal, out.previous, out.step, out.usual_run]
            values += [v for m in out.hours.values() for v in (m.mean, m.var)]
            if out.overall is not None:
                values += [out.overall.mean, out.overall.var]
            if not all(math.isfinite(v) for v in values):
                raise ValueError("baseline statistics are not finite")
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise SchemaError(f"malformed baseline of {name}: {exc}") from None
        return out
