"""Twin queries over a large index (``twinsync bench --sections query``).

100,000 twins are written straight through the index's writer (``TwinIndex.apply``, as
ingest writes them, in batches of 20,000 ops) with a realistic spread: one or two
products per twin, a device per product (two coffee machines for some), every usage
field of the product, its segment, churn risk and anomaly count with their model refs,
its 19 to 24 features, two behaviour tags, and last-seen times spread over two months.
Then each query of :data:`QUERIES` runs as the route runs it (a page of 100 and the
capped count, one read-only transaction each) many times, and its latencies are
compared with a reference measured in the same run on the same store: reading one twin
by its key (its row and its fields), which no query can beat. Both state stores: the
SQLite file and PostgreSQL (the launcher's, on this machine).
"""

from __future__ import annotations

import functools
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_hub.api import COUNT_CAP, parse_where
from cloud_hub.store import (
    IndexOp,
    IndexReader,
    Position,
    SortKey,
    StateStore,
    TwinIndex,
    open_state_store,
)
from protocol import FIELDS, HLC, MODEL_FIELDS, PRODUCTS, Scalar
from twinsync.services import Postgres

__all__ = ["QUERIES", "QueryRun", "query_bench"]

BRAND = "bench"
DAY = 86_400_000
#: (label, where, sort, pages deep): the route's work for each, limit 100
QUERIES: tuple[tuple[str, str, str, int], ...] = (
    ("churn > 0.7", "coffee.churn_risk > 0.7", "", 0),
    (
        "churn > 0.7, active 7d, riskiest first",
        "coffee.churn_risk > 0.7 and last_seen > -7d",
        "-coffee.churn_risk",
        0,
    ),
    (
        "... page 20 of it (cursor)",
        "coffee.churn_risk > 0.7 and last_seen > -7d",
        "-coffee.churn_risk",
        20,
    ),
    (
        "segment in (1,3) and product tv, newest",
        "coffee.segment in (1, 3) and product = tv",
        "-last_seen",
        0,
    ),
    (
        "tag and twin churn, by churn",
        "tag has weekend_heavy and churn_risk > 0.5",
        "-churn_risk",
        0,
    ),
    ("text or text, by text", "thermostat.mode = eco or tv.genre = news", "thermostat.mode", 0),
    ("two features", "coffee.f_habit_strength > 0.8 and coffee.f_trend_7_vs_21 < -0.2", "", 0),
    (
        "not coffee, new in 30d, oldest first",
        "not product = coffee and first_seen > -30d",
        "first_seen",
        0,
    ),
    ("everyone, newest first, page 50", "", "-last_seen", 50),
    ("nothing matches, sorted by a field", "coffee.churn_risk > 2", "-coffee.churn_risk", 0),
    ("one segment of all (big count)", "coffee.segment = 2", "", 0),
)


@dataclass
class QueryRun:
    """Latencies of one query on one backend, in ms."""

    backend: str
    label: str
    p50: float
    p99: float
    matches: int


def _value(field: str, rnd: random.Random, product_risk: float) -> Scalar:
    spec = FIELDS[field]
    name = field.split(".", 1)[1]
    if name == "churn_risk":
        return round(product_risk, 4)
    if name == "segment":
        return rnd.choices(range(6), weights=(30, 25, 18, 12, 10, 5))[0]
    if name.endswith("_model"):
        return f"{name.removesuffix('_model')}-{spec.product}@{rnd.choice((3, 4))}"
    if name == "anomalies_total":
        return rnd.choices((0, 1, 2, 5), weights=(85, 10, 4, 1))[0]
    if spec.type == "bool":
        return rnd.random() < 0.3
    if spec.type == "str":
        return rnd.choice(
            ("eco", "heat", "cool", "off")
            if "mode" in name
            else ("news", "sports", "movies", "kids", "drama")
        )
    if spec.type == "int":
        return rnd.randrange(0, 5000) if spec.merge == "counter" else rnd.randrange(1, 6)
    if name.startswith(("f_share", "f_habit_share")):
        return round(rnd.random(), 4)
    if name.startswith(("f_trend", "f_uses_vs")):
        return round(rnd.gauss(0, 0.4), 4)
    return round(rnd.lognormvariate(0, 0.8), 4)


