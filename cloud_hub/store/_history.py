"""serve (read side): a twin field's history, bounded before InfluxDB is asked.

Two shapes (docs/hub.md, "History"):

- **raw points**, in pages: ``limit`` points (default :data:`DEFAULT_PAGE`, at most
  :data:`MAX_PAGE`) in (time, device) order, and a cursor for the next page when there
  are more. The cursor is the last point's ``<time_ns>-<device>``; the next page asks
  each device for its points from that time on and keeps those after the cursor, so a
  page boundary inside one nanosecond neither repeats nor skips a point;
- **buckets** (``every``): one value per ``GROUP BY time()`` bucket. Their number is
  computed from the range and ``every`` (aligned to the epoch, as InfluxDB aligns them)
  *before* querying, and more than :data:`MAX_BUCKETS` is refused with the ``every`` and
  the range that would fit.

Either way InfluxDB reads at most about :data:`MAX_ROWS` rows for one request: a counter's
buckets are read per device, and so are raw pages, so a twin with very many devices gets
a 400 asking for a larger ``every`` or a smaller ``limit`` instead of a huge read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol import FIELDS, HLC, TwinSyncError, check_device

from ._influx import InfluxStore, quote_ident
from ._lines import MEASUREMENT_OF

__all__ = [
    "DEFAULT_PAGE",
    "MAX_BUCKETS",
    "MAX_EVERY_MS",
    "MAX_PAGE",
    "MAX_ROWS",
    "Cursor",
    "bucket_advice",
    "bucket_count",
    "buckets",
    "parse_duration_ms",
    "raw_page",
]

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: the longest ``every`` (10 years); GROUP BY time() takes it as an int64 of ns
MAX_EVERY_MS = 3650 * 86_400_000
#: buckets one request may ask for (InfluxDB's own max-select-buckets is set far above)
MAX_BUCKETS = 10_000
#: raw points one page holds at most, and by default
MAX_PAGE = 10_000
DEFAULT_PAGE = 1_000
#: rows one request may make InfluxDB read and the hub hold (about 10 MB of JSON)
MAX_ROWS = 200_000


def parse_duration_ms(text: str) -> int:
    """``"15m"`` -> 900000. Raises ValueError on anything else (ASCII digits only: int()
    would also take "１５", "1_5" and " 15")."""
    for unit in ("ms", "s", "m", "h", "d"):
        if text.endswith(unit):
            number = text[: -len(unit)]
            if 0 < len(number) <= 12 and number.isascii() and number.isdigit():
                value = int(number) * _UNITS[unit]
                if 0 < value <= MAX_EVERY_MS:
                    return value
            break
    raise ValueError(
        f"invalid duration {text[:40]!r}: use a whole number and a unit, e.g. 500ms, 30s, "
        "15m, 1h, 7d (at most 3650d)"
    )


def bucket_count(start_ns: int, end_ns: int, every_ms: int) -> int:
    """How many ``every`` buckets InfluxDB makes for [start, end): they are aligned to
    the epoch, so a range can touch one more than its length divided by ``every``."""
    every_ns = every_ms * 1_000_000
    return (end_ns - 1) // every_ns - start_ns // every_ns + 1


def bucket_advice(start_ns: int, end_ns: int, every_ms: int) -> str:
    """Why a bucketed request is refused, and the ``every`` or range that would fit."""
    range_ms = max(1, (end_ns - start_ns) // 1_000_000)
    need = -(-range_ms // (MAX_BUCKETS - 2))  # ceil: fits even with epoch alignment
    return (
        f"every={every_ms}ms over {range_ms} ms makes {bucket_count(start_ns, end_ns, every_ms)}"
        f" buckets; at most {MAX_BUCKETS} per request: use every={need}ms or larger, or a "
        f"range (end - start) of at most {every_ms * (MAX_BUCKETS - 1)} ms"
    )


@dataclass(frozen=True)
class Cursor:
    """Where a raw page ended: the last point's time and device."""

    time_ns: int
    device: str

    def encode(self) -> str:
        """The ``after`` value of the next page's URL."""
        return f"{self.time_ns}-{self.device}"

    @staticmethod
    def parse(text: str) -> Cursor:
        """The cursor of an ``after`` value; ValueError if it is not one."""
        ts, _, device = text.partition("-")
        if not (0 < len(ts) <= 19 and ts.isascii() and ts.isdigit()):
            raise ValueError("after must be the 'next' cursor of the previous page")
        try:
            return Cursor(int(ts), check_device(device))
        except TwinSyncError:
            raise ValueError("after must be the 'next' cursor of the previous page") from None


def _series(result: dict[str, Any]) -> list[dict[str, Any]]:
    return result.get("series", []) or []


