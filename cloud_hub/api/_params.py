"""serve: strict parsing of query and path parameters (every number the API takes).

``int()`` accepts ``"１２"`` (full-width digits), ``"1_000"`` and ``" 12 "``, and
``str.isdigit()`` accepts ``"²"``, which ``int()`` then refuses: neither is a check. Here a
number is 1 to :data:`MAX_DIGITS` ASCII digits, within the bounds the route states, or
the request is answered 400 with what to send instead, before anything reaches InfluxDB.
Times are Unix milliseconds within what InfluxDB can store (:data:`MAX_TIME_MS`). Every
refusal is a :class:`~cloud_hub.RequestError` (``bad_<name>``), answered by the API's one
error path (cloud_hub.api._errors).
"""

from __future__ import annotations

from aiohttp import web

from cloud_hub._errors import RequestError
from protocol import TwinSyncError, check_brand, check_twin

from ._context import CLOCK

__all__ = [
    "DEFAULT_RANGE_MS",
    "MAX_DIGITS",
    "MAX_TIME_MS",
    "ascii_int",
    "path_brand",
    "path_twin",
    "query_int",
    "query_text",
    "query_time_ns",
    "time_range_ns",
]

#: longest number accepted (a Unix time in ns has 19 digits; nothing here needs more)
MAX_DIGITS = 19
#: the latest time accepted (2255-03-14): InfluxDB stores times as int64 ns, up to
#: about 9.22e18, and a range end must stay below that
MAX_TIME_MS = 9_000_000_000_000
#: the range of a read that names no ``start``: the last 7 days
DEFAULT_RANGE_MS = 7 * 86_400_000


def ascii_int(raw: str, lo: int, hi: int) -> int | None:
    """``raw`` as an int in [lo, hi] if it is 1 to MAX_DIGITS ASCII digits, else None."""
    if not (0 < len(raw) <= MAX_DIGITS and raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if lo <= value <= hi else None


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """Query parameter ``name`` as an int in [lo, hi] (``default`` when absent)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    value = ascii_int(raw, lo, hi)
    if value is None:
        raise RequestError(f"{name} must be a whole number from {lo} to {hi}", reason=f"bad_{name}")
    return value


def query_time_ns(
    request: web.Request, name: str, default_ms: int, *, raw: str | None = None
) -> int:
    """Query parameter ``name`` (or ``raw``) as Unix ms, returned in ns."""
    text = request.query.get(name) if raw is None else raw
    if text is None:
        return default_ms * 1_000_000
    value = ascii_int(text, 0, MAX_TIME_MS)
    if value is None:
        raise RequestError(
            f"{name} must be a time in Unix milliseconds (ASCII digits) from 0 to {MAX_TIME_MS}",
            reason=f"bad_{name}",
        )
    return value * 1_000_000


def query_text(request: web.Request, name: str, max_len: int) -> str | None:
    """Query parameter ``name`` (None when absent) if it is printable ASCII of at most
    ``max_len`` characters."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not (len(raw) <= max_len and raw.isascii() and raw.isprintable()):
        raise RequestError(
            f"{name} must be at most {max_len} printable ASCII characters", reason=f"bad_{name}"
        )
    return raw


def time_range_ns(request: web.Request) -> tuple[int, int]:
    """``start`` and ``end`` (Unix ms; default the last 7 days by the hub's clock) in ns,
    start < end."""
    now_ms = request.app[CLOCK].now_ms()
    end = query_time_ns(request, "end", now_ms + 1)
    start = query_time_ns(request, "start", max(0, now_ms - DEFAULT_RANGE_MS))
    if start >= end:
        raise RequestError("start must be before end", reason="bad_range")
    return start, end


def path_brand(request: web.Request) -> str:
    """The path's ``{brand}``, checked (400 ``bad_brand``)."""
    try:
        return check_brand(request.match_info["brand"])
    except TwinSyncError as exc:
        raise RequestError(str(exc), reason="bad_brand") from None


def path_twin(request: web.Request) -> str:
    """The path's ``{twin}``, checked (400 ``bad_twin``)."""
    try:
        return check_twin(request.match_info["twin"])
    except TwinSyncError as exc:
        raise RequestError(str(exc), reason="bad_twin") from None
