"""The twin query index's writer on a real SQLite file and a real PostgreSQL database.

Whatever the order, the batching and the replays, the index holds what
``protocol.TwinState`` makes of the same ops (the merge the API and InfluxDB's last
values use): a field's value, the HLC and device that set it, counters summed per device,
each twin's newest time, churn risk and products. The privacy changes and retention
leave exactly what remains: an erased twin is gone, dropped fields are gone and the twin's
own row follows, a moved twin is the merge of both ids, expired values are gone and
counters recounted.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from cloud_hub.store import IndexOp, IndexReader, SortKey, StateStore, TwinIndex, stored_value
from protocol import HLC, FieldValue, Scalar, TwinState

BRAND = "acme"
TWINS = [f"1-{i:032x}" for i in range(6)]
DEVICES = ["coffee-1", "coffee-2", "tv-1"]
#: lww and counter fields of every value type, a churn score and a segment
FIELDS: dict[str, Any] = {
    "coffee.strength": lambda r: r.randrange(1, 6),
    "coffee.water_level_pct": lambda r: round(r.uniform(0, 100), 3),
    "coffee.descale_due": lambda r: r.random() < 0.5,
    "thermostat.mode": lambda r: r.choice(["eco", "heat", 'a "quoted" mode', "é"]),
    "coffee.brews_total": lambda r: r.randrange(0, 500),
    "tv.watch_minutes_total": lambda r: r.uniform(0, 1000),
    "coffee.churn_risk": lambda r: r.random(),
    "tv.churn_risk": lambda r: r.random(),
    "coffee.segment": lambda r: r.randrange(0, 4),
}


def random_ops(seed: int, n: int = 600) -> list[IndexOp]:
    rnd = random.Random(seed)
    ops: list[IndexOp] = []
    for _ in range(n):
        field = rnd.choice(list(FIELDS))
        # few distinct times, so equal HLCs from different devices happen too
        hlc = HLC(1_700_000_000_000 + rnd.randrange(40) * 1000, rnd.randrange(3)).pack()
        ops.append((BRAND, rnd.choice(TWINS), rnd.choice(DEVICES), field, hlc, FIELDS[field](rnd)))
    return ops


def merged(ops: list[IndexOp]) -> dict[str, dict[str, FieldValue]]:
    states: dict[str, TwinState] = {}
    for _brand, twin, device, field, hlc, value in ops:
        states.setdefault(twin, TwinState()).apply(device, hlc, field, value)
    return {twin: state.fields() for twin, state in states.items()}


def index_content(store: StateStore) -> dict[str, Any]:
    """Everything the index holds of BRAND: fields as TwinState's, twin rows, products."""
    page = IndexReader(state=store).query(BRAND, None, SortKey(), 1000)
    out: dict[str, Any] = {}
    with store.transaction(readonly=True) as tx:
        for twin, field, device, hlc, num, txt in tx.execute(
            "SELECT twin, field, device, hlc, num, txt FROM twin_fields WHERE brand = ?", (BRAND,)
        ):
            out.setdefault(twin, {"fields": {}})["fields"][field] = FieldValue(
                stored_value(field, num, txt), hlc, device
            )
    for item in page.items:
        out.setdefault(item["twin"], {"fields": {}}).update(
            last_seen_ms=item["last_seen_ms"],
            churn_risk=item["churn_risk"],
            products=item["products"],
        )
    return out


