"""Segment sizes over time and the migration matrix, from the stored segment history.

Both are *point in time*: a twin counts in the segment it was in at each instant asked
(its latest ``<product>.segment`` written at or before it, the twin's own last-writer-wins
rule across its devices), scored by the model whose ref the device wrote with that
segment (``<product>.segment_model``, stamped just after it). An erased twin's points are
gone from InfluxDB (cloud_hub.privacy), so it is gone from every past size too, as the
customer asked.

Sizes are counted with one read of the range (plus the last values before it) and a
difference array per (model, segment): a twin adds +1 where it enters a state and -1
where it leaves, so the cost is the points read plus the steps, not twins x steps.
Before reading, the points in range are counted: more than :data:`MAX_ROWS` is refused
with what to narrow, so a hostile range cannot make the hub hold millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import MODEL_FIELDS, PRODUCTS

from ._history import MAX_ROWS
from ._influx import InfluxStore, quote_ident, quote_str
from ._lines import MEASUREMENT_OF

__all__ = ["MAX_STEPS", "SegmentSizes", "segment_at", "segment_migration", "segment_sizes"]

#: most instants one sizes request counts at
MAX_STEPS = 1_000

# (model ref, segment) a twin is in; either may be None (a ref not written yet)
_State = tuple[str | None, int | None]


@dataclass
class SegmentSizes:
    """Twin counts per (model, segment) at each of ``times_ms``; ``totals`` the twins
    holding any segment (of the asked model, when one is asked) at each instant."""

    times_ms: list[int]
    series: list[dict[str, Any]] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)


def _fields(product: str) -> tuple[str, str, str]:
    """The segment field, its model-ref field and their (one) measurement, quoted."""
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of: {', '.join(sorted(PRODUCTS))}")
    seg, ref = MODEL_FIELDS[(product, "segment")], MODEL_FIELDS[(product, "segment_model")]
    assert MEASUREMENT_OF[seg] == MEASUREMENT_OF[ref]  # one class: one measurement
    return quote_ident(seg), quote_ident(ref), quote_ident(MEASUREMENT_OF[seg])


def _series(result: dict[str, Any]) -> list[dict[str, Any]]:
    return list(result.get("series", []) or [])


async def segment_at(
    store: InfluxStore, brand: str, product: str, times_ns: list[int]
) -> list[dict[str, int]]:
    """Per instant of ``times_ns``, each twin's ``product`` segment then (twin -> segment;
    twins without one then are absent)."""
    seg, _ref, measurement = _fields(product)
    where = f'"brand" = {quote_str(brand)}'
    results = await store.query(
        ";".join(
            f'SELECT last({seg}) FROM {measurement} WHERE {where} AND time <= {t} GROUP BY "twin"'
            for t in times_ns
        )
    )
    return [
        {s["tags"]["twin"]: int(s["values"][0][1]) for s in _series(result)} for result in results
    ]


async def segment_sizes(
    store: InfluxStore,
    brand: str,
    product: str,
    start_ns: int,
    end_ns: int,
    step_ns: int,
    model: str | None = None,
) -> SegmentSizes:
    """Twins per (model, segment) of ``product`` at start, start + step, ... (< end);
    only the segments ``model`` scored when it is given. Raises ValueError for an
    unknown product, OverflowError for more steps or points than a request may hold."""
    seg, ref, measurement = _fields(product)
    steps = -(-(end_ns - start_ns) // step_ns)
    if steps > MAX_STEPS:
        need_ms = -(-(end_ns - start_ns) // MAX_STEPS) // 1_000_000 + 1
        raise OverflowError(
            f"{steps} steps; at most {MAX_STEPS} per request: use step={need_ms}ms "
            "or larger, or a shorter range"
        )
    where = f'"brand" = {quote_str(brand)}'
    inside = f"{where} AND time > {start_ns} AND time < {end_ns}"
    counted = await store.query(
        f"SELECT count({seg}), count({ref}) FROM {measurement} WHERE {inside}"
    )
    rows = sum(int(v or 0) for s in _series(counted[0]) for v in s["values"][0][1:])
    if rows > MAX_ROWS:
        raise OverflowError(
            f"{rows} segment points in the range; at most {MAX_ROWS} per request: "
            "ask for a shorter range"
        )
    results = await store.query(
        f"SELECT last({seg}) FROM {measurement} WHERE {where} AND time <= {start_ns} "
        'GROUP BY "twin";'
        f"SELECT last({ref}) FROM {measurement} WHERE {where} AND time <= {start_ns} "
        'GROUP BY "twin";'
        f'SELECT {seg}, {ref} FROM {measurement} WHERE {inside} GROUP BY "twin"'
    )
    first: dict[str, list[Any]] = {}
    for i, result in enumerate(results[:2]):
        for s in _series(result):
            first.setdefault(s["tags"]["twin"], [None, None])[i] = s["values"][0][1]
    later = {s["tags"]["twin"]: s["values"] for s in _series(results[2])}
    diff: dict[_State, list[int]] = {}

    def add(state: _State, index: int, delta: int) -> None:
        if state[1] is None or index >= steps or (model is not None and state[0] != model):
            return
        diff.setdefault(state, [0] * (steps + 1))[index] += delta

    for twin in first.keys() | later.keys():
        segment, ref_value = first.get(twin, [None, None])
        state: _State = (ref_value, None if segment is None else int(segment))
        since = 0
        # InfluxDB merges the twin's devices into one series, oldest first.
        for ts, seg_value, ref_now in later.get(twin, []):
            new = (
                state[0] if ref_now is None else str(ref_now),
                state[1] if seg_value is None else int(seg_value),
            )
            if new == state:
                continue
            at = -(-(ts - start_ns) // step_ns)  # the first instant at or after ts
            if at > since:  # the old state held at the instants [since, at)
                add(state, since, 1)
                add(state, at, -1)
            since = at
            state = new
        add(state, since, 1)
        add(state, steps, -1)
    sizes = SegmentSizes(times_ms=[(start_ns + i * step_ns) // 1_000_000 for i in range(steps)])
    totals = [0] * steps
    for (ref_value, segment), deltas in sorted(
        diff.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])
    ):
        counts, running = [], 0
        for i in range(steps):
            running += deltas[i]
            counts.append(running)
            totals[i] += running
        if any(counts):
            sizes.series.append({"model": ref_value, "segment": segment, "twins": counts})
    sizes.totals = totals
    return sizes


async def segment_migration(
    store: InfluxStore, brand: str, product: str, from_ns: int, to_ns: int
) -> dict[str, Any]:
    """Who moved where between two instants: a cell per (segment at ``from``, segment at
    ``to``) with its twin count; ``from`` None is a twin that entered the population
    (no segment at ``from``), ``to`` None one that left it (its segment values are gone:
    expired by retention or withdrawn). Also each segment's size at both instants."""
    before, after = await segment_at(store, brand, product, [from_ns, to_ns])
    cells: dict[tuple[int | None, int | None], int] = {}
    for twin in before.keys() | after.keys():
        key = (before.get(twin), after.get(twin))
        cells[key] = cells.get(key, 0) + 1

    def order(key: tuple[int | None, int | None]) -> tuple[int, int]:
        return (-1 if key[0] is None else key[0], -1 if key[1] is None else key[1])

    def sizes(of: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for segment in of.values():
            out[str(segment)] = out.get(str(segment), 0) + 1
        return dict(sorted(out.items(), key=lambda kv: int(kv[0])))

    return {
        "cells": [
            {"from": a, "to": b, "twins": n}
            for (a, b), n in sorted(cells.items(), key=lambda kv: order(kv[0]))
        ],
        "sizes_from": sizes(before),
        "sizes_to": sizes(after),
        "entered": sum(n for (a, _b), n in cells.items() if a is None),
        "left": sum(n for (_a, b), n in cells.items() if b is None),
        "moved": sum(n for (a, b), n in cells.items() if None not in (a, b) and a != b),
        "stayed": sum(n for (a, b), n in cells.items() if a is not None and a == b),
    }
