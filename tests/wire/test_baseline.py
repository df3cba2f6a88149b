"""Anomaly baselines: a spike stands out, the return to normal does not, state persists."""

from __future__ import annotations

import random

import pytest

from protocol import SchemaError, SignalBaseline, is_baselined


def test_only_ranged_numeric_gauges_have_baselines() -> None:
    assert is_baselined("thermostat.temperature_c")
    assert not is_baselined("coffee.brew")  # a counter
    assert not is_baselined("tv.genre")
    with pytest.raises(SchemaError):
        SignalBaseline("coffee.brew")


def test_spike_is_far_out_and_the_return_is_not() -> None:
    rnd = random.Random(1)
    b = SignalBaseline("thermostat.temperature_c")
    normal = [b.observe(21 + rnd.gauss(0, 0.3))[0] for _ in range(200)]
    spike = b.observe(33.0)
    back = b.observe(21.1)
    assert max(normal[20:]) < 6
    assert spike[0] > 10
    assert spike[1] > 0.1  # 12 °C of a 110 °C range
    assert back[0] < 6
    assert abs(back[1]) < 0.02  # measured against the last normal reading, not the spike


def test_state_round_trip() -> None:
    b = SignalBaseline("wearable.heart_rate_bpm")
    for v in (60, 62, 61, 64):
        b.observe(v)
    again = SignalBaseline.from_state(b.name, b.to_state())
    assert again.observe(90) == b.observe(90)
    with pytest.raises(SchemaError):
        SignalBaseline.from_state(b.name, [1.0])
