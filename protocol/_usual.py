"""A customer's usual use, and how surprising their recent use is against it.

The arithmetic behind :class:`protocol.FeatureState`'s comparisons with the customer's
usual self (docs/models.md, "Usual use"): the usual rate is a decayed mean over days,
each day weighted by how much of it the device was on (:class:`protocol.Coverage`); the
uses expected over a span follow the customer's own rhythm (dayparts and weekend share,
local time) and count only hours the device was on; a difference from the expectation
is measured in standard deviations of a Poisson count whose mean is itself uncertain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ._coverage import FULL_DAY

__all__ = ["Profile", "kept", "surprise"]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
PART_MS = 6 * HOUR_MS
# Time constant of the usual rate in days: older habits fade out.
USUAL_TAU_DAYS = 56.0
KEEP = math.exp(-1.0 / USUAL_TAU_DAYS)  # weight a day keeps per day that passes
MAX_SURPRISE = 10.0


def is_weekend(day: int) -> bool:
    """Whether local day ``day`` (days since 1970-01-01) is a Saturday or a Sunday."""
    # Day 0 of the Unix epoch was a Thursday: Saturday and Sunday are 2 and 3 mod 7.
    return day % 7 in (2, 3)


def surprise(count: int, expected: float, span_days: float, usual_days: float) -> float:
    """How far ``count`` is from ``expected``, in standard deviations (clipped at ±10).

    Negative: fewer than usual. Counts are taken as Poisson, so a customer with a dozen
    uses a day and one with two a week can be compared (a week without a use means
    little for the second), and the expectation, learnt over ``usual_days``, is itself
    uncertain: over ``span_days`` its variance is ``expected * span_days / usual_days``.
    """
    variance = max(expected, 1.0) * (1.0 + span_days / usual_days)
    z = (count - expected) / math.sqrt(variance)
    return max(-MAX_SURPRISE, min(MAX_SURPRISE, z))


def kept(days: int) -> float:
    """Weight of ``days`` consecutive full days in the usual rate: sum of KEEP**j, j < days."""
    return (1.0 - KEEP**days) / (1.0 - KEEP) if days > 0 else 0.0


def _mask_share(mask: int, hourly: tuple[float, ...], lo: int, hi: int) -> float:
    """Share of a usual day's use in ``[lo, hi)`` ms of the day, in the hours of ``mask``."""
    total = 0.0
    for hour in range(lo // HOUR_MS, min(24, -(-hi // HOUR_MS))):
        if not mask >> hour & 1:
            continue
        start, end = max(lo, hour * HOUR_MS), min(hi, (hour + 1) * HOUR_MS)
        total += hourly[hour] * (end - start) / HOUR_MS
    return total


@dataclass(frozen=True)
class Profile:
    """When in the day and week a customer usually acts: expected use over a span."""

    #: share of a usual day's use before the start of each daypart (and 1.0 at the end)
    cumulative: tuple[float, ...]
    #: weight of a weekend day and of a weekday (a week averages 1.0 per day)
    weekend: float
    weekday: float

    @classmethod
    def of(cls, dayparts: list[int], weekend_uses: int, days: range) -> Profile:
        """The rhythm of uses per daypart and on weekends over local ``days`` (smoothed)."""
        events = sum(dayparts)
        shares = [(n + 0.5) / (events + 2.0) for n in dayparts]
        cumulative = [0.0]
        for share in shares:
            cumulative.append(cumulative[-1] + share)
        n_weekend = sum(1 for d in days if is_weekend(d))
        n_weekday = len(days) - n_weekend
        if not n_weekend or not n_weekday:
            return cls(tuple(cumulative), 1.0, 1.0)
        share_weekend = (weekend_uses + 2.0 * n_weekend / len(days)) / (events + 2.0)
        return cls(
            tuple(cumulative),
            share_weekend * len(days) / n_weekend,
            (1.0 - share_weekend) * len(days) / n_weekday,
        )

    @property
    def hourly(self) -> tuple[float, ...]:
        """Share of a usual day's use in each local hour (uniform within a daypart)."""
        return tuple((self.cumulative[h // 6 + 1] - self.cumulative[h // 6]) / 6 for h in range(24))

    def _until(self, ms_in_day: int) -> float:
        part, into = divmod(ms_in_day, PART_MS)
        if part >= 4:
            return 1.0
        lo, hi = self.cumulative[part], self.cumulative[part + 1]
        return lo + (hi - lo) * into / PART_MS

    def day_share(self, mask: int, lo: int = 0, hi: int = DAY_MS) -> float:
        """Share of a usual day's use in ``[lo, hi)`` ms of a day, hours of ``mask`` only."""
        if mask == FULL_DAY:
            return self._until(hi) - self._until(lo)
        return _mask_share(mask, self.hourly, lo, hi)

    def days(self, start: int, end: int, mask_of: Callable[[int], int] | None = None) -> float:
        """Usual days' worth of use between local times ``start`` and ``end`` (ms).

        With ``mask_of`` (local day -> hours the device was on), hours it was off count
        for nothing.
        """
        total = 0.0
        day = start // DAY_MS
        while day * DAY_MS < end:
            begin = day * DAY_MS
            mask = FULL_DAY if mask_of is None else mask_of(day)
            lo, hi = max(start, begin) - begin, min(end, begin + DAY_MS) - begin
            share = self.day_share(mask, lo, hi)
            total += share * (self.weekend if is_weekend(day) else self.weekday)
            day += 1
        return total