def expected(ops: list[IndexOp]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for twin, fields in merged(ops).items():
        risks = [fv.value for name, fv in fields.items() if name.endswith(".churn_risk")]
        out[twin] = {
            "fields": fields,
            "last_seen_ms": max(fv.updated_ms for fv in fields.values()),
            "churn_risk": max(risks) if risks else None,  # type: ignore[type-var]
            "products": sorted({name.split(".")[0] for name in fields}),
        }
    return out


def apply_in_batches(index: TwinIndex, ops: list[IndexOp], seed: int) -> None:
    rnd = random.Random(seed)
    ops = ops + rnd.sample(ops, len(ops) // 3)  # replays
    rnd.shuffle(ops)
    while ops:
        size = rnd.randrange(1, 80)
        index.apply(ops[:size])
        ops = ops[size:]


def test_any_order_batching_and_replay_gives_the_merged_twin(store: StateStore) -> None:
    """Ops applied in shuffled batches with a third replayed equal TwinState's merge of
    them: values typed as the catalog says, the winning HLC and device, counters summed
    over devices, and the twin's newest time, churn risk and products."""
    ops = random_ops(1)
    index = TwinIndex(state=store)
    apply_in_batches(index, ops, seed=2)
    assert index_content(store) == expected(ops)


def test_two_orders_give_the_same_rows(store: StateStore, tmp_path: Any) -> None:
    """The same ops in two other orders and batchings: the very same rows."""
    ops = random_ops(3)
    index = TwinIndex(state=store)
    apply_in_batches(index, ops, seed=4)
    first = index_content(store)
    for table in ("twin_fields", "twin_counter_parts", "twin_products", "twin_index"):
        with store.transaction() as tx:
            tx.execute(f"DELETE FROM {table}")
    apply_in_batches(index, ops, seed=5)
    assert index_content(store) == first == expected(ops)


def test_first_seen_is_the_oldest_op_taken_in(store: StateStore) -> None:
    index = TwinIndex(state=store)
    twin = TWINS[0]
    index.apply([(BRAND, twin, "coffee-1", "coffee.strength", HLC(5000, 0).pack(), 2)])
    index.apply([(BRAND, twin, "coffee-1", "coffee.strength", HLC(3000, 0).pack(), 1)])
    index.apply([(BRAND, twin, "coffee-1", "coffee.strength", HLC(9000, 0).pack(), 3)])
    with store.transaction(readonly=True) as tx:
        row = tx.execute(
            "SELECT first_seen_ms, last_seen_ms FROM twin_index WHERE twin = ?", (twin,)
        ).fetchone()
    assert row == (3000, 9000)
    assert index_content(store)[twin]["fields"]["coffee.strength"].value == 3


def test_erase_removes_the_twins_and_nothing_else(store: StateStore) -> None:
    ops = random_ops(6)
    index = TwinIndex(state=store)
    index.apply(ops)
    index.erase(BRAND, TWINS[:2])
    assert index_content(store) == expected([op for op in ops if op[1] not in TWINS[:2]])


def test_dropped_fields_go_and_the_twin_row_follows(store: StateStore) -> None:
    """An objection's fields (churn scores, segment) leave twins: their churn risk,
    newest time and products are those of what is left; a twin left with nothing goes."""
    ops = random_ops(7)
    only_profile = (BRAND, "1-" + "f" * 32, "tv-1", "tv.churn_risk", HLC(1, 0).pack(), 0.5)
    index = TwinIndex(state=store)
    index.apply([*ops, only_profile])
    profile = ["coffee.churn_risk", "tv.churn_risk", "coffee.segment"]
    index.drop_fields(BRAND, [*TWINS[:3], only_profile[1]], profile)
    kept = [
        op
        for op in [*ops, only_profile]
        if not (op[1] in [*TWINS[:3], only_profile[1]] and op[3] in profile)
    ]
    assert index_content(store) == expected(kept)
    assert only_profile[1] not in index_content(store)


def test_move_merges_the_old_twin_into_the_new(store: StateStore) -> None:
    """Key rotation: the new id holds what TwinState makes of both ids' ops."""
    ops = random_ops(8)
    old, new = TWINS[0], TWINS[1]
    index = TwinIndex(state=store)
    index.apply(ops)
    index.move(BRAND, old, new)
    renamed = [(b, new if t == old else t, d, f, h, v) for b, t, d, f, h, v in ops]
    assert index_content(store) == expected(renamed)


def test_expire_removes_old_values_and_recounts(store: StateStore) -> None:
    """Retention of the usage class: values older than the cutoff go (a counter keeps
    the parts of devices whose total is newer), profile fields stay; done in chunks."""
    ops = random_ops(9)
    cutoff_ms = 1_700_000_000_000 + 20 * 1000
    usage = ["coffee.strength", "coffee.water_level_pct", "coffee.descale_due", "thermostat.mode"]
    usage += ["coffee.brews_total", "tv.watch_minutes_total"]
    index = TwinIndex(state=store)
    index.apply(ops)
    after: str | None = ""
    while after is not None:
        after = index.expire(BRAND, usage, cutoff_ms, after=after, limit=2)
    states = merged(ops)
    left = []
    for op in ops:
        # What InfluxDB keeps: points newer than the cutoff, and every profile point.
        if op[3] not in usage or op[4] >> 16 >= cutoff_ms:
            left.append(op)
    assert index_content(store) == expected(left)
    assert states  # the scenario had data to expire


@pytest.mark.parametrize("value", [0.1 + 0.2, 1e300, -0.0, 2**52 + 1])
def test_numbers_round_trip_exactly(store: StateStore, value: Scalar) -> None:
    index = TwinIndex(state=store)
    field = "coffee.brews_total" if isinstance(value, int) else "coffee.water_level_pct"
    index.apply([(BRAND, TWINS[0], "coffee-1", field, HLC(1, 0).pack(), value)])
    got = index_content(store)[TWINS[0]]["fields"][field].value
    assert got == value
    assert type(got) is type(value)