def fleet_ops(twins: int, now_ms: int, seed: int = 7) -> list[list[IndexOp]]:
    """The ops of ``twins`` twins, one list per twin (module docstring)."""
    rnd = random.Random(seed)
    by_product = {
        p: [f for f, s in FIELDS.items() if s.product == p and s.shared] for p in PRODUCTS
    }
    out = []
    for i in range(twins):
        twin = f"1-{rnd.getrandbits(128):032x}"
        products = rnd.sample(sorted(PRODUCTS), rnd.choices((1, 2), weights=(70, 30))[0])
        last = now_ms - int(rnd.expovariate(1 / (8 * DAY))) % (60 * DAY)
        first = last - rnd.randrange(0, 300) * DAY
        ops: list[IndexOp] = []
        for product in products:
            devices = [f"{product}-{i:06d}"] + (
                [f"{product}-{i:06d}b"] if product == "coffee" and rnd.random() < 0.1 else []
            )
            risk = rnd.betavariate(1.2, 4)
            for field in by_product[product]:
                device = rnd.choice(devices)
                at = rnd.randrange(first, last + 1) if rnd.random() < 0.3 else last
                ops.append(
                    (BRAND, twin, device, field, HLC(at, 0).pack(), _value(field, rnd, risk))
                )
            for tag in ("weekend_heavy", "evening_routine"):
                ops.append(
                    (
                        BRAND,
                        twin,
                        devices[0],
                        f"{product}.tag_{tag}",
                        HLC(last, 1).pack(),
                        rnd.random() < 0.2,
                    )
                )
            ops.append(
                (
                    BRAND,
                    twin,
                    devices[0],
                    MODEL_FIELDS[(product, "segment")],
                    HLC(first, 0).pack(),
                    0,
                )
            )
        out.append(ops)
    return out


def _fill(
    state: StateStore, twins: int, now_ms: int, settle: Callable[[], None] | None = None
) -> float:
    """Write the fleet through the index's writer; return the seconds it took. Then the
    database settles as it would after a while in service (``settle``: PostgreSQL's
    VACUUM ANALYZE, what autovacuum does; SQLite: ANALYZE)."""
    index = TwinIndex(state=state)
    t0 = time.perf_counter()
    batch: list[IndexOp] = []
    for ops in fleet_ops(twins, now_ms):
        batch += ops
        if len(batch) >= 20_000:
            index.apply(batch)
            batch = []
    if batch:
        index.apply(batch)
    seconds = time.perf_counter() - t0
    if settle is not None:
        settle()
    else:
        with state.transaction() as tx:
            tx.execute("ANALYZE")  # the statistics 'PRAGMA optimize' keeps up
    return seconds


def _times(run: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        run()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _measure(backend: str, state: StateStore, now_ms: int, runs: int) -> list[QueryRun]:
    reader = IndexReader(state=state)
    with state.transaction(readonly=True) as tx:
        sample = [
            r[0]
            for r in tx.execute("SELECT twin FROM twin_index WHERE brand = ? LIMIT 500", (BRAND,))
        ]
    rnd = random.Random(3)

    def lookup() -> None:
        twin = rnd.choice(sample)
        with state.transaction(readonly=True) as tx:
            tx.execute("SELECT * FROM twin_index WHERE brand = ? AND twin = ?", (BRAND, twin))
            tx.execute("SELECT * FROM twin_fields WHERE brand = ? AND twin = ?", (BRAND, twin))

    ref = _times(lookup, runs)
    out = [QueryRun(backend, "reference: one twin by its key", _p(ref, 50), _p(ref, 99), 1)]
    for label, where_text, sort_text, depth in QUERIES:
        where = parse_where(where_text, now_ms) if where_text else None
        sort = SortKey(sort_text.removeprefix("-") or "twin", sort_text.startswith("-"))
        after: Position | None = None
        for _ in range(depth):  # walk to the page the query resumes from
            after = reader.query(BRAND, where, sort, 100, after, cap=COUNT_CAP).next
        query = functools.partial(reader.query, BRAND, where, sort, 100, after, cap=COUNT_CAP)
        matches = query().count
        times = _times(query, runs)
        out.append(QueryRun(backend, label, _p(times, 50), _p(times, 99), matches))
    return out


def query_bench(tmp: Path, *, twins: int = 100_000, runs: int = 200) -> dict[str, Any]:
    """The section: fill and query both backends; figures for the report."""
    now_ms = time.time_ns() // 1_000_000
    figures: dict[str, Any] = {"twins": twins, "runs": runs, "results": [], "fill_s": {}}
    with open_state_store(f"sqlite:///{tmp / 'index.sqlite'}") as lite:
        figures["fill_s"]["sqlite"] = _fill(lite, twins, now_ms)
        figures["results"] += [r.__dict__ for r in _measure("sqlite", lite, now_ms, runs)]
        figures["rows"] = _rows(lite)
    with Postgres(tmp / "postgres") as server:
        db = server.create_database("bench_index")
        with open_state_store(db.url, password=db.password) as pg:

            def vacuum() -> None:
                with server.connect(db.name) as conn:  # (autocommit: VACUUM needs it)
                    conn.execute("VACUUM ANALYZE")

            figures["fill_s"]["postgresql"] = _fill(pg, twins, now_ms, vacuum)
            figures["results"] += [r.__dict__ for r in _measure("postgresql", pg, now_ms, runs)]
    return figures


def _rows(state: StateStore) -> dict[str, int]:
    with state.transaction(readonly=True) as tx:
        return {
            t: int(tx.execute(f"SELECT COUNT(*) FROM {t}").scalar())
            for t in ("twin_index", "twin_fields", "twin_counter_parts", "twin_products")
        }
