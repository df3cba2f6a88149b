"""Twin queries on the index, on a real SQLite file and a real PostgreSQL database,
against the same filters evaluated in Python over the data written.

Three hundred twins with random values of numeric, boolean and text fields, behaviour
tags and products; every filter of :data:`FILTERS` and every sort of :data:`SORTS`,
paged seven at a time, both ways a page can be read (along the sort order's index and
through the filter's most selective condition): the same twins in the same order, each
once, and the same count, capped as asked.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from cloud_hub.store import (
    And,
    Compare,
    Filter,
    HasProduct,
    HasTag,
    IndexReader,
    Not,
    OneOf,
    Or,
    Position,
    SortKey,
    StateStore,
    TwinColumn,
    TwinIndex,
)
from protocol import HLC

BRAND = "acme"
N = 300
T0 = 1_700_000_000_000


def dataset() -> dict[str, dict[str, Any]]:
    rnd = random.Random(5)
    twins: dict[str, dict[str, Any]] = {}
    for i in range(N):
        values: dict[str, Any] = {}
        if rnd.random() < 0.8:
            values["coffee.strength"] = rnd.randrange(1, 6)
            values["coffee.churn_risk"] = round(rnd.random(), 3)
            values["coffee.tag_weekend_heavy"] = rnd.random() < 0.3
        if rnd.random() < 0.5:
            values["thermostat.mode"] = rnd.choice(["eco", "heat", "Off", "o'x"])
            values["thermostat.setpoint_c"] = round(rnd.uniform(15, 25), 1)
        if rnd.random() < 0.3:
            values["tv.power"] = rnd.random() < 0.5
            values["tv.churn_risk"] = round(rnd.random(), 3)
            values["tv.tag_weekend_heavy"] = rnd.random() < 0.5
        if values:  # (a twin with no value is no twin: nothing of it is stored)
            values["seen"] = T0 + rnd.randrange(0, 50) * 1000  # ties on purpose
            twins[f"1-{i:032x}"] = values
    return twins


DATA = dataset()


def churn(v: dict[str, Any]) -> float | None:
    risks = [v[f] for f in ("coffee.churn_risk", "tv.churn_risk") if f in v]
    return max(risks) if risks else None


def holds(node: Filter, v: dict[str, Any]) -> bool:
    ops = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    if isinstance(node, Compare):
        value = v.get(node.field)
        if value is None:
            return False
        return ops[node.op](float(value) if not isinstance(value, str) else value, node.value)
    if isinstance(node, OneOf):
        value = v.get(node.field)
        return (
            value is not None
            and (float(value) if not isinstance(value, str) else value) in node.values
        )
    if isinstance(node, HasTag):
        return any(
            v.get(f"{p}.tag_{node.tag}") is True for p in ("coffee", "thermostat", "tv", "wearable")
        )
    if isinstance(node, HasProduct):
        return any(k.startswith(node.product + ".") for k in v)
    if isinstance(node, TwinColumn):
        own = {"last_seen": v["seen"], "first_seen": v["seen"], "churn_risk": churn(v)}[node.name]
        return own is not None and ops[node.op](own, node.value)
    if isinstance(node, Not):
        return not holds(node.part, v)
    if isinstance(node, And):
        return all(holds(p, v) for p in node.parts)
    assert isinstance(node, Or)
    return any(holds(p, v) for p in node.parts)


FILTERS: list[Filter | None] = [
    None,
    Compare("coffee.strength", ">=", 4.0),
    Compare("coffee.strength", "!=", 3.0),
    Not(Compare("coffee.strength", "=", 3.0)),
    OneOf("thermostat.mode", ("eco", "o'x")),
    Compare("thermostat.mode", "<", "f"),
    Compare("tv.power", "=", 1.0),
    HasTag("weekend_heavy"),
    HasProduct("tv"),
    Not(HasProduct("coffee")),
    TwinColumn("churn_risk", ">", 0.8),
    Not(TwinColumn("churn_risk", ">", 0.5)),
    TwinColumn("last_seen", ">=", T0 + 40_000),
    And((Compare("coffee.churn_risk", ">", 0.5), HasProduct("thermostat"))),
    And(
        (
            HasTag("weekend_heavy"),
            Not(Compare("thermostat.mode", "=", "eco")),
            TwinColumn("last_seen", "<", T0 + 30_000),
        )
    ),
    Or((Compare("thermostat.setpoint_c", ">", 24.0), Compare("tv.churn_risk", "<", 0.1))),
    Or((HasProduct("tv"), Not(Compare("coffee.strength", ">", 1.0)))),
    And(
        (Or((OneOf("coffee.strength", (1.0, 5.0)), HasTag("weekend_heavy"))), Not(HasProduct("tv")))
    ),
    Compare("coffee.strength", ">", 99.0),
]
SORTS = [
    SortKey(),
    SortKey("twin", True),
    SortKey("last_seen", True),
    SortKey("first_seen"),
    SortKey("churn_risk", True),
    SortKey("coffee.churn_risk"),
    SortKey("thermostat.mode", True),
    SortKey("tv.power"),
]


def expected(where: Filter | None, sort: SortKey) -> list[str]:
    matching = [t for t, v in DATA.items() if where is None or holds(where, v)]

    def key_value(v: dict[str, Any]) -> Any:
        if sort.key == "twin":
            return None
        if sort.key in ("last_seen", "first_seen"):
            return v["seen"]
        if sort.key == "churn_risk":
            return churn(v)
        return v.get(sort.key)

    if sort.key == "twin":
        return sorted(matching, reverse=sort.descending)
    having = [t for t in matching if key_value(DATA[t]) is not None]
    lacking = sorted(t for t in matching if key_value(DATA[t]) is None)
    ordered = sorted(having, key=lambda t: (key_value(DATA[t]), t), reverse=sort.descending)
    return ordered + lacking


@pytest.fixture
def filled(store: StateStore) -> StateStore:
    ops = []
    for twin, values in DATA.items():
        for field, value in values.items():
            if field != "seen":
                ops.append((BRAND, twin, "dev-0", field, HLC(values["seen"], 0).pack(), value))
    # another brand holding the same twin ids: never in this brand's answers
    ops += [("other", t, "dev-9", "coffee.strength", HLC(T0, 0).pack(), 4) for t in list(DATA)[:50]]
    TwinIndex(state=store).apply(ops)
    return store


def pages(
    reader: IndexReader, where: Filter | None, sort: SortKey, way: Any
) -> tuple[list[str], int]:
    got: list[str] = []
    after: Position | None = None
    count = -1
    while True:
        page = reader.query(BRAND, where, sort, 7, after, way=way)
        count = page.count if count == -1 else count
        got += [item["twin"] for item in page.items]
        if page.next is None:
            return got, count
        after = page.next


def test_every_filter_and_sort_both_ways_gives_the_python_answer(filled: StateStore) -> None:
    reader = IndexReader(state=filled)
    for where in FILTERS:
        for sort in SORTS:
            want = expected(where, sort)
            for way in ("along", "through", "cheaper"):
                got, count = pages(reader, where, sort, way)
                assert got == want, (where, sort, way)
                assert count == len(want), (where, sort, way)


def test_the_count_stops_at_the_cap(filled: StateStore) -> None:
    reader = IndexReader(state=filled)
    page = reader.query(BRAND, None, SortKey(), 5, cap=100)
    assert page.count == 101  # "more than 100"
    assert len(page.items) == 5
    matches = len(expected(HasProduct("coffee"), SortKey()))
    assert reader.query(BRAND, HasProduct("coffee"), SortKey(), 5, cap=matches).count == matches


def test_items_say_products_devices_segments_tags_and_fields(filled: StateStore) -> None:
    page = IndexReader(state=filled).query(
        BRAND, HasTag("weekend_heavy"), SortKey(), 300, fields=["coffee.strength", "tv.power"]
    )
    assert page.items
    for item in page.items:
        v = DATA[item["twin"]]
        assert item["tags"] == ["weekend_heavy"]
        assert item["fields"] == {k: v[k] for k in ("coffee.strength", "tv.power") if k in v}
        assert item["products"] == sorted({k.split(".")[0] for k in v if k != "seen"})
        assert item["devices"] == ["dev-0"]
        assert item["churn_risk"] == churn(v)
        assert item["last_seen_ms"] == item["first_seen_ms"] == v["seen"]
