"""twinsync.client's segment intelligence methods, blocking and asyncio, on a real hub:
sizes, migration, profiles and share alerts typed as the hub answers them, and a
refusal reaching the caller as the hub said it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _fakes import FakeDevice, now_hlc
from hub_env import HubEnv

from cloud_hub import Hub
from protocol import HLC
from twinsync.client import (
    AsyncClient,
    Client,
    RequestRefusedError,
    SegmentMigration,
    SegmentProfiles,
    SegmentShareAlerts,
    SegmentSizes,
)

MODEL = "segment-coffee@1"


async def _seed(device: FakeDevice) -> int:
    """Twelve twins in segment 0 an hour ago, then three of them move to segment 1."""
    h0 = now_hlc(-3_600_000)
    t = HLC.unpack(h0).ms
    twins = [device.twin(f"c{i}") for i in range(12)]
    first = {
        twin: [
            (h0 + 3 * i, "coffee.segment", 0),
            (h0 + 3 * i + 1, "coffee.segment_model", MODEL),
            (h0 + 3 * i + 2, "coffee.f_share_weekend", 0.2 if i >= 3 else 0.7),
        ]
        for i, twin in enumerate(twins)
    }
    device.publish(device.delta(1, first))
    later = HLC(t + 1_800_000, 0).pack()
    device.publish(
        device.delta(
            2, {twin: [(later + i, "coffee.segment", 1)] for i, twin in enumerate(twins[:3])}
        )
    )
    await device.wait_acked({1, 2})
    return t


async def _calls(c: Any, t: int, flavour: str) -> None:
    sizes = await c("get_segment_sizes", "coffee", start=t + 60_000, end=t + 3_500_000, step="30m")
    assert isinstance(sizes, SegmentSizes)
    assert {(s.segment, s.twins[-1]) for s in sizes.series} == {(0, 9), (1, 3)}
    assert sizes.series[0].model == MODEL
    only = await c("get_segment_sizes", "coffee", model="nope@1", start=t - 60_000)
    assert only.series == ()
    migration = await c("get_segment_migration", "coffee", from_=t + 60_000, to=t + 3_000_000)
    assert isinstance(migration, SegmentMigration)
    assert {(m.from_, m.to, m.twins) for m in migration.cells} == {(0, 0, 9), (0, 1, 3)}
    assert (migration.moved, migration.stayed) == (3, 9)
    profile = await c("get_segment_profile", "coffee", top=2)
    assert isinstance(profile, SegmentProfiles)
    (model,) = profile.models
    assert (model.model, model.twins) == (MODEL, 12)
    assert {s.segment: s.twins for s in model.segments} == {0: 9, 1: 3}
    alerts = await c("get_segment_share_alerts", "coffee", baseline=3)
    assert isinstance(alerts, SegmentShareAlerts)
    assert alerts.alerts == 0
    assert alerts.rule.k == 3
    with pytest.raises(RequestRefusedError) as refused:
        await c("get_segment_sizes", "coffee", start=0, step="1ms")
    assert refused.value.code == "too_many_steps", flavour
    assert "use step=" in refused.value.message


async def test_segment_methods_in_both_flavours(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    t = await _seed(device)
    async_client = AsyncClient(hub.api_url, hub_env.brand, api_key=hub_env.token)
    blocking = Client(hub.api_url, hub_env.brand, api_key=hub_env.token)
    try:

        async def awaited(name: str, *args: Any, **kw: Any) -> Any:
            return await getattr(async_client, name)(*args, **kw)

        async def threaded(name: str, *args: Any, **kw: Any) -> Any:
            # the blocking client off the loop the hub serves on
            return await asyncio.to_thread(getattr(blocking, name), *args, **kw)

        await _calls(awaited, t, "asyncio")
        await _calls(threaded, t, "blocking")
    finally:
        await async_client.aclose()
        blocking.close()
