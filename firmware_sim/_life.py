"""Life beyond churn: holidays, illness and lasting habit changes (``LifeSpec``).

So that "declining use" is not only churn: a loyal customer goes on holiday (the home
falls silent for a week or two), falls ill (stays in, watches more TV, walks less), or
changes a habit for good (drinks less coffee after a new job, moves their routine,
turns the heating down after a bill). Each is a :class:`LifeEvent` on the customer (a
household's holiday on every member): ground truth, and what :class:`Life` applies to
the generators.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass
from typing import Literal, NamedTuple

__all__ = ["Life", "LifeEvent", "LifeState", "draw_holidays", "draw_life", "poisson"]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MONTH_DAYS = 30.0

LifeKind = Literal["holiday", "illness", "habit_change"]

#: use of each product while ill, relative to usual (TV up, coffee down)
ILL_USE = {"coffee": 0.7, "tv": 1.8, "thermostat": 1.0, "wearable": 1.0}
#: use of each product on holiday (the household is away; the wearable travels along)
HOLIDAY_USE = {"coffee": 0.0, "tv": 0.0, "thermostat": 0.0, "wearable": 1.0}


@dataclass(frozen=True)
class LifeEvent:
    """Something in a customer's life that changes how they use their devices.

    ``holiday`` and ``illness`` last ``[start_ms, end_ms)``; a ``habit_change`` lasts
    from ``start_ms`` on (``end_ms`` None) and multiplies the use of ``product`` (every
    product when None) by ``factor``, moves the daily routine by ``shift_h`` hours and
    the heating setpoint by ``setpoint_c``.
    """

    kind: LifeKind
    start_ms: int
    end_ms: int | None
    product: str | None = None
    factor: float = 1.0
    shift_h: float = 0.0
    setpoint_c: float = 0.0


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's method: the means here are small)."""
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-min(mean, 50.0)), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _spans(
    rng: random.Random, start: int, end: int, per_day: float, length: tuple[float, float]
) -> list[tuple[int, int]]:
    """Non-overlapping spans (ms) at ``per_day``, lengths in days drawn log-uniformly."""
    lead = int(length[1] * DAY_MS)  # one that began before the window may still run
    count = poisson(rng, per_day * (end - start + lead) / DAY_MS)
    spans: list[tuple[int, int]] = []
    for _ in range(count):
        at = start - lead + rng.randrange(max(1, end - start + lead))
        days = math.exp(rng.uniform(math.log(length[0]), math.log(length[1])))
        span = (at, at + int(days * DAY_MS))
        if all(span[1] <= a or b <= span[0] for a, b in spans):
            spans.append(span)
    return sorted(spans)


def draw_holidays(rng: random.Random, start: int, end: int, per_year: float) -> list[LifeEvent]:
    """A household's holidays (3-16 days each, starting at a local-ish morning)."""
    return [LifeEvent("holiday", a, b) for a, b in _spans(rng, start, end, per_year / 365, (3, 16))]


def draw_life(
    rng: random.Random,
    start: int,
    end: int,
    *,
    illness_per_year: float,
    changes_per_month: float,
    products: list[str],
) -> list[LifeEvent]:
    """A person's illnesses (2-8 days) and lasting habit changes in the window."""
    events = [
        LifeEvent("illness", a, b)
        for a, b in _spans(rng, start, end, illness_per_year / 365, (2, 8))
    ]
    for _ in range(poisson(rng, changes_per_month * (end - start) / DAY_MS / MONTH_DAYS)):
        at = start + rng.randrange(max(1, end - start))
        kind = rng.random()
        product = rng.choice(products) if products and rng.random() < 0.7 else None
        if kind < 0.45:  # uses the product less from now on (a new job, a new habit)
            events.append(LifeEvent("habit_change", at, None, product, rng.uniform(0.4, 0.8)))
        elif kind < 0.7:  # ... or more
            events.append(LifeEvent("habit_change", at, None, product, rng.uniform(1.2, 1.6)))
        elif kind < 0.9:  # the daily routine moves (new hours at work, a baby)
            shift = rng.uniform(1.0, 3.0) * rng.choice((-1, 1))
            events.append(LifeEvent("habit_change", at, None, None, 1.0, shift_h=shift))
        else:  # the heating goes down after a bill (or up: a newborn)
            delta = rng.choice((-2.0, -1.5, -1.0, 1.0))
            events.append(LifeEvent("habit_change", at, None, "thermostat", setpoint_c=delta))
    return sorted(events, key=lambda e: e.start_ms)


class LifeState(NamedTuple):
    """What a customer's life does to one product from a time ``until`` the next event
    boundary (generators ask again only then)."""

    use: float
    ill: bool
    away: bool
    shift_ms: int
    setpoint_c: float
    until: float


class Life:
    """What a customer's life events do at a time, for the generators (cheap to ask)."""

    __slots__ = ("_bounds", "_changes", "_holidays", "_ill", "_setpoint", "_shift", "quiet")

    def __init__(self, events: tuple[LifeEvent, ...] = ()) -> None:
        self._holidays = [(e.start_ms, e.end_ms or 0) for e in events if e.kind == "holiday"]
        self._ill = [(e.start_ms, e.end_ms or 0) for e in events if e.kind == "illness"]
        self._changes = [e for e in events if e.kind == "habit_change"]
        self._shift = [c for c in self._changes if c.shift_h]
        self._setpoint = [c for c in self._changes if c.setpoint_c]
        bounds = {e.start_ms for e in events} | {e.end_ms for e in events if e.end_ms is not None}
        self._bounds = sorted(bounds)
        #: no events at all: every answer is neutral
        self.quiet = not events

    def at(self, ts: int, product: str) -> LifeState:
        """Everything at once, valid until ``LifeState.until``."""
        if self.quiet:
            return LifeState(1.0, False, False, 0, 0.0, math.inf)
        k = bisect_right(self._bounds, ts)
        until = self._bounds[k] if k < len(self._bounds) else math.inf
        return LifeState(
            self.use(ts, product), self.ill(ts), self.away(ts), self.shift_ms(ts),
            self.setpoint_delta(ts), until,
        )  # fmt: skip

    def away(self, ts: int) -> bool:
        """On holiday (away from home)."""
        return any(a <= ts < b for a, b in self._holidays)

    def ill(self, ts: int) -> bool:
        """Ill at home."""
        return any(a <= ts < b for a, b in self._ill)

    def use(self, ts: int, product: str) -> float:
        """Use of ``product`` at ``ts`` relative to the customer's habits (1.0: as usual)."""
        if self.quiet:
            return 1.0
        factor = 1.0
        for change in self._changes:  # usually none
            if change.start_ms <= ts and change.product in (None, product):
                factor *= change.factor
        if self.away(ts):
            factor *= HOLIDAY_USE.get(product, 1.0)
        elif self.ill(ts):
            factor *= ILL_USE.get(product, 1.0)
        return factor

    def shift_ms(self, ts: int) -> int:
        """How much later (ms) the routine runs at ``ts`` than the customer's habits say."""
        if not self._shift:
            return 0
        return int(sum(c.shift_h for c in self._shift if c.start_ms <= ts) * HOUR_MS)

    def setpoint_delta(self, ts: int) -> float:
        """Lasting change of the heating setpoint at ``ts``, °C."""
        if not self._setpoint:
            return 0.0
        return sum(c.setpoint_c for c in self._setpoint if c.start_ms <= ts)
