"""When a device was on: the local hours in which it reported anything.

A coffee machine reports its tank every few minutes, a thermostat its room, a TV its
standby heartbeat, whoever uses them. An hour without a single report means the device
was unplugged or its agent down (a power cut, a move, a holiday with the mains off), not
that its customers stayed away; the features then expect no use in that hour
(:class:`protocol.FeatureState`), so an outage does not look like churn. One
:class:`Coverage` per device, fed every accepted signal whoever it is about, shared by
the feature states of the device's customers.

Memory is bounded: one 24-bit mask per local day for :data:`COVERAGE_DAYS` days. A day
before the first report kept, or older than that, counts as covered: nothing says it
was not (an agent upgraded from a version without coverage keeps its customers' usual
rates).
"""

from __future__ import annotations

from typing import Any

from ._errors import SchemaError
from ._local_time import LocalTime

__all__ = ["COVERAGE_DAYS", "FULL_DAY", "Coverage"]

#: Local days of coverage kept (feature states fold a day into the usual rate when it
#: leaves their 28-day window, and may lag the device's newest day by weeks).
COVERAGE_DAYS = 70
#: The mask of a day with a report in every hour.
FULL_DAY = (1 << 24) - 1
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_NEVER = 1 << 62


class Coverage:
    """The hours a device reported in, per local day (see the module docstring)."""

    __slots__ = ("_masks", "clock", "first_day", "newest_day")

    def __init__(self, clock: LocalTime | None = None) -> None:
        self.clock = clock if clock is not None else LocalTime()
        self._masks: dict[int, int] = {}
        self.first_day: int | None = None
        self.newest_day = -1

    def observe(self, ts_ms: int) -> bool:
        """The device reported at ``ts_ms`` (device clock, UTC); whether that was news."""
        local = self.clock.local_ms(ts_ms)
        day = local // _DAY_MS
        if day <= self.newest_day - COVERAGE_DAYS:
            return False
        bit = 1 << (local % _DAY_MS) // _HOUR_MS
        mask = self._masks.get(day, 0)
        if mask & bit:
            return False
        self._masks[day] = mask | bit
        if self.first_day is None or day < self.first_day:
            self.first_day = day
        if day > self.newest_day:
            self.newest_day = day
            for old in [d for d in self._masks if d <= day - COVERAGE_DAYS]:
                del self._masks[old]
        return True

    def oldest_day(self) -> int:
        """The first local day whose mask is known (earlier ones count as covered)."""
        if self.first_day is None:
            return _NEVER
        return max(self.first_day, self.newest_day - COVERAGE_DAYS + 1)

    def mask(self, day: int) -> int:
        """Bit ``h`` set: the device reported in local hour ``h`` of local day ``day``."""
        if self.first_day is None or day < self.first_day:
            return FULL_DAY
        if day <= self.newest_day - COVERAGE_DAYS:
            return FULL_DAY
        return self._masks.get(day, 0)

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot (the agent persists it with the device's state)."""
        return {"first": self.first_day, "masks": {str(d): m for d, m in self._masks.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any], clock: LocalTime | None = None) -> Coverage:
        """Inverse of :meth:`to_state`; raises SchemaError when malformed."""
        try:
            out = cls(clock)
            first = state["first"]
            out.first_day = None if first is None else int(first)
            out._masks = {int(d): int(m) & FULL_DAY for d, m in state["masks"].items()}
            out.newest_day = max(out._masks, default=-1)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SchemaError(f"malformed coverage state: {exc}") from None
        return out
