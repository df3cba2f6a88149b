"""Customer behaviour features: one definition for the agent and the trainer.

The edge agent keeps one :class:`FeatureState` per customer (twin) and product, updated
signal by signal; the hub's trainer replays simulated or exported signals through the very
same class, with the device's own clock, zone and losses, so the numbers a model was
trained on are the numbers it sees on the device.

Days, dayparts and weekends are the household's **local** ones (:class:`LocalTime`):
routines are local, and a UTC day cuts an evening in Asia or a morning in America in
two. Memory is bounded: a state keeps one small bucket per local day for the last
:data:`WINDOW_DAYS` days; a day leaving the window is folded into two decayed sums, the
customer's *usual* rate of use. Hours in which the device reported nothing at all
(:class:`Coverage`: unplugged, offline) count for nothing: no use was expected then.

Features (every product, :data:`COMMON_FEATURES`): share of usage events per daypart
(night 0–6 h, morning 6–12 h, afternoon 12–18 h, evening 18–24 h) and on weekends; the
first two circular harmonics of their time of day (where the routine's peak lies, and
whether it has two); events per day over 7 and 28 days; trends (events per day of the
last 7 days over the 21 before, of the last 14 over the 14 before); share of active days;
hours since the last event. Then the customer's recent use against their own usual use:
uses per day before the last 14 days (exponentially decayed, time constant 8 weeks) and
the days that rests on; the uses of the last 3, 7 and 14 days against what the usual rate
predicts for those very hours (the customer's own dayparts and weekend share: a
weekend-only user's quiet Tuesday is no warning), in standard deviations and (7 and 14
days) as a ratio; and the uses the usual rate predicts since the last one (a silence long
*for this customer*). Then a few product habits (means of a setting, per-day sums of a
counter). :mod:`protocol._feature_schema` lists them with their floors.

"Usage" means the signals that are a person's actions (a brew, a setpoint change, steps,
a TV session), not the device's own readings (a temperature, a water level); a setting
counts only when it changes, since devices re-report settings periodically. A "use" is
the product's unit of engagement: a brew, a TV switched on, a setpoint change, a
heart-rate reading (the watch is worn).
"""

from __future__ import annotations

import math
from typing import Any

from ._catalog import Scalar
from ._coverage import FULL_DAY, Coverage
from ._errors import SchemaError
from ._feature_days import Day, Habits, habit_values, rhythm_values
from ._feature_schema import COUNTERS, HABITS, HEARTBEAT, USAGE, USES, Agg, feature_names
from ._local_time import LocalTime
from ._usual import DAY_MS, HOUR_MS, KEEP, PART_MS, Profile, is_weekend, kept, surprise

__all__ = ["WINDOW_DAYS", "FeatureState"]

#: Days of history a feature state keeps.
WINDOW_DAYS = 28
# The state's layout; a snapshot of another layout (an older agent's) is refused, and the
# agent starts that customer afresh.
_STATE_VERSION = 3
#: recency is capped here (a customer silent for longer looks the same to the models)
_MAX_RECENCY_H = float(WINDOW_DAYS * 24)
_MAX_TREND = 4.0
_MAX_RATIO = 4.0
# The usual rate leaves out the last this many days (the recent use it is compared with).
_RECENT_DAYS = 14
# No comparison before the usual rate rests on a day (the deviations stay 0).
_MIN_USUAL_DAYS = 0.99
# Uses expected in a silence are counted over at most this many days.
_MAX_SILENCE_DAYS = WINDOW_DAYS
# A ratio of recent to usual use needs this many expected uses to mean anything.
_MIN_EXPECTED = 1.0


def _trend(recent: int, recent_days: float, before: int, before_days: float) -> float:
    """Recent events per day over the ones before (1.0: no change or no history yet)."""
    if before_days <= 0 or recent_days <= 0:
        return 1.0
    rate_before = before / before_days
    if rate_before <= 0:
        return 1.0 if recent == 0 else _MAX_TREND
    return min(_MAX_TREND, (recent / recent_days) / rate_before)


