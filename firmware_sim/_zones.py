"""Where households live: time zones (local routines) and climates (seasons, daylight).

A household's routines run on its local clock: :class:`LocalClock` maps a UTC instant
to local wall-clock ms (DST included, from the system's tz database via ``zoneinfo``),
precomputed for the simulated window so the generators' hot loops stay cheap. Zones
are what the agent accepts (``protocol.check_timezone``: ``"UTC"``, ``"+05:30"`` or an
IANA name). :data:`CLIMATES` gives the zones the realistic profile uses an outdoor
temperature cycle and a latitude (daylight); any other zone gets a temperate default.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from protocol import LocalTime, SchemaError, check_timezone

from ._errors import SimulationError

__all__ = ["CLIMATES", "Climate", "LocalClock", "check_zone", "climate_of"]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# The hottest day of the year, days after 1 January (northern hemisphere): mid-July.
_HOTTEST_DAY = 196


@dataclass(frozen=True, slots=True)
class Climate:
    """A place's outdoor temperature cycle and latitude (negative: southern hemisphere)."""

    #: yearly mean outdoor temperature, °C
    mean_c: float
    #: half the difference between the warmest and the coldest month, °C
    swing_c: float
    latitude: float
    #: share of households with air conditioning (a thermostat that cools in summer)
    cooling: float

    def season_c(self, local_ms: int) -> float:
        """The day's typical mean outdoor temperature (the season, without the weather)."""
        day = (local_ms // DAY_MS) % 365.2425
        phase = 2 * math.pi * (day - _HOTTEST_DAY) / 365.2425
        return self.mean_c + self.swing_c * math.cos(phase) * (1 if self.latitude >= 0 else -1)

    def outdoor_c(self, local_ms: int) -> float:
        """Typical outdoor temperature at a local time: season plus the day's cycle."""
        hour = (local_ms % DAY_MS) / HOUR_MS
        daily = 4.0 * math.cos(2 * math.pi * (hour - 15) / 24)  # warmest at 15:00
        return self.season_c(local_ms) + daily

    def daylight_h(self, local_ms: int) -> float:
        """Hours of daylight on that local date (the standard declination formula)."""
        day = (local_ms // DAY_MS) % 365.2425
        decl = math.radians(23.44) * math.sin(2 * math.pi * (day - 80) / 365.2425)
        x = -math.tan(math.radians(self.latitude)) * math.tan(decl)
        return 24 * math.acos(max(-1.0, min(1.0, x))) / math.pi


#: climates of the zones the realistic profile draws from (approximate city normals)
CLIMATES: dict[str, Climate] = {
    "Europe/London": Climate(11.0, 6.5, 51.5, 0.05),
    "Europe/Berlin": Climate(10.0, 9.5, 52.5, 0.05),
    "Europe/Madrid": Climate(15.0, 10.0, 40.4, 0.4),
    "Europe/Helsinki": Climate(6.0, 11.0, 60.2, 0.02),
    "America/New_York": Climate(13.0, 12.0, 40.7, 0.85),
    "America/Chicago": Climate(10.5, 14.0, 41.9, 0.85),
    "America/Denver": Climate(10.5, 11.5, 39.7, 0.7),
    "America/Phoenix": Climate(24.0, 10.5, 33.4, 0.95),
    "America/Los_Angeles": Climate(18.5, 4.5, 34.1, 0.6),
    "America/Sao_Paulo": Climate(20.0, 3.5, -23.5, 0.3),
    "Asia/Kolkata": Climate(26.5, 5.0, 22.6, 0.5),
    "Asia/Tokyo": Climate(16.0, 10.5, 35.7, 0.9),
    "Australia/Sydney": Climate(18.0, 5.0, -33.9, 0.6),
}
_TEMPERATE = Climate(12.0, 8.0, 45.0, 0.3)


def climate_of(zone: str) -> Climate:
    """The zone's climate (a temperate default for zones not in :data:`CLIMATES`)."""
    return CLIMATES.get(zone, _TEMPERATE)


def check_zone(zone: str) -> str:
    """``zone`` if the agent accepts it (``protocol.check_timezone``), else SimulationError."""
    try:
        return check_timezone(zone)
    except SchemaError as exc:
        raise SimulationError(f"PopulationSpec.timezones: {exc}") from None


class LocalClock:
    """A zone's local wall clock over one window, precomputed (hourly offsets).

    ``local(ts)`` is ``ts`` plus the zone's UTC offset at ``ts``, as
    ``protocol.LocalTime.local_ms`` computes it; the offset table is built once per
    window, so a lookup is one bisection (or nothing, for a zone without DST).
    """

    __slots__ = ("_changes", "_offsets", "fixed", "zone")

    def __init__(self, zone: str, start_ms: int, end_ms: int) -> None:
        self.zone = zone
        reference = LocalTime(zone)
        # Offsets change on whole quarter hours; sampling each hour finds every change
        # of the zones in use (all change on the hour, UTC), checked against protocol's.
        first = start_ms // HOUR_MS * HOUR_MS - DAY_MS
        changes: list[int] = [first]
        offsets: list[int] = [reference.offset_ms(first)]
        if not _fixed(zone):
            for t in range(first + HOUR_MS, end_ms + 2 * DAY_MS, HOUR_MS):
                offset = reference.offset_ms(t)
                if offset != offsets[-1]:
                    changes.append(t)
                    offsets.append(offset)
        self._changes = changes
        self._offsets = offsets
        #: the offset when the zone has no change in the window, else None
        self.fixed: int | None = offsets[0] if len(offsets) == 1 else None

    def offset(self, ts_ms: int) -> int:
        """The UTC offset at ``ts_ms``, ms."""
        if self.fixed is not None:
            return self.fixed
        return self._offsets[max(0, bisect_right(self._changes, ts_ms) - 1)]

    def local(self, ts_ms: int) -> int:
        """``ts_ms`` on the local wall clock (ms since 1970-01-01 00:00 local)."""
        if self.fixed is not None:
            return ts_ms + self.fixed
        return ts_ms + self._offsets[max(0, bisect_right(self._changes, ts_ms) - 1)]


def _fixed(zone: str) -> bool:
    """Whether ``zone`` is UTC or a fixed offset (never changes: nothing to sample)."""
    return zone in ("UTC", "Z", "Etc/UTC") or zone[:1] in "+-" or zone.startswith("UTC")
