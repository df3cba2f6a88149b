"""Customer behaviour features: one definition for the agent and the trainer.

The edge agent keeps one :class:`FeatureState` per customer (twin) and product, updated
signal by signal; the hub's trainer replays simulated or exported signals through the very
same class, so the numbers a model was trained on are the numbers it sees on the device.

Memory is bounded: a state keeps one small bucket per UTC day for the last
:data:`WINDOW_DAYS` days; a day leaving the window is folded into two decayed sums, the
customer's *usual* rate of use. Days and dayparts are UTC, like the signals' timestamps.

Features (every product): share of usage events per daypart (night 0–6 h, morning
6–12 h, afternoon 12–18 h, evening 18–24 h) and on weekends; events per day over 7 and 28
days; trends (events per day of the last 7 days over the 21 before, of the last 14 over
the 14 before); share of active days; hours since the last event. Then the customer's
recent use against their own usual use: uses per day before the last 14 days
(exponentially decayed, time constant 8 weeks) and the days that rests on; the uses of
the last 3, 7 and 14 days against what the usual rate predicts for those very hours (the
customer's own dayparts and weekend share: a weekend-only user's quiet Tuesday is no
warning), in standard deviations; and the uses the usual rate predicts since the last
one (a silence long *for this customer*). Then a few product habits (means of a setting,
per-day sums of a counter).

"Usage" means the signals that are a person's actions (a brew, a setpoint change, steps,
a TV session), not the device's own readings (a temperature, a water level); a setting
counts only when it changes, since devices re-report settings periodically. A "use" is
the product's unit of engagement: a brew, a TV switched on, a setpoint change, a
heart-rate reading (the watch is worn).
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
# The usual rate leaves out the last this many days (the recent use it is compared with).
_RECENT_DAYS = 14
# Time constant of the usual rate in days: older habits fade out.
_USUAL_TAU_DAYS = 56.0
_KEEP = math.exp(-1.0 / _USUAL_TAU_DAYS)  # weight a day keeps per day that passes
# No comparison before the usual rate rests on a day (the deviations stay 0).
_MIN_USUAL_DAYS = 0.99
_MAX_SURPRISE = 10.0
# Uses expected in a silence are counted over at most this many days.
_MAX_SILENCE_DAYS = WINDOW_DAYS

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
    "usual_uses_per_day",
    "usual_days",
    "uses_vs_usual_3d",
    "uses_vs_usual_7d",
    "uses_vs_usual_14d",
    "silence_vs_usual",
)

# Signals that are a person's actions, per product.
_USAGE: dict[str, frozenset[str]] = {
    "coffee": frozenset({"coffee.brew", "coffee.strength"}),
    "thermostat": frozenset({"thermostat.setpoint_c", "thermostat.mode"}),
    "wearable": frozenset({"wearable.steps", "wearable.sleep"}),
    "tv": frozenset({"tv.power", "tv.genre", "tv.watch", "tv.volume"}),
}
# The unit a customer's engagement is counted in, per product: (signal, which of its
# reports count): every report, a change of value, or a switch turned on. One brew, one
# TV session, one heating adjustment, one heart-rate reading (the watch is worn). Other
# usage events come with these (a strength setting with a brew, minutes watched in a
# session) and only add noise.
_USES: dict[str, tuple[str, str]] = {
    "coffee": ("coffee.brew", "report"),
    "thermostat": ("thermostat.setpoint_c", "change"),
    "wearable": ("wearable.heart_rate_bpm", "report"),
    "tv": ("tv.power", "on"),
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
assert set(_USAGE) == set(_HABITS) == set(_USES) == set(PRODUCTS), "every product has features"
assert all(r == "report" or s in _USAGE[p] for p, (s, r) in _USES.items()), "uses are usage"


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


def _surprise(count: int, expected: float, span_days: float, usual_days: float) -> float:
    """How far ``count`` is from ``expected``, in standard deviations (clipped).

    Negative: fewer than usual. Counts are taken as Poisson, so a customer with a dozen
    uses a day and one with two a week can be compared (a week without a use means
    little for the second), and the expectation, learnt over ``usual_days``, is itself
    uncertain: over ``span_days`` its variance is ``expected * span_days / usual_days``.
    """
    variance = max(expected, 1.0) * (1.0 + span_days / usual_days)
    z = (count - expected) / math.sqrt(variance)
    return max(-_MAX_SURPRISE, min(_MAX_SURPRISE, z))


def _kept(days: int) -> float:
    """Weight of ``days`` consecutive days in the usual rate: sum of _KEEP**j, j < days."""
    return (1.0 - _KEEP**days) / (1.0 - _KEEP) if days > 0 else 0.0


@dataclass(frozen=True)
class _Profile:
    """When in the day and week a customer usually acts: expected usage over a span."""

    #: share of a usual day's usage before the start of each daypart (and 1.0 at the end)
    cumulative: tuple[float, ...]
    #: weight of a weekend day and of a weekday (a week averages 1.0 per day)
    weekend: float
    weekday: float

    def _until(self, ms_in_day: int) -> float:
        part, into = divmod(ms_in_day, 6 * _HOUR_MS)
        if part >= 4:
            return 1.0
        lo, hi = self.cumulative[part], self.cumulative[part + 1]
        return lo + (hi - lo) * into / (6 * _HOUR_MS)

    def days(self, start_ms: int, end_ms: int) -> float:
        """How many usual days' worth of usage fall between ``start_ms`` and ``end_ms``."""
        total = 0.0
        day = start_ms // _DAY_MS
        while day * _DAY_MS < end_ms:
            begin = day * _DAY_MS
            share = self._until(min(end_ms, begin + _DAY_MS) - begin)
            share -= self._until(max(start_ms, begin) - begin)
            total += share * (self.weekend if day % 7 in (2, 3) else self.weekday)
            day += 1
        return total


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
    """One UTC day: usage events and uses per daypart, and habit sums."""

    dayparts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    sums: dict[str, list[float]] = field(default_factory=dict)  # habit -> [sum, count]
    uses: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    @property
    def events(self) -> int:
        return sum(self.dayparts)

    @property
    def used(self) -> int:
        return sum(self.uses)


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
        self._use = _USES[product]
        self._by_signal: dict[str, list[tuple[str, _Agg]]] = {}
        for habit, (signal, agg) in self._habits.items():
            self._by_signal.setdefault(signal, []).append((habit, agg))
        self._days: dict[int, _Day] = {}
        self.first_ms: int | None = None
        self.last_event_ms: int | None = None
        self.last_use_ms: int | None = None
        self._newest_day = -1
        self._last: dict[str, Scalar] = {}  # last value of each state/gauge usage signal
        # The usual rate: decayed sums of events and of days over the days that left the
        # window, as of the last folded day (None: nothing folded yet).
        self._folded: int | None = None
        self._usual_events = 0.0
        self._usual_days = 0.0

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
        use_signal, rule = self._use
        use = signal == use_signal and (
            rule == "report" or (usage and (rule == "change" or value is True))
        )
        habits = self._by_signal.get(signal, ())
        if not usage and not habits and not use:
            return
        bucket = self._days.get(day)
        if bucket is None:
            bucket = self._days[day] = _Day()
            if day > self._newest_day:
                self._newest_day = day
                self._fold(day - WINDOW_DAYS)
        part = (ts_ms % _DAY_MS) // (6 * _HOUR_MS)
        if use:
            bucket.uses[part] += 1
            if self.last_use_ms is None or ts_ms > self.last_use_ms:
                self.last_use_ms = ts_ms
        if usage:
            bucket.dayparts[part] += 1
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

    def _usual(self, upto: int) -> tuple[float, float]:
        """Decayed (uses, days) of every day up to ``upto`` since the first one seen."""
        if self.first_ms is None:
            return 0.0, 0.0
        events, days = self._usual_events, self._usual_days
        start = self.first_ms // _DAY_MS if self._folded is None else self._folded + 1
        if upto < start:
            return events, days
        n = upto - start + 1
        events *= _KEEP**n
        days = days * _KEEP**n + _kept(n)
        for d, b in self._days.items():
            if start <= d <= upto:
                events += b.used * _KEEP ** (upto - d)
        return events, days

    def _fold(self, upto: int) -> None:
        """Move the days up to ``upto`` out of the window into the usual rate."""
        if self.first_ms is not None and upto >= (
            self.first_ms // _DAY_MS if self._folded is None else self._folded + 1
        ):
            self._usual_events, self._usual_days = self._usual(upto)
            self._folded = upto
        for old in [d for d in self._days if d <= upto]:
            del self._days[old]

    def _profile(self, dayparts: list[int], weekend: int, today: int) -> _Profile:
        """The customer's daily and weekly rhythm of use, from the window (smoothed)."""
        events = sum(dayparts)
        shares = [(n + 0.5) / (events + 2.0) for n in dayparts]
        cumulative = [0.0]
        for share in shares:
            cumulative.append(cumulative[-1] + share)
        first = today - WINDOW_DAYS + 1
        if self.first_ms is not None:
            first = max(first, self.first_ms // _DAY_MS)
        days = range(first, today + 1)
        n_weekend = sum(1 for d in days if d % 7 in (2, 3))
        n_weekday = len(days) - n_weekend
        if not n_weekend or not n_weekday:
            return _Profile(tuple(cumulative), 1.0, 1.0)
        share_weekend = (weekend + 2.0 * n_weekend / len(days)) / (events + 2.0)
        return _Profile(
            tuple(cumulative),
            share_weekend * len(days) / n_weekend,
            (1.0 - share_weekend) * len(days) / n_weekday,
        )

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
        # Recent uses against the customer's usual rate, expected over the same hours.
        uses = [sum(b.uses[i] for _, b in window) for i in range(4)]
        uses_weekend = sum(b.used for d, b in window if d % 7 in (2, 3))
        profile = self._profile(uses, uses_weekend, today)
        usual_events, usual_days = self._usual(today - _RECENT_DAYS)
        known = usual_days >= _MIN_USUAL_DAYS
        # Until the usual rate is known, the rate so far stands in (for the silence).
        usual = usual_events / usual_days if known else sum(uses) / seen_days
        first_ms = now_ms if self.first_ms is None else min(self.first_ms, now_ms)
        vs_usual = []
        for days in (3, 7, 14):
            since = max(first_ms, (today - days + 1) * _DAY_MS)
            recent = sum(b.used for d, b in window if d > today - days)
            span = profile.days(since, now_ms)
            vs_usual.append(_surprise(recent, usual * span, span, usual_days) if known else 0.0)
        quiet_since = first_ms if self.last_use_ms is None else min(self.last_use_ms, now_ms)
        quiet_since = max(quiet_since, now_ms - _MAX_SILENCE_DAYS * _DAY_MS)
        out = [share / events if events else 0.0 for share in dayparts]
        out += [
            weekend / events if events else 0.0,
            per_day_7,
            per_day_28,
            trend_7,
            trend_14,
            active,
            recency,
            usual,
            usual_days,
            *vs_usual,
            usual * profile.days(quiet_since, now_ms),
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
            "last_use_ms": self.last_use_ms,
            "days": {str(d): [b.dayparts, b.sums, b.uses] for d, b in self._days.items()},
            "last": dict(self._last),
            "usual": [self._folded, self._usual_events, self._usual_days],
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
            for day, (dayparts, sums, uses) in state["days"].items():
                if len(dayparts) != 4 or len(uses) != 4:
                    raise ValueError("a day has 4 dayparts")
                fs._days[int(day)] = _Day(
                    [int(x) for x in dayparts],
                    {str(k): [float(v[0]), int(v[1])] for k, v in sums.items()},
                    [int(x) for x in uses],
                )
            fs._newest_day = max(fs._days, default=-1)
            last = state.get("last", {})
            if not isinstance(last, dict):
                raise TypeError("last must be a map")
            fs._last = {str(k): v for k, v in last.items()}
            folded, usual_events, usual_days = state["usual"]
            fs._folded = None if folded is None else int(folded)
            fs._usual_events, fs._usual_days = float(usual_events), float(usual_days)
            last_use = state["last_use_ms"]
            fs.last_use_ms = None if last_use is None else int(last_use)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise SchemaError(f"malformed feature state: {exc}") from None
        return fs