class FeatureState:
    """Incremental features of one customer on one device of ``product``.

    ``clock``: the household's local time (UTC when not given). ``coverage``: the hours
    the device reported in (shared by the device's customers; fed every accepted
    signal); without it every hour counts as on. Feed signals in any order of arrival
    with :meth:`update`; read the vector at a point in time with :meth:`vector`.
    Signals older than the window are ignored.
    """

    def __init__(
        self, product: str, clock: LocalTime | None = None, coverage: Coverage | None = None
    ) -> None:
        self.names = feature_names(product)
        self.product = product
        self.clock = clock if clock is not None else LocalTime()
        # A device that only reports while used (a wearable) cannot tell off from unused.
        self._coverage = coverage if HEARTBEAT[product] else None
        self._usage = USAGE[product]
        self._habits = HABITS[product]
        self._use = USES[product]
        self._by_signal: dict[str, list[tuple[str, Agg]]] = {}
        for habit, (signal, agg) in self._habits.items():
            self._by_signal.setdefault(signal, []).append((habit, agg))
        self._days: dict[int, Day] = {}
        self.first_ms: int | None = None
        self.last_event_ms: int | None = None
        self.last_use_ms: int | None = None
        self._newest_day = -1
        self._last: dict[str, Scalar] = {}  # last value of each state/gauge usage signal
        # The usual rate: decayed sums of uses and of (covered) days over the days that
        # left the window, as of the last folded day (None: nothing folded yet).
        self._folded: int | None = None
        self._usual_events = 0.0
        self._usual_days = 0.0
        # Who the customer is over months: the folded days' habit sums, decayed.
        self._long = Habits()

    # -- input ---------------------------------------------------------------------------
    def update(self, signal: str, ts_ms: int, value: Scalar) -> None:
        """Account one accepted signal of this customer (``ts_ms``: the device's clock)."""
        local = self.clock.local_ms(ts_ms)
        day = local // DAY_MS
        if day <= self._newest_day - WINDOW_DAYS:
            return  # older than anything the features look at
        if self.first_ms is None or ts_ms < self.first_ms:
            self.first_ms = ts_ms
        usage = signal in self._usage
        if usage and signal not in COUNTERS:
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
            bucket = self._days[day] = Day()
            if day > self._newest_day:
                self._newest_day = day
                self._fold(day - WINDOW_DAYS)
        in_day = local % DAY_MS
        if use:
            bucket.uses[in_day // PART_MS] += 1
            if self.last_use_ms is None or ts_ms > self.last_use_ms:
                self.last_use_ms = ts_ms
        if usage:
            bucket.add_event(in_day)
            if self.last_event_ms is None or ts_ms > self.last_event_ms:
                self.last_event_ms = ts_ms
        for habit, agg in habits:
            bucket.account(habit, agg, value, usage)

    # -- coverage and the usual rate -----------------------------------------------------
    def _first_day(self) -> int | None:
        return None if self.first_ms is None else self.clock.local_ms(self.first_ms) // DAY_MS

    def _mask(self, day: int) -> int:
        return FULL_DAY if self._coverage is None else self._coverage.mask(day)

    def _on(self, day: int, today: int, now_in_day: int) -> float:
        """How much of local ``day`` the device was on (today: of the hours so far)."""
        mask = self._mask(day)
        if mask == FULL_DAY:
            return 1.0
        hours = 24 if day < today else now_in_day // HOUR_MS + 1
        return min(1.0, bin(mask & ((1 << hours) - 1)).count("1") / hours)

    def _usual(self, upto: int, profile: Profile | None = None) -> tuple[float, float]:
        """Decayed (uses, covered days) of every day up to ``upto`` since the first seen."""
        first = self._first_day()
        if first is None:
            return 0.0, 0.0
        events, days = self._usual_events, self._usual_days
        start = first if self._folded is None else self._folded + 1
        if upto < start:
            return events, days
        n = upto - start + 1
        events *= KEEP**n
        days *= KEEP**n
        # Days the coverage no longer knows (or never knew) count as full days.
        known = upto + 1 if self._coverage is None else max(start, self._coverage.oldest_day())
        known = min(known, upto + 1)
        days += KEEP ** (upto - known + 1) * kept(known - start)
        if known <= upto:
            assert self._coverage is not None
            profile = profile if profile is not None else self._profile(upto + WINDOW_DAYS)
            for d in range(known, upto + 1):
                mask = self._coverage.mask(d)
                share = 1.0 if mask == FULL_DAY else profile.day_share(mask)
                days += share * KEEP ** (upto - d)
        for d, b in self._days.items():
            if start <= d <= upto:
                events += b.used * KEEP ** (upto - d)
        return events, days

    def _fold(self, upto: int) -> None:
        """Move the days up to ``upto`` out of the window into the usual rate and habits."""
        first = self._first_day()
        # (Nothing seen yet: nothing to fold.)
        start = upto + 1 if first is None else first if self._folded is None else self._folded + 1
        if upto >= start:
            self._usual_events, self._usual_days = self._usual(upto)
            # Habits: every folded day decays by a day per day; days more than a year
            # before the window weigh nothing (exp(-365 / 56)): skip them.
            begin = max(start, upto - 365)
            self._long.decay(begin - start)
            for d in range(begin, upto + 1):
                self._long.decay(1)
                self._long.add(d, self._days.get(d), self._on(d, upto + 1, 0))
            self._folded = upto
        for old in [d for d in self._days if d <= upto]:
            del self._days[old]

    def _profile(self, today: int) -> Profile:
        """The customer's daily and weekly rhythm of use, from the window (smoothed)."""
        window = [(d, b) for d, b in self._days.items() if today - WINDOW_DAYS < d <= today]
        uses = [sum(b.uses[i] for _, b in window) for i in range(4)]
        weekend = sum(b.used for d, b in window if is_weekend(d))
        first = today - WINDOW_DAYS + 1
        first_day = self._first_day()
        if first_day is not None:
            first = max(first, first_day)
        return Profile.of(uses, weekend, range(first, today + 1))

    # -- output --------------------------------------------------------------------------
    def vector(self, now_ms: int) -> list[float]:
        """The features at ``now_ms`` (device clock), in :func:`feature_names` order."""
        now = self.clock.local_ms(now_ms)
        today, now_in_day = divmod(now, DAY_MS)
        window = [(d, b) for d, b in self._days.items() if today - WINDOW_DAYS < d <= today]
        # A device seen for less than the window averages over the days it has seen, and
        # only over the hours it was on.
        first_day = self._first_day()
        first = today - WINDOW_DAYS + 1
        if first_day is not None:
            first = max(first, first_day)
        on = {d: self._on(d, today, now_in_day) for d in range(first, today + 1)}
        days_28 = sum(on.values())
        days_7 = sum(v for d, v in on.items() if d > today - 7)
        days_14 = sum(v for d, v in on.items() if d > today - 14)
        events = sum(b.events for _, b in window)
        events_7 = sum(b.events for d, b in window if d > today - 7)
        events_14 = sum(b.events for d, b in window if d > today - 14)
        active = sum(1 for d, b in window if b.events and d in on)
        recency = _MAX_RECENCY_H
        if self.last_event_ms is not None and self.last_event_ms <= now_ms:
            recency = min(_MAX_RECENCY_H, (now_ms - self.last_event_ms) / HOUR_MS)
        out = rhythm_values(window, self._long)
        out += [
            events_7 / days_7 if days_7 > 0 else 0.0,
            events / days_28 if days_28 > 0 else 0.0,
            _trend(events_7, days_7, events - events_7, days_28 - days_7),
            _trend(events_14, days_14, events - events_14, days_28 - days_14),
            min(1.0, active / days_28) if days_28 > 0 else 0.0,
            recency,
            *self._vs_usual(now_ms, now, today, window, days_28),
        ]
        out += habit_values(self._habits, window, self._long, days_28)
        assert all(math.isfinite(v) for v in out)
        return out

    def _vs_usual(
        self, now_ms: int, now: int, today: int, window: list[tuple[int, Day]], seen: float
    ) -> list[float]:
        """Usual rate, the days it rests on, the three surprises, silence, two ratios."""
        profile = self._profile(today)
        usual_events, usual_days = self._usual(today - _RECENT_DAYS, profile)
        known = usual_days >= _MIN_USUAL_DAYS
        # Until the usual rate is known, the rate so far stands in (for the silence).
        used = sum(b.used for _, b in window)
        usual = usual_events / usual_days if known else (used / seen if seen > 0 else 0.0)
        first_ms = now_ms if self.first_ms is None else min(self.first_ms, now_ms)
        first = self.clock.local_ms(first_ms)
        mask_of = None if self._coverage is None else self._coverage.mask
        surprises, ratios = [], []
        for days in (3, 7, 14):
            since = max(first, (today - days + 1) * DAY_MS)
            recent = sum(b.used for d, b in window if d > today - days)
            span = profile.days(since, now, mask_of)
            expected = usual * span
            surprises.append(surprise(recent, expected, span, usual_days) if known else 0.0)
            if days > 3:
                ok = known and expected >= _MIN_EXPECTED
                ratios.append(min(_MAX_RATIO, recent / expected) if ok else 1.0)
        quiet_since = first_ms if self.last_use_ms is None else min(self.last_use_ms, now_ms)
        quiet_since = max(quiet_since, now_ms - _MAX_SILENCE_DAYS * DAY_MS)
        silence = usual * profile.days(self.clock.local_ms(quiet_since), now, mask_of)
        return [usual, usual_days, *surprises, silence, *ratios]

    # -- persistence ---------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot (the agent persists it across restarts)."""
        return {
            "v": _STATE_VERSION,
            "product": self.product,
            "first_ms": self.first_ms,
            "last_event_ms": self.last_event_ms,
            "last_use_ms": self.last_use_ms,
            "days": {str(d): [b.dayparts, b.sums, b.uses, b.rhythm] for d, b in self._days.items()},
            "last": dict(self._last),
            "usual": [self._folded, self._usual_events, self._usual_days],
            "habits": self._long.to_state(),
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        clock: LocalTime | None = None,
        coverage: Coverage | None = None,
    ) -> FeatureState:
        """Inverse of :meth:`to_state`; raises SchemaError on a malformed snapshot."""
        try:
            if state.get("v") != _STATE_VERSION:
                raise ValueError(f"state layout {state.get('v')!r}, expected {_STATE_VERSION}")
            fs = cls(str(state["product"]), clock, coverage)
            fs.first_ms = _opt_int(state["first_ms"])
            fs.last_event_ms = _opt_int(state["last_event_ms"])
            fs.last_use_ms = _opt_int(state["last_use_ms"])
            fs._days = {int(day): Day.from_state(b) for day, b in state["days"].items()}
            fs._long = Habits.from_state(state["habits"])
            fs._newest_day = max(fs._days, default=-1)
            last = state.get("last", {})
            if not isinstance(last, dict):
                raise TypeError("last must be a map")
            fs._last = {str(k): v for k, v in last.items()}
            folded, usual_events, usual_days = state["usual"]
            fs._folded = _opt_int(folded)
            fs._usual_events, fs._usual_days = float(usual_events), float(usual_days)
            if not all(math.isfinite(x) for x in (fs._usual_events, fs._usual_days)):
                raise ValueError("the usual rate is not finite")
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise SchemaError(f"malformed feature state: {exc}") from None
        return fs


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
