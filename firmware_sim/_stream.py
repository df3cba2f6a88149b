"""The events of one device being generated, and what its generator needs to know.

Each product generator appends ``(ts, name, value, subject)`` events (true UTC time,
before clock skew, sensor trouble and faults) to a :class:`Stream`. Besides the easy
fleet's inputs (the users' habits, their churn multiplier) a stream carries the
household's local clock, the users' life events, the climate (None without seasons) and
a generator of its own for real-world detail (``extra``), so the easy fleet's draws are
the same whatever else is turned on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from protocol import Scalar

from ._life import Life, poisson
from ._personas import Persona
from ._zones import Climate

__all__ = ["DAY_MS", "HOUR_MS", "MINUTE_MS", "Event", "GenuineSpan", "Stream"]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

#: (ts, signal name, value, raw subject)
Event = tuple[int, str, Scalar, str]

_QUIET = Life()


def _utc(ts: int) -> int:
    return ts


@dataclass(frozen=True)
class GenuineSpan:
    """A genuine large event (not an anomaly): its signals ``names`` in [start, end]."""

    kind: str
    subject: str
    start_ms: int
    end_ms: int
    names: tuple[str, ...]


@dataclass
class Stream:
    """The events of one device being generated, and everything generators need."""

    rng: random.Random
    start_ms: int
    end_ms: int
    users: tuple[str, ...]
    persona_of: Callable[[str], Persona]
    decay: Callable[[str, int], float]
    events: list[Event] = field(default_factory=list)
    #: the household's local wall clock (UTC ms -> local ms), and its UTC offset when
    #: it has no DST change in the window (None: ask ``local``); hot loops use the offset
    local: Callable[[int], int] = _utc
    offset: int | None = 0
    #: a user's life events (holidays, illness, habit changes)
    life_of: Callable[[str], Life] = lambda _user: _QUIET
    #: the household's climate; None: no seasons (the easy fleet's heating)
    climate: Climate | None = None
    #: draws of real-world detail, apart from the easy fleet's ``rng``
    extra: random.Random | None = None
    #: genuine large events per 30 days (LifeSpec.events_per_month)
    events_per_month: float = 0.0
    #: within-persona variation (PopulationSpec.variation): personal details like a
    #: wearable's charging hour exist only above 0
    variation: float = 0.0
    #: household facts: water level at which the coffee machine is refilled, heat loss
    refill_at: float = 15.0
    heat_loss: float = 1.0
    cooling: bool = False
    #: how a shared device attributes uses (SimDevice.attribution) and, when "mixed",
    #: the share it gets wrong (drawn from ``credit_rng``)
    attribution: str = "per_user"
    misattribution: float = 0.0
    credit_rng: random.Random | None = None
    #: genuine large events recorded by the generator (ground truth)
    genuine: list[GenuineSpan] = field(default_factory=list)
    #: (ts, name) -> the real user, of events reported under someone else (ground truth)
    credited: dict[tuple[int, str], str] = field(default_factory=dict)

    def emit(self, ts: int, name: str, value: Scalar, subject: str) -> None:
        """Record one event if it falls inside the simulated window."""
        if self.start_ms <= ts < self.end_ms:
            self.events.append((ts, name, value, subject))

    def ticks(self, every_ms: int, jitter_ms: int = 0) -> list[int]:
        """Regular sample times over the window (grid-aligned), each with some jitter."""
        first = -(-self.start_ms // every_ms)
        last = self.end_ms // every_ms
        return [
            t * every_ms + (self.rng.randrange(jitter_ms) if jitter_ms else 0)
            for t in range(first, last + 1)
        ]

    def hours(self) -> range:
        """Every hour index (Unix ms // 1 h) touching the window."""
        return range(self.start_ms // HOUR_MS, -(-self.end_ms // HOUR_MS))

    def count(self, expected: float) -> int:
        """A random count with mean ``expected`` (integer part plus a Bernoulli)."""
        whole = int(expected)
        return whole + (1 if self.rng.random() < expected - whole else 0)

    @property
    def primary(self) -> str:
        """The device's main user."""
        return self.users[0]

    def share(self, user: str) -> float:
        """How much of a shared device's use is ``user``'s (the main user uses it most)."""
        if len(self.users) == 1:
            return 1.0
        return 0.7 if user == self.users[0] else 0.5

    def credit(self, user: str) -> str:
        """Who a shared device reports one use of ``user``'s under: the account holder
        ("account"), sometimes another member ("mixed"), else ``user``."""
        if self.attribution == "per_user" or len(self.users) < 2:
            return user
        if self.attribution == "account":
            return self.primary
        assert self.credit_rng is not None
        if self.credit_rng.random() < self.misattribution:
            return self.credit_rng.choice([u for u in self.users if u != user])
        return user

    def emit_as(self, ts: int, name: str, value: Scalar, user: str, shown: str) -> None:
        """:meth:`emit` of ``user``'s use, reported under ``shown`` (truth recorded)."""
        if shown != user and self.start_ms <= ts < self.end_ms:
            self.credited[(ts, name)] = user
        self.emit(ts, name, value, shown)

    def routine(self, user: str, ts: int) -> int:
        """``ts`` on ``user``'s routine clock: local time, less a lasting routine move."""
        life = self.life_of(user)
        local = self.local(ts)
        return local if life.quiet else local - life.shift_ms(ts)

    def genuine_times(self, share: float, hours: tuple[int, int]) -> list[int]:
        """UTC start times of genuine events of one kind (``share`` of the device's
        ``events_per_month``), each on a random day at a local hour in ``hours``."""
        if self.extra is None or self.events_per_month <= 0:
            return []
        days = (self.end_ms - self.start_ms) / DAY_MS
        out = []
        for _ in range(poisson(self.extra, self.events_per_month * share * days / 30)):
            day = self.start_ms + self.extra.randrange(max(1, self.end_ms - self.start_ms))
            local_day = self.local(day) // DAY_MS * DAY_MS
            at_local = local_day + self.extra.randrange(hours[0] * HOUR_MS, hours[1] * HOUR_MS)
            out.append(at_local - (self.local(day) - day))  # back to UTC
        return sorted(out)

    def mark(self, kind: str, subject: str, start: int, end: int, *names: str) -> None:
        """Record a genuine large event (ground truth: not an anomaly)."""
        self.genuine.append(GenuineSpan(kind, subject, start, end, names))
