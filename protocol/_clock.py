"""The one place wall-clock time is read, so tests can replace it."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Source of wall-clock time in Unix milliseconds and of monotonic seconds."""

    def now_ms(self) -> int:
        """Wall-clock time, Unix milliseconds."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds, for timeouts and rates."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        """Wall-clock time, Unix milliseconds."""
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to: deterministic tests and simulated days."""

    def __init__(self, now_ms: int = 0) -> None:
        self._now_ms = now_ms
        self._mono = 0.0

    def now_ms(self) -> int:
        """The current manual time."""
        return self._now_ms

    def monotonic(self) -> float:
        """Seconds advanced so far."""
        return self._mono

    def advance(self, ms: int) -> None:
        """Move both clocks forward by ``ms`` milliseconds."""
        if ms < 0:
            raise ValueError("a clock never moves backwards; use set_ms for skew scenarios")
        self._now_ms += ms
        self._mono += ms / 1000

    def set_ms(self, now_ms: int) -> None:
        """Jump the wall clock (monotonic time is unaffected), e.g. to simulate skew."""
        self._now_ms = now_ms
