"""Merge rules: idempotent, commutative, associative; LWW by (hlc, device); G-counters."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import SchemaError, TwinState

Op4 = tuple[str, int, str, object]


def _state(ops: list[Op4]) -> TwinState:
    state = TwinState()
    for device, hlc, field, value in ops:
        state.apply(device, hlc, field, value)  # type: ignore[arg-type]
    return state


def test_lww_orders_by_hlc_then_device() -> None:
    state = _state(
        [
            ("b", 10, "thermostat.mode", "heat"),
            ("a", 12, "thermostat.mode", "cool"),
            ("c", 12, "thermostat.mode", "eco"),  # same hlc: higher device id wins
            ("a", 11, "thermostat.mode", "off"),
        ]
    )
    fv = state.fields()["thermostat.mode"]
    assert (fv.value, fv.hlc, fv.device) == ("eco", 12, "c")


def test_counter_sums_latest_component_per_device() -> None:
    state = _state(
        [
            ("a", 1, "coffee.brews_total", 1),
            ("a", 3, "coffee.brews_total", 3),
            ("a", 2, "coffee.brews_total", 2),  # late, older component: ignored
            ("b", 5, "coffee.brews_total", 4),
            ("a", 3, "coffee.brews_total", 3),  # replay: no double count
        ]
    )
    assert state.values() == {"coffee.brews_total": 7}


def test_float_counter_is_float() -> None:
    state = _state([("a", 1, "thermostat.energy_kwh_total", 1)])
    assert state.values()["thermostat.energy_kwh_total"] == 1.0
    assert isinstance(state.values()["thermostat.energy_kwh_total"], float)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(SchemaError):
        TwinState().apply("a", 1, "x.y", 1)


_ops = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 50),
        st.sampled_from(["thermostat.mode", "coffee.brews_total"]),
        st.integers(0, 100),
    ),
    max_size=40,
)


def _fix(ops: list[tuple[str, int, str, int]]) -> list[Op4]:
    # A device's cumulative counter only grows with its clock; registers take any value.
    out: list[Op4] = []
    for device, hlc, field, value in ops:
        if field == "thermostat.mode":
            out.append((device, hlc, field, ["off", "heat", "cool"][value % 3]))
        else:
            out.append((device, hlc, field, hlc))
    return out


@given(_ops, st.randoms())
def test_any_order_and_any_duplication_converge(
    raw: list[tuple[str, int, str, int]], rnd: random.Random
) -> None:
    ops = _fix(raw)
    shuffled = ops + ops[: len(ops) // 2]
    rnd.shuffle(shuffled)
    assert _state(ops).fields() == _state(shuffled).fields()


@given(_ops, _ops)
def test_merge_is_union(
    left: list[tuple[str, int, str, int]], right: list[tuple[str, int, str, int]]
) -> None:
    a, b = _state(_fix(left)), _state(_fix(right))
    ab = _state(_fix(left))
    ab.merge(b)
    ba = _state(_fix(right))
    ba.merge(a)
    assert ab.fields() == ba.fields() == _state(_fix(left) + _fix(right)).fields()
