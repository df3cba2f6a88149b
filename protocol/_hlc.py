"""Hybrid logical clocks.

An HLC timestamp is ``(ms, counter)``: a physical time in Unix milliseconds and a logical
counter that orders events sharing a millisecond. It is packed into one 64-bit integer
``ms << 16 | counter`` (sortable, compact on the wire) and written to InfluxDB as
``ms * 1_000_000 + counter`` nanoseconds, so every op of a device gets its own timestamp
and a rewrite of the same op lands on the same point (idempotent by construction).

The device clock is deterministic: it advances only from the timestamps of the signals
it stamps (``HybridClock.stamp``), never from the hub's clock. Skew against the hub is
measured and reported instead (see ``Envelope.sent_ms``), never silently trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import ClockError

__all__ = ["HLC", "MAX_COUNTER", "HybridClock"]

MAX_COUNTER = 0xFFFF
_MAX_MS = (1 << 47) - 1  # year ~6400; keeps the packed value a positive int64


@dataclass(frozen=True, slots=True, order=True)
class HLC:
    """One hybrid logical clock reading; ordered by (ms, counter)."""

    ms: int
    counter: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.ms <= _MAX_MS or not 0 <= self.counter <= MAX_COUNTER:
            raise ClockError(f"HLC out of range: ms={self.ms} counter={self.counter}")

    def pack(self) -> int:
        """The 64-bit wire form, ``ms << 16 | counter``."""
        return (self.ms << 16) | self.counter

    @classmethod
    def unpack(cls, value: int) -> HLC:
        """Inverse of :meth:`pack`; raises ClockError for a negative or too large value."""
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ClockError(f"packed HLC must be a non-negative integer, got {value!r}")
        return cls(value >> 16, value & MAX_COUNTER)

    def to_ns(self) -> int:
        """The InfluxDB point timestamp in nanoseconds: unique per device and op."""
        return self.ms * 1_000_000 + self.counter

    @classmethod
    def from_ns(cls, ns: int) -> HLC:
        """Inverse of :meth:`to_ns`."""
        ms, counter = divmod(ns, 1_000_000)
        return cls(ms, counter)


class HybridClock:
    """A device's HLC; its state is two integers that the agent persists with each delta."""

    __slots__ = ("_counter", "_ms")

    def __init__(self, last: HLC | None = None) -> None:
        self._ms = last.ms if last else 0
        self._counter = last.counter if last else 0

    @property
    def last(self) -> HLC:
        """The most recent reading issued (or restored)."""
        return HLC(self._ms, self._counter)

    def stamp(self, physical_ms: int) -> HLC:
        """Issue the next timestamp for an event observed at ``physical_ms``.

        Strictly greater than every earlier reading, and equal to ``(physical_ms, 0)``
        whenever the physical clock moved forward. A counter overflow borrows the next
        millisecond, so the counter always fits 16 bits.
        """
        if physical_ms > self._ms:
            self._ms, self._counter = physical_ms, 0
        elif self._counter < MAX_COUNTER:
            self._counter += 1
        else:
            self._ms, self._counter = self._ms + 1, 0
        return HLC(self._ms, self._counter)
