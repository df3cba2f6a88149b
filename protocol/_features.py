"""Customer behaviour features: one definition for the agent and the trainer.

The edge agent keeps one :class:`FeatureState` per customer (twin) and product, updated
signal by signal; the hub's trainer replays simulated or exported signals through the very
same class, so the numbers a model was trained on are the numbers it sees on the device.

Memory is bounded: a state keeps one small bucket per UTC day for the last
:data:`WINDOW_DAYS` days and drops older ones. Days and dayparts are UTC, like the
signals' timestamps.

Features (every product): share of usage events per daypart (night 0–6 h, morning
6–12 h, afternoon 12–18 h, evening 18–24 h) and on weekends; events per day over 7 and 28
days; trends (events per day of the last 7 days over the 21 before, of the last 14 over
the 14 before); share of active days; hours since the last event. Then a
few product habits (means of a setting, per-day sums of a counter). "Usage" means the
signals that are a person's actions (a brew, a setpoint change, steps, a TV session), not
the device's own readings (a temperature, a water level); a setting counts only when it
changes, since devices re-report settings periodically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ._catalog import CATALOG, FIELDS, PRODUCTS, FieldSpec, Scalar
from ._errors import SchemaError

__all__ = [
    "COMMON_FEATURES",
    "FEATURE_FIELDS",
    "WINDOW_DAYS",
    "FeatureState",
    "feature_names",
]

#: Days of history a feature state keeps.
WINDOW_DAYS = 28
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
#: recency is capped here (a customer silent for longer looks the same to the models)
_MAX_RECENCY_H = float(WINDOW_DAYS * 24)
_MAX_TREND = 4.0

COMMON_FEATURES: tuple[str, ...] = (
    "share_night",
    "share_morning",
    "share_afternoon",
    "share_evening",
    "share_weekend",
    "events_per_day_7d",
    "events_per_day_28d",
    "trend_7_vs_21",
    "trend_14_vs_14",
    "active_days_28d",
    "recency_h",
)

# Signals that are a person's actions, per product.
_USAGE: dict[str, frozenset[str]] = {
    "coffee": frozenset({"coffee.brew", "coffee.strength"}),
    "thermostat": frozenset({"thermostat.setpoint_c", "thermostat.mode"}),
    "wearable": frozenset({"wearable.steps", "wearable.sleep"}),
    "tv": frozenset({"tv.power", "tv.genre", "tv.watch", "tv.volume"}),
}
# A counter signal is an event each time; a state or gauge only when its value changes
# (devices re-report settings periodically, and a re-report is nobody's action).
_COUNTERS = frozenset(name for name, spec in CATALOG.items() if spec.kind == "counter")

# "mean", "per_day", "starts_per_day" (a switch turned on), or "share:<value>" (the share
# of the signal's reports with that value)
_Agg = str
# Habit feature -> (signal, aggregate over the window), per product.
_HABITS: dict[str, dict[str, tuple[str, _Agg]]] = {
    "coffee": {
        "habit_strength": ("coffee.strength", "mean"),
        "habit_cups_per_day": ("coffee.brew", "per_day"),
    },
    "thermostat": {
        "habit_setpoint_c": ("thermostat.setpoint_c", "mean"),
        "habit_kwh_per_day": ("thermostat.energy", "per_day"),
        "habit_share_eco": ("thermostat.mode", "share:eco"),
    },
    "wearable": {
        "habit_steps_per_day": ("wearable.steps", "per_day"),
        "habit_heart_rate_bpm": ("wearable.heart_rate_bpm", "mean"),
        "habit_sleep_min_per_day": ("wearable.sleep", "per_day"),
    },
    "tv": {
        "habit_watch_min_per_day": ("tv.watch", "per_day"),
        "habit_sessions_per_day": ("tv.power", "starts_per_day"),
        "habit_share_news": ("tv.genre", "share:news"),
        "habit_share_sports": ("tv.genre", "share:sports"),
        "habit_share_movies": ("tv.genre", "share:movies"),
        "habit_share_kids": ("tv.genre", "share:kids"),
        "habit_volume": ("tv.volume", "mean"),
    },
}
assert set(_USAGE) == set(_HABITS) == set(PRODUCTS), "every product declares its features"


def feature_names(product: str) -> tuple[str, ...]:
    """The ordered feature vector of ``product`` (the models' input schema)."""
    if product not in _HABITS:
        raise SchemaError(f"no features for product {product!r}", reason="unknown_product")
    return COMMON_FEATURES + tuple(_HABITS[product])


def _trend(recent: int, recent_days: int, before: int, before_days: int) -> float:
    """Recent events per day over the ones before (1.0: no change or no history yet)."""
    if before_days <= 0:
        return 1.0
    rate_before = before / before_days
    if rate_before <= 0:
        return 1.0 if recent == 0 else _MAX_TREND
    return min(_MAX_TREND, (recent / recent_days) / rate_before)


#: twin field of each (product, feature). Features travel with the predictions (coarse,
#: per-customer aggregates, purpose ``analytics``) so the hub can retrain from its twins.
FEATURE_FIELDS: dict[tuple[str, str], str] = {}
for _product in sorted(_HABITS):
    for _name in feature_names(_product):
        _field = f"{_product}.f_{_name}"
        FEATURE_FIELDS[(_product, _name)] = _field
        FIELDS[_field] = FieldSpec(_field, _product, "float", "lww", "analytics")
del _product, _name, _field


@dataclass
class _Day:
    """One UTC day: usage events per daypart and habit sums."""

    dayparts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    sums: dict[str, list[float]] = field(default_factory=dict)  # habit -> [sum, count]

    @property
    def events(self) -> int:
        return sum(self.dayparts)


class FeatureState:
    """Incremental features of one customer on one device of ``product``.

    Feed signals in any order of arrival with :meth:`update`; read the vector at a point
    in time with :meth:`vector`. Signals older than the window are ignored.
    """

    def __init__(self, product: str) -> None:
        self.names = feature_names(product)
        self.product = product
        self._usage = _USAGE[product]
        self._habits = _HABITS[product]
        self._by_signal: dict[str, list[tuple[str, _Agg]]] = {}
        for habit, (signal, agg) in self._habits.items():
            self._by_signal.setdefault(signal, []).append((habit, agg))
        self._days: dict[int, _Day] = {}
        self.first_ms: int | None = None
        self.last_event_ms: int | None = None
        self._newest_day = -1
        self._last: dict[str, Scalar] = {}  # last value of each state/gauge usage signal

    def update(self, signal: str, ts_ms: int, value: Scalar) -> None:
        """Account one accepted signal of this customer."""
        day = ts_ms // _DAY_MS
        if day <= self._newest_day - WINDOW_DAYS:
            return  # older than anything the features look at
        if self.first_ms is None or ts_ms < self.first_ms:
            self.first_ms = ts_ms
        usage = signal in self._usage
        if usage and signal not in _COUNTERS:
            usage = self._last.get(signal) != value
            self._last[signal] = value
        habits = self._by_signal.get(signal, ())
        if not usage and not habits:
            return
        bucket = self._days.get(day)
        if bucket is None:
            bucket = self._days[day] = _Day()
            if day > self._newest_day:
                self._newest_day = day
                for old in [d for d in self._days if d <= day - WINDOW_DAYS]:
                    del self._days[old]
        if usage:
            bucket.dayparts[(ts_ms % _DAY_MS) // (6 * _HOUR_MS)] += 1
            if self.last_event_ms is None or ts_ms > self.last_event_ms:
                self.last_event_ms = ts_ms
        for habit, agg in habits:
            if agg.startswith("share:"):
                acc = bucket.sums.setdefault(habit, [0.0, 0])
                acc[0] += 1.0 if value == agg[6:] else 0.0
                acc[1] += 1
                continue
            if agg == "starts_per_day":  # a switch turned on: one session
                if usage and value is True:
                    acc = bucket.sums.setdefault(habit, [0.0, 0])
                    acc[0] += 1.0
                    acc[1] += 1
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            acc = bucket.sums.setdefault(habit, [0.0, 0])
            acc[0] += float(value)
            acc[1] += 1

    def vector(self, now_ms: int) -> list[float]:
        """The features at ``now_ms``, in :func:`feature_names` order."""
        today = now_ms // _DAY_MS
        window = [(d, b) for d, b in self._days.items() if today - WINDOW_DAYS < d <= today]
        # A device seen for less than the window averages over the days it has seen.
        seen_days = WINDOW_DAYS
        if self.first_ms is not None:
            seen_days = max(1, min(WINDOW_DAYS, today - self.first_ms // _DAY_MS + 1))
        week_days = min(7, seen_days)
        events = sum(b.events for _, b in window)
        events_7 = sum(b.events for d, b in window if d > today - 7)
        dayparts = [sum(b.dayparts[i] for _, b in window) for i in range(4)]
        # Day 0 of the Unix epoch was a Thursday: Saturday and Sunday are 2 and 3 mod 7.
        weekend = sum(b.events for d, b in window if d % 7 in (2, 3))
        per_day_7, per_day_28 = events_7 / week_days, events / seen_days
        events_14 = sum(b.events for d, b in window if d > today - 14)
        trend_7 = _trend(events_7, week_days, events - events_7, seen_days - week_days)
        half = min(14, seen_days)
        trend_14 = _trend(events_14, half, events - events_14, seen_days - half)
        active = sum(1 for _, b in window if b.events) / seen_days
        recency = _MAX_RECENCY_H
        if self.last_event_ms is not None and self.last_event_ms <= now_ms:
            recency = min(_MAX_RECENCY_H, (now_ms - self.last_event_ms) / _HOUR_MS)
        out = [share / events if events else 0.0 for share in dayparts]
        out += [
            weekend / events if events else 0.0,
            per_day_7,
            per_day_28,
            trend_7,
            trend_14,
            active,
            recency,
        ]
        for habit, (_signal, agg) in self._habits.items():
            total, count = 0.0, 0
            for _, b in window:
                acc = b.sums.get(habit)
                if acc is not None:
                    total, count = total + acc[0], count + int(acc[1])
            if agg == "mean" or agg.startswith("share:"):
                out.append(total / count if count else 0.0)
            else:
                out.append(total / seen_days)
        assert all(math.isfinite(v) for v in out)
        return out

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot (the agent persists it across restarts)."""
        return {
            "product": self.product,
            "first_ms": self.first_ms,
            "last_event_ms": self.last_event_ms,
            "days": {str(d): [b.dayparts, b.sums] for d, b in self._days.items()},
            "last": dict(self._last),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureState:
        """Inverse of :meth:`to_state`; raises SchemaError on a malformed snapshot."""
        try:
            fs = cls(str(state["product"]))
            fs.first_ms = None if state["first_ms"] is None else int(state["first_ms"])
            fs.last_event_ms = (
                None if state["last_event_ms"] is None else int(state["last_event_ms"])
            )
            for day, (dayparts, sums) in state["days"].items():
                if len(dayparts) != 4:
                    raise ValueError("a day has 4 dayparts")
                fs._days[int(day)] = _Day(
                    [int(x) for x in dayparts],
                    {str(k): [float(v[0]), int(v[1])] for k, v in sums.items()},
                )
            fs._newest_day = max(fs._days, default=-1)
            last = state.get("last", {})
            if not isinstance(last, dict):
                raise TypeError("last must be a map")
            fs._last = {str(k): v for k, v in last.items()}
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise SchemaError(f"malformed feature state: {exc}") from None
        return fs
