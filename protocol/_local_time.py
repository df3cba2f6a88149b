"""The household's wall clock: device timestamps (Unix ms, UTC) to local time.

Routines are local: an early riser brews at 06:30 in Lisbon and in Tokyo, a weekend is
the household's Saturday and Sunday. Features are therefore computed on the local clock
of the household the device is in (``[device] timezone`` in the agent's configuration;
the trainer uses the zone of each simulated device). Timestamps stay UTC everywhere
else: on the wire, in the twin, in InfluxDB.

A zone is ``"UTC"``, a fixed offset (``"+05:30"``, ``"-08:00"``) or an IANA name
(``"Europe/Berlin"``: daylight saving included), resolved with the standard library's
:mod:`zoneinfo` (the system's tz database, or the ``tzdata`` package where there is
none). Nothing else here touches the outside world.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime

from ._errors import SchemaError

__all__ = ["LocalTime", "check_timezone"]

_HOUR_MS = 3_600_000
# UTC offsets in use run from -12:00 to +14:00.
_MAX_OFFSET_MS = 14 * _HOUR_MS
_FIXED = re.compile(r"^(?:UTC)?([+-])(\d{1,2})(?::?(\d{2}))?$")
# Offsets change on quarter hours (UTC) in every zone in use: cache per quarter hour.
_SLOT_MS = 15 * 60_000
_CACHE_SLOTS = 4096


def _fixed_offset(zone: str) -> int | None:
    """The offset of ``"UTC"`` or ``"±HH[:MM]"`` in ms; None for anything else."""
    if zone in ("UTC", "Z", "Etc/UTC"):
        return 0
    match = _FIXED.match(zone)
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    offset = (int(hours) * 60 + int(minutes or 0)) * 60_000
    if int(minutes or 0) >= 60 or offset > _MAX_OFFSET_MS:
        raise SchemaError(
            f"time zone {zone!r}: an offset is at most ±14:00 with minutes below 60",
            reason="bad_timezone",
        )
    return offset if sign == "+" else -offset


def check_timezone(zone: str) -> str:
    """``zone`` if it names a time zone this library can resolve, else SchemaError.

    Accepted: ``"UTC"``, a fixed offset ``"+05:30"`` / ``"-08:00"`` / ``"UTC+02"``, or an
    IANA name such as ``"Europe/Berlin"`` (reason ``bad_timezone`` otherwise).
    """
    if not isinstance(zone, str) or not zone or len(zone) > 64:
        raise SchemaError(
            "time zone: give 'UTC', an offset like '+01:00', or an IANA name like 'Europe/Berlin'",
            reason="bad_timezone",
        )
    if _fixed_offset(zone) is not None:
        return zone
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise SchemaError(
            f"time zone {zone!r} is unknown ({type(exc).__name__}); give 'UTC', an offset "
            "like '+01:00', or an IANA name like 'Europe/Berlin'",
            reason="bad_timezone",
        ) from None
    return zone


class LocalTime:
    """Local wall-clock time of one household (see the module docstring).

    ``local_ms(ts)`` is ``ts`` plus the zone's UTC offset at ``ts``: its day (``// day``)
    is the local date and its remainder the local time of day.
    """

    __slots__ = ("_cache", "_fixed", "_zone", "zone")

    def __init__(self, zone: str = "UTC") -> None:
        self.zone = check_timezone(zone)
        self._fixed = _fixed_offset(self.zone)
        self._zone = None if self._fixed is not None else zoneinfo.ZoneInfo(self.zone)
        self._cache: dict[int, int] = {}

    def offset_ms(self, ts_ms: int) -> int:
        """The zone's UTC offset at ``ts_ms``, in ms."""
        if self._fixed is not None:
            return self._fixed
        slot = ts_ms // _SLOT_MS
        offset = self._cache.get(slot)
        if offset is None:
            assert self._zone is not None
            at = datetime.fromtimestamp(slot * _SLOT_MS / 1000, tz=UTC).astimezone(self._zone)
            delta = at.utcoffset()
            offset = 0 if delta is None else int(delta.total_seconds() * 1000)
            if len(self._cache) >= _CACHE_SLOTS:
                self._cache.clear()  # bounded: signals arrive roughly in time order
            self._cache[slot] = offset
        return offset

    def local_ms(self, ts_ms: int) -> int:
        """``ts_ms`` on the local wall clock (still in ms since 1970-01-01 00:00)."""
        return ts_ms + self.offset_ms(ts_ms)

    def utc_ms(self, local_ms: int) -> int:
        """The UTC time whose local time is ``local_ms`` (the later one in a DST overlap)."""
        guess = local_ms - self.offset_ms(local_ms)
        return local_ms - self.offset_ms(guess)

    def __repr__(self) -> str:
        return f"LocalTime({self.zone!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalTime) and other.zone == self.zone

    def __hash__(self) -> int:
        return hash(self.zone)
