"""Segment changes: when a customer's segment (as the device models see it) changed.

Devices write ``<product>.segment`` whenever their model's answer changes (and on first
scoring); here those points are read back in time order per twin and turned into change
events ``{twin, time_ms, device, from, to, model}``. A first segment is an event with
``from = None``. Merge across devices is the twin's own rule: the latest write wins, so
two devices of one customer disagreeing shows up as changes, which is what happened.
"""

from __future__ import annotations

import bisect
from typing import Any

from protocol import HLC, MODEL_FIELDS, PRODUCTS

from ._influx import InfluxStore, quote_ident, quote_str
from ._lines import MEASUREMENT_OF

__all__ = ["MAX_CHANGES", "segment_changes"]

# The agent writes a segment and its model ref as two ops stamped one after the other.
_SAME_SCORING_NS = 1_000_000

#: most change events one call returns
MAX_CHANGES = 10_000


async def segment_changes(
    store: InfluxStore, brand: str, product: str, start_ns: int, end_ns: int, limit: int
) -> list[dict[str, Any]]:
    """Change events of ``product``'s segment for every twin of ``brand`` in [start, end)."""
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of: {', '.join(sorted(PRODUCTS))}")
    seg, ref = MODEL_FIELDS[(product, "segment")], MODEL_FIELDS[(product, "segment_model")]
    # The segment before the range starts, so the first change in range has its "from".
    where = f'"brand" = {quote_str(brand)}'
    # A segment and its model ref are of one class, so one measurement holds both.
    assert MEASUREMENT_OF[seg] == MEASUREMENT_OF[ref]
    measurement = quote_ident(MEASUREMENT_OF[seg])
    results = await store.query(
        f"SELECT last({quote_ident(seg)}) FROM {measurement} WHERE {where} "
        f'AND time < {start_ns} GROUP BY "twin";'
        f"SELECT {quote_ident(seg)}, {quote_ident(ref)} FROM {measurement} WHERE {where} "
        f'AND time >= {start_ns} AND time < {end_ns} GROUP BY "twin", "device"'
    )
    before = {s["tags"]["twin"]: s["values"][0][1] for s in results[0].get("series", []) or []}
    rows: dict[str, list[tuple[int, str, int | None, str | None]]] = {}
    for s in results[1].get("series", []) or []:
        twin, device = s["tags"]["twin"], s["tags"]["device"]
        rows.setdefault(twin, []).extend(
            (ts, device, None if v is None else int(v), m) for ts, v, m in s["values"]
        )
    events: list[dict[str, Any]] = []
    for twin, twin_rows in rows.items():
        twin_rows.sort(key=lambda r: r[0])
        refs = _refs_by_device(twin_rows)
        current = before.get(twin)
        for ts, device, value, _model in twin_rows:
            if value is None or value == current:
                continue
            events.append(
                {
                    "twin": twin,
                    "time_ms": HLC.from_ns(ts).ms,
                    "device": device,
                    "from": current,
                    "to": value,
                    "model": _model_at(refs.get(device), ts),
                }
            )
            current = value
    events.sort(key=lambda e: (e["time_ms"], e["twin"]))
    if len(events) > limit:
        raise OverflowError(f"more than {limit} segment changes: narrow the range")
    return events


def _refs_by_device(
    rows: list[tuple[int, str, int | None, str | None]],
) -> dict[str, tuple[list[int], list[str]]]:
    """Per device, the times and values of its model-ref points (``rows`` are time-sorted)."""
    refs: dict[str, tuple[list[int], list[str]]] = {}
    for ts, device, _value, model in rows:
        if model is not None:
            times, models = refs.setdefault(device, ([], []))
            times.append(ts)
            models.append(model)
    return refs


def _model_at(refs: tuple[list[int], list[str]] | None, ts: int) -> str | None:
    """The device's model ref for a segment at ``ts``: written with it, or the last before."""
    if refs is None:
        return None
    times, models = refs
    i = bisect.bisect_right(times, ts + _SAME_SCORING_NS)
    return models[i - 1] if i else None
