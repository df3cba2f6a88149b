"""Every bad input is rejected with a reason (log + metric); nothing written; hub serving."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from _fakes import FakeDevice, get_json, now_hlc

from cloud_hub import Hub
from protocol import Channel, SigningKey, packb, topic

Make = Callable[[FakeDevice], tuple[bytes, str | None]]


def _delta(d: FakeDevice, **kw: Any) -> bytes:
    msg: bytes = d.delta(5, {d.twin("x"): [(now_hlc(), "coffee.brews_total", 3)]}, **kw)
    return msg


CASES: dict[str, Make] = {
    "malformed_msgpack": lambda d: (b"\xc1\x00garbage", None),
    "oversized": lambda d: (b"\x00" * 300_000, None),
    "missing_fields": lambda d: (packb({"v": 1, "kind": "delta"}), None),
    "wrong_types": lambda d: (packb([1, "delta", 7, "x", b"", 0, b"", b""]), None),
    "bad_signature": lambda d: (_delta(d, key=SigningKey.generate()), None),
    "unknown_device": lambda d: (
        _delta(d, device="ghost-1"),
        topic(d.brand, "ghost-1", Channel.DELTA),
    ),
    "topic_header_mismatch": lambda d: (_delta(d), topic(d.brand, "dev-1", Channel.DELTA)),
    "absurd_hlc": lambda d: (
        d.delta(9, {d.twin("x"): [(now_hlc(400 * 86_400_000), "coffee.brews_total", 3)]}),
        None,
    ),
    "wrong_field_type": lambda d: (
        d.delta(11, {d.twin("x"): [(now_hlc(), "coffee.brews_total", "many")]}),
        None,
    ),
}


def _rejected_total(hub: Hub) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in hub.metrics.render().splitlines():
        if line.startswith("twinsync_hub_rejected_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels] = float(value)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_input_is_rejected_and_changes_nothing(
    case: str, hub: Hub, hub_env: Any, device: FakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cloud_hub")
    before = hub_env.points()
    payload, topic_ = CASES[case](device)
    device.publish(payload, topic_=topic_)
    for _ in range(200):
        if _rejected_total(hub):
            break
        await asyncio.sleep(0.025)
    rejected = _rejected_total(hub)
    assert sum(rejected.values()) == 1, rejected
    reason = next(iter(rejected)).split('reason="', 1)[1].split('"', 1)[0]
    assert any(r.levelno == logging.WARNING and reason in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]
    # A later good message still goes through: the hub is alive and nothing bad was written.
    device.publish(device.delta(100, {device.twin("ok"): [(now_hlc(), "coffee.strength", 2)]}))
    await device.wait_acked({100})
    after = hub_env.points()
    assert {p for p in after - before if p[3] != "coffee.strength"} == set()
    assert (await get_json(f"{hub.api_url}/healthz")) is not None
