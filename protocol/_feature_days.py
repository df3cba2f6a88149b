"""A customer's days: what one local day holds, and what their habits are over months.

:class:`Day` is one local day of a :class:`protocol.FeatureState` window: usage events
and uses per daypart, the circular harmonics of the events' time of day, and the sums
behind the product habits. When a day leaves the window it is folded into
:class:`Habits`: the same sums, exponentially decayed (time constant 8 weeks), so the
features that describe *who* the customer is (when in the day and week they act, their
settings and amounts) rest on their whole recent history, not on 28 days alone. A
rhythm learnt from 60 coffee brews is a rough sketch; from 150, a portrait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ._catalog import Scalar
from ._feature_schema import Agg
from ._usual import DAY_MS, KEEP, is_weekend

__all__ = ["HARMONICS", "Day", "Habits", "habit_values", "rhythm_values"]

#: circular harmonics of the time of day kept per day (cos and sin of each)
HARMONICS = 3
_TAU = 2.0 * math.pi


@dataclass
class Day:
    """One local day: usage events and uses per daypart, time-of-day harmonics, habits."""

    dayparts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    sums: dict[str, list[float]] = field(default_factory=dict)  # habit -> [sum, count]
    uses: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    #: sums of cos kθ and sin kθ (k = 1..HARMONICS) of the usage events' time of day θ
    rhythm: list[float] = field(default_factory=lambda: [0.0] * (2 * HARMONICS))

    @property
    def events(self) -> int:
        return sum(self.dayparts)

    @property
    def used(self) -> int:
        return sum(self.uses)

    def add_event(self, ms_in_day: int) -> None:
        """A usage event at ``ms_in_day`` (local)."""
        self.dayparts[ms_in_day // (DAY_MS // 4)] += 1
        theta = _TAU * ms_in_day / DAY_MS
        for k in range(HARMONICS):
            self.rhythm[2 * k] += math.cos((k + 1) * theta)
            self.rhythm[2 * k + 1] += math.sin((k + 1) * theta)

    def account(self, habit: str, agg: Agg, value: Scalar, usage: bool) -> None:
        """Add ``value`` of a habit's signal to the day's sums."""
        if agg.startswith("share:"):
            acc = self.sums.setdefault(habit, [0.0, 0])
            acc[0] += 1.0 if value == agg[6:] else 0.0
            acc[1] += 1
            return
        if agg == "starts_per_day":  # a switch turned on: one session
            if usage and value is True:
                acc = self.sums.setdefault(habit, [0.0, 0])
                acc[0] += 1.0
                acc[1] += 1
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        x = float(value)
        extreme = self.sums.get(habit)
        if agg in ("daily_max", "daily_min"):  # the day's extreme (count stays 1)
            if extreme is None:
                self.sums[habit] = [x, 1]
            else:
                extreme[0] = max(extreme[0], x) if agg == "daily_max" else min(extreme[0], x)
            return
        acc = self.sums.setdefault(habit, [0.0, 0])
        acc[0] += x
        acc[1] += 1

    def to_state(self) -> list[Any]:
        return [self.dayparts, self.sums, self.uses, self.rhythm]

    @classmethod
    def from_state(cls, state: list[Any]) -> Day:
        dayparts, sums, uses, rhythm = state
        if len(dayparts) != 4 or len(uses) != 4 or len(rhythm) != 2 * HARMONICS:
            raise ValueError("a day has 4 dayparts and 6 harmonics")
        return cls(
            [int(x) for x in dayparts],
            {str(k): [float(v[0]), int(v[1])] for k, v in sums.items()},
            [int(x) for x in uses],
            [float(x) for x in rhythm],
        )


@dataclass
class Habits:
    """Decayed sums of the days that left the window (weights as of the last fold)."""

    #: decayed days the device was on
    days: float = 0.0
    dayparts: list[float] = field(default_factory=lambda: [0.0] * 4)
    weekend: float = 0.0
    rhythm: list[float] = field(default_factory=lambda: [0.0] * (2 * HARMONICS))
    sums: dict[str, list[float]] = field(default_factory=dict)

    def decay(self, days: int) -> None:
        """Age everything by ``days`` days."""
        w = KEEP**days
        self.days *= w
        self.weekend *= w
        self.dayparts = [x * w for x in self.dayparts]
        self.rhythm = [x * w for x in self.rhythm]
        for acc in self.sums.values():
            acc[0] *= w
            acc[1] *= w

    def add(self, day_index: int, day: Day | None, on: float) -> None:
        """Fold one day (None: a day without usage) that the device was ``on`` for."""
        self.days += on
        if day is None:
            return
        for i in range(4):
            self.dayparts[i] += day.dayparts[i]
        if is_weekend(day_index):
            self.weekend += day.events
        for i, r in enumerate(day.rhythm):
            self.rhythm[i] += r
        for habit, (total, count) in day.sums.items():
            acc = self.sums.setdefault(habit, [0.0, 0.0])
            acc[0] += total
            acc[1] += count

    def to_state(self) -> list[Any]:
        return [self.days, self.dayparts, self.weekend, self.rhythm, self.sums]

    @classmethod
    def from_state(cls, state: list[Any]) -> Habits:
        days, dayparts, weekend, rhythm, sums = state
        if len(dayparts) != 4 or len(rhythm) != 2 * HARMONICS:
            raise ValueError("habits have 4 dayparts and 6 harmonics")
        out = cls(
            float(days),
            [float(x) for x in dayparts],
            float(weekend),
            [float(x) for x in rhythm],
            {str(k): [float(v[0]), float(v[1])] for k, v in sums.items()},
        )
        values = [out.days, out.weekend, *out.dayparts, *out.rhythm]
        values += [x for acc in out.sums.values() for x in acc]
        if not all(math.isfinite(x) for x in values):
            raise ValueError("habit sums are not finite")
        return out


def rhythm_values(window: list[tuple[int, Day]], long: Habits) -> list[float]:
    """Shares of usage events per daypart and on weekends, then the mean harmonics."""
    dayparts = [sum(b.dayparts[i] for _, b in window) + long.dayparts[i] for i in range(4)]
    events = sum(dayparts)
    if events <= 0:
        return [0.0] * (5 + 2 * HARMONICS)
    weekend = sum(b.events for d, b in window if is_weekend(d)) + long.weekend
    rhythm = [sum(b.rhythm[i] for _, b in window) + long.rhythm[i] for i in range(2 * HARMONICS)]
    return [x / events for x in dayparts] + [weekend / events] + [r / events for r in rhythm]


def habit_values(
    habits: dict[str, tuple[str, Agg]],
    window: list[tuple[int, Day]],
    long: Habits,
    days_on: float,
) -> list[float]:
    """Each habit over the window and the decayed history (``days_on``: window days on)."""
    out = []
    for habit, (_signal, agg) in habits.items():
        acc = long.sums.get(habit, [0.0, 0.0])
        total, count = acc[0], acc[1]
        for _, b in window:
            day = b.sums.get(habit)
            if day is not None:
                total, count = total + day[0], count + day[1]
        if agg in {"per_day", "starts_per_day"}:
            days = days_on + long.days
            out.append(total / days if days > 0 else 0.0)
        else:  # a mean per report, a share of reports, a mean daily extreme
            out.append(total / count if count else 0.0)
    return out
