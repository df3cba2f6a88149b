"""Hybrid logical clock: monotone, deterministic, packs losslessly."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import HLC, MAX_COUNTER, ClockError, HybridClock


def test_stamp_moves_with_physical_time_and_counts_within_a_millisecond() -> None:
    clock = HybridClock()
    assert clock.stamp(1000) == HLC(1000, 0)
    assert clock.stamp(1000) == HLC(1000, 1)
    assert clock.stamp(999) == HLC(1000, 2)  # a clock going backwards never reorders
    assert clock.stamp(1005) == HLC(1005, 0)


def test_counter_overflow_borrows_next_millisecond() -> None:
    clock = HybridClock(HLC(50, MAX_COUNTER))
    assert clock.stamp(10) == HLC(51, 0)


def test_restored_clock_continues_after_last_reading() -> None:
    clock = HybridClock(HLC(2000, 7))
    assert clock.stamp(1500) == HLC(2000, 8)
    assert clock.last == HLC(2000, 8)


@given(st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=200))
def test_stamps_strictly_increase_for_any_physical_sequence(times: list[int]) -> None:
    clock = HybridClock()
    stamps = [clock.stamp(t) for t in times]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert all(a.pack() < b.pack() for a, b in itertools.pairwise(stamps))
    assert all(a.to_ns() < b.to_ns() for a, b in itertools.pairwise(stamps))


@given(st.integers(0, 2**47 - 1), st.integers(0, MAX_COUNTER))
def test_pack_and_ns_round_trip(ms: int, counter: int) -> None:
    hlc = HLC(ms, counter)
    assert HLC.unpack(hlc.pack()) == hlc
    assert HLC.from_ns(hlc.to_ns()) == hlc


@pytest.mark.parametrize("bad", [-1, True, 2**64, "12"])
def test_unpack_rejects_garbage(bad: object) -> None:
    with pytest.raises(ClockError):
        HLC.unpack(bad)  # type: ignore[arg-type]


def test_out_of_range_hlc_is_rejected() -> None:
    with pytest.raises(ClockError):
        HLC(-1, 0)
    with pytest.raises(ClockError):
        HLC(0, MAX_COUNTER + 1)