def _typed(field: str, value: Any) -> Any:
    # InfluxDB's JSON renders the float 21.0 as 21: restore the catalog type.
    if FIELDS[field].type == "float" and not isinstance(value, bool):
        return float(value)
    return value


def _too_many_devices(field: str, cap: int, ask: str) -> OverflowError:
    return OverflowError(f"more than {cap} devices wrote {field} in this range: {ask}")


async def raw_page(
    store: InfluxStore,
    where: str,
    field: str,
    start_ns: int,
    end_ns: int,
    limit: int,
    after: Cursor | None,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Up to ``limit`` points of ``field`` in [start, end) after ``after``, in (time,
    device) order, and the cursor of the next page (None on the last)."""
    col, measurement = quote_ident(field), quote_ident(MEASUREMENT_OF[field])
    low = start_ns if after is None else max(start_ns, after.time_ns)
    # limit + 2 per device: after dropping the one point at the cursor (a series has one
    # point per time), a device with more than limit left still shows it has more.
    per_device = limit + 2
    cap = max(1, MAX_ROWS // per_device)
    results = await store.query(
        f"SELECT {col} FROM {measurement} WHERE {where} AND time >= {low} AND time < {end_ns} "
        f'GROUP BY "device" LIMIT {per_device} SLIMIT {cap + 1}'
    )
    series = _series(results[0])
    if len(series) > cap:
        raise _too_many_devices(field, cap, "ask for fewer points per page (limit)")
    rows = sorted(
        (ts, s["tags"]["device"], v) for s in series for ts, v in s["values"] if v is not None
    )
    if after is not None:
        rows = [r for r in rows if (r[0], r[1]) > (after.time_ns, after.device)]
    page = rows[:limit]
    points = [
        {
            "time_ms": ts // 1_000_000,
            "hlc": HLC.from_ns(ts).pack(),
            "device": device,
            "value": _typed(field, v),
        }
        for ts, device, v in page
    ]
    more = len(rows) > limit
    return points, Cursor(page[-1][0], page[-1][1]) if more else None


async def buckets(
    store: InfluxStore,
    twin_where: str,
    field: str,
    start_ns: int,
    end_ns: int,
    every_ms: int,
) -> list[dict[str, Any]]:
    """One value of ``field`` per ``every`` bucket in [start, end): LWW for lww fields; for
    counters the sum over devices of each device's last cumulative value, carried
    forward. Raises OverflowError past :data:`MAX_BUCKETS` or :data:`MAX_ROWS`."""
    count = bucket_count(start_ns, end_ns, every_ms)
    if count > MAX_BUCKETS:
        raise OverflowError(bucket_advice(start_ns, end_ns, every_ms))
    col, measurement = quote_ident(field), quote_ident(MEASUREMENT_OF[field])
    where = f"{twin_where} AND time >= {start_ns} AND time < {end_ns}"
    counter = FIELDS[field].merge == "counter"
    cap = max(1, MAX_ROWS // count)
    # LWW: last() over all devices of a bucket is the latest HLC (the point time), which is
    # the LWW winner. Counters: each device's last cumulative value, carried forward, so
    # InfluxDB makes a row per bucket per device: at most ``cap`` devices.
    by_device, fill, slimit = (
        (', "device"', "previous", f" SLIMIT {cap + 1}") if counter else ("", "none", "")
    )
    q = (
        f"SELECT last({col}) FROM {measurement} WHERE {where} "
        f"GROUP BY time({every_ms}ms){by_device} fill({fill}){slimit}"
    )
    if counter:
        # Each device's component before the range starts, so sums are right from bucket 1.
        q += (
            f";SELECT last({col}) FROM {measurement} WHERE {twin_where} "
            f'AND time < {start_ns} GROUP BY "device" SLIMIT {cap + 1}'
        )
    results = await store.query(q)
    if counter and len(_series(results[0])) > cap:
        raise _too_many_devices(field, cap, "use a larger every or a shorter range")
    by_bucket: dict[int, dict[str, Any]] = {}
    baseline: dict[str, Any] = {}
    if counter:
        for s in _series(results[1]):
            baseline[s["tags"]["device"]] = s["values"][0][1]
    for s in _series(results[0]):
        device = (s.get("tags") or {}).get("device", "")
        carry = baseline.get(device)
        for ts, raw in s["values"]:
            value_now = carry if raw is None else raw
            carry = value_now
            if value_now is not None:
                by_bucket.setdefault(ts, {})[device] = value_now
    out = []
    for ts in sorted(by_bucket):
        per_device = by_bucket[ts]
        if counter:
            value: Any = sum(per_device[d] for d in sorted(per_device))
        else:
            value = per_device[""]
        out.append(
            {"time_ms": ts // 1_000_000, "value": _typed(field, value), "devices": len(per_device)}
        )
    return out
