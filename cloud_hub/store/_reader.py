"""serve (read side): twins, history and devices, computed from InfluxDB alone.

Nothing here is cached across requests: InfluxDB is the single source of truth, so any
hub instance answers the same. The twin's current value is ``protocol.TwinState`` folded
over each device's latest point per field. Twin fields live in one measurement per field
class (``cloud_hub.store._lines``): a field is read from its own, counts and lists span all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from protocol import FIELDS, HLC, MODEL_FIELDS, Scalar, TwinState

from ._history import Cursor, buckets, raw_page
from ._influx import InfluxStore, quote_ident, quote_str
from ._lines import MEASUREMENT_OF, TWIN_MEASUREMENTS
from ._segment_sizes import SegmentSizes, segment_migration, segment_sizes
from ._segments import segment_changes

__all__ = ["ALL_TWIN_MEASUREMENTS", "TwinReader", "count_values"]

#: ``FROM`` list naming every twin measurement (InfluxQL answers one series per measurement)
ALL_TWIN_MEASUREMENTS = ",".join(quote_ident(m) for m in TWIN_MEASUREMENTS)


def _typed(field: str, value: Any) -> Scalar:
    # InfluxDB's JSON renders the float 21.0 as 21: restore the catalog type.
    if FIELDS[field].type == "float" and not isinstance(value, bool):
        return float(value)
    return value  # type: ignore[no-any-return]


async def count_values(
    store: InfluxStore, where: str, measurements: tuple[str, ...] = TWIN_MEASUREMENTS
) -> int:
    """Field values of ``measurements`` (all twin ones by default) matching ``where``
    (each op is one)."""
    names = ",".join(quote_ident(m) for m in measurements)
    results = await store.query(f"SELECT count(*) FROM {names} WHERE {where}")
    return sum(
        v for s in _series(results[0]) for row in s["values"] for v in row[1:] if isinstance(v, int)
    )


def _series(result: dict[str, Any]) -> list[dict[str, Any]]:
    return result.get("series", []) or []


class _Device(Protocol):
    """What the reader needs of a registry record (cloud_hub.registry.DeviceRecord)."""

    @property
    def device(self) -> str: ...
    @property
    def product(self) -> str: ...
    @property
    def revoked(self) -> bool: ...


class DeviceList(Protocol):
    """The provisioned devices of a brand (cloud_hub.registry.Registry): the reader joins
    them with their liveness points; it sits below the registry, so it takes this."""

    def devices(self, brand: str | None = None) -> Sequence[_Device]: ...


class TwinReader:
    """Queries for the HTTP API."""

    def __init__(
        self,
        store: InfluxStore,
        *,
        devices: DeviceList,
        hidden: Callable[[str, str], frozenset[str]] = lambda _brand, _twin: frozenset(),
    ) -> None:
        self._store = store
        self._devices = devices
        #: (brand, twin) -> fields reads leave out (the customer suppressed them or
        #: objected to profiling; see cloud_hub.privacy._objection)
        self._hidden = hidden

    def _where(self, brand: str, twin: str) -> str:
        return f'"brand" = {quote_str(brand)} AND "twin" = {quote_str(twin)}'

    async def segment_changes(
        self, brand: str, product: str, start_ns: int, end_ns: int, limit: int
    ) -> list[dict[str, Any]]:
        """Segment change events (see _segments.py)."""
        return await segment_changes(self._store, brand, product, start_ns, end_ns, limit)

    async def segment_sizes(
        self,
        brand: str,
        product: str,
        start_ns: int,
        end_ns: int,
        step_ns: int,
        model: str | None = None,
    ) -> SegmentSizes:
        """Segment sizes over time (see _segment_sizes.py)."""
        return await segment_sizes(self._store, brand, product, start_ns, end_ns, step_ns, model)

    async def segment_migration(
        self, brand: str, product: str, from_ns: int, to_ns: int
    ) -> dict[str, Any]:
        """The migration matrix between two instants (see _segment_sizes.py)."""
        return await segment_migration(self._store, brand, product, from_ns, to_ns)

    async def segment_before(
        self, brand: str, product: str, twin: str, before_ns: int
    ) -> int | None:
        """The twin's ``product`` segment just before ``before_ns`` (None if it had none)."""
        name = MODEL_FIELDS[(product, "segment")]
        seg, measurement = quote_ident(name), quote_ident(MEASUREMENT_OF[name])
        results = await self._store.query(
            f"SELECT last({seg}) FROM {measurement} WHERE {self._where(brand, twin)} "
            f"AND time < {before_ns}"
        )
        series = _series(results[0])
        return None if not series else int(series[0]["values"][0][1])

    async def consent(self, brand: str, twin: str) -> list[dict[str, Any]]:
        """The twin's consent ledger as devices reported it, oldest first."""
        results = await self._store.query(
            f'SELECT * FROM "consent" WHERE {self._where(brand, twin)} ORDER BY time'
        )
        out = []
        for s in _series(results[0]):
            cols = s["columns"]
            for row in s["values"]:
                entry = dict(zip(cols, row, strict=True))
                entry["time_ms"] = entry.pop("time") // 1_000_000
                for tag in ("brand", "twin"):
                    entry.pop(tag, None)
                out.append(entry)
        return out

    async def point_count(self, brand: str, twin: str) -> int:
        """How many field values are stored for the twin."""
        return await count_values(self._store, self._where(brand, twin))

    async def retention(self, database: str, policy: str) -> str:
        """How long InfluxDB keeps points ("until erased" for an infinite policy)."""
        results = await self._store.query(f"SHOW RETENTION POLICIES ON {quote_ident(database)}")
        for s in _series(results[0]):
            cols = s["columns"]
            for row in s["values"]:
                rp = dict(zip(cols, row, strict=False))
                if (policy and rp.get("name") == policy) or (not policy and rp.get("default")):
                    duration = str(rp.get("duration", ""))
                    return "until erased" if duration in ("0s", "0") else duration
        return "unknown"

    async def list_twins(self, brand: str, limit: int, after: str | None) -> list[str]:
        """Twin ids of ``brand`` in lexical order, paginated by ``after``."""
        results = await self._store.query(
            f'SHOW TAG VALUES FROM {ALL_TWIN_MEASUREMENTS} WITH KEY = "twin" '
            f'WHERE "brand" = {quote_str(brand)}'
        )
        # A twin with fields of both classes appears once per measurement.
        twins = sorted({v[1] for s in _series(results[0]) for v in s.get("values", [])})
        if after:
            twins = [t for t in twins if t > after]
        return twins[:limit]

    async def state(self, brand: str, twin: str) -> TwinState:
        """The merged state of one twin (empty if it has no points)."""
        where = self._where(brand, twin)
        hidden = self._hidden(brand, twin)
        names = sorted(set(FIELDS) - hidden)
        q = ";".join(
            f"SELECT last({quote_ident(f)}) FROM {quote_ident(MEASUREMENT_OF[f])} WHERE {where} "
            'GROUP BY "device"'
            for f in names
        )
        state = TwinState()
        for name, result in zip(names, await self._store.query(q), strict=True):
            for series in _series(result):
                device = series["tags"]["device"]
                for ts, value in series["values"]:
                    if value is not None:
                        state.apply(device, HLC.from_ns(ts).pack(), name, _typed(name, value))
        return state

    async def history(
        self, brand: str, twin: str, field: str, start_ns: int, end_ns: int, every_ms: int
    ) -> list[dict[str, Any]]:
        """One value of ``field`` per ``every`` bucket in [start, end) (cloud_hub.store._history;
        OverflowError past its caps)."""
        if field in self._hidden(brand, twin):
            return []  # suppressed or objected to: as if never stored
        return await buckets(
            self._store, self._where(brand, twin), field, start_ns, end_ns, every_ms
        )

    async def history_page(
        self,
        brand: str,
        twin: str,
        field: str,
        start_ns: int,
        end_ns: int,
        limit: int,
        after: Cursor | None = None,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """A page of raw points of ``field`` in [start, end) and the next page's cursor
        (cloud_hub.store._history; OverflowError past its caps)."""
        if field in self._hidden(brand, twin):
            return [], None
        where = self._where(brand, twin)
        return await raw_page(self._store, where, field, start_ns, end_ns, limit, after)

    async def devices(self, brand: str) -> list[dict[str, Any]]:
        """Registry devices of ``brand`` joined with their latest liveness point."""
        cols = (
            "online",
            "last_seq",
            "skew_ms",
            "outbox_depth",
            "outbox_bytes",
            "dropped",
            "models",
            "model_failures",
        )
        q = ";".join(
            f'SELECT last({quote_ident(c)}) FROM "device" WHERE "brand" = {quote_str(brand)} '
            f'GROUP BY "device"'
            for c in cols
        )
        latest: dict[str, dict[str, Any]] = {}
        for col, result in zip(cols, await self._store.query(q), strict=True):
            for s in _series(result):
                ts, value = s["values"][0]
                row = latest.setdefault(s["tags"]["device"], {"last_seen_ms": 0})
                row[col] = value
                row["last_seen_ms"] = max(row["last_seen_ms"], ts // 1_000_000)
        out = []
        # The registry is in the state store: read it off the event loop.
        for record in await asyncio.to_thread(self._devices.devices, brand):
            row = latest.get(record.device, {})
            out.append(
                {
                    "device": record.device,
                    "product": record.product,
                    "revoked": record.revoked,
                    "online": bool(row.get("online", False)),
                    "last_seen_ms": row.get("last_seen_ms"),
                    "last_seq": row.get("last_seq"),
                    "skew_ms": row.get("skew_ms"),
                    "outbox_depth": row.get("outbox_depth"),
                    "models": [m for m in (row.get("models") or "").split(",") if m],
                    "model_failures": dict(
                        item.split("=", 1)
                        for item in (row.get("model_failures") or "").split(";")
                        if "=" in item
                    ),
                }
            )
        return out

    async def last_seqs(self) -> list[tuple[str, str, int]]:
        """(brand, device, last written seq) for every device: seeds the replay windows."""
        results = await self._store.query(
            'SELECT last("last_seq") FROM "device" GROUP BY "brand", "device"'
        )
        return [
            (s["tags"]["brand"], s["tags"]["device"], int(s["values"][0][1]))
            for s in _series(results[0])
        ]
