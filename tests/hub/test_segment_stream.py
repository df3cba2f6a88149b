"""Segment changes as a live stream (Server-Sent Events), across hub instances."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from _fakes import FakeDevice, get_json, now_hlc
from _poll import eventually
from hub_env import HubEnv

from cloud_hub import Hub
from protocol import HLC


async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event type, data) of each SSE event; comments (keepalives) are skipped."""
    kind, data = "message", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and data:
            yield kind, json.loads(data)
            kind, data = "message", ""


async def _take(resp: aiohttp.ClientResponse, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        async for kind, data in _events(resp):
            assert kind == "segment_change"
            out.append(data)
            if len(out) == n:
                return out
    return out


def _ops(twin: str, hlc: int, segment: int, model: str) -> list[tuple[int, str, object]]:
    return [(hlc, "coffee.segment", segment), (hlc + 1, "coffee.segment_model", model)]


async def test_segment_changes_stream_live_from_every_instance(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    # A second instance in the same shared group: the broker splits the deltas between
    # the two, and the stream served by the second must still see every change.
    mqtt = hub_env.config.mqtt.model_copy(update={"client_id": f"{hub_env.config.mqtt.client_id}b"})
    other_config = hub_env.config.model_copy(update={"mqtt": mqtt})
    headers = {"Authorization": f"Bearer {hub_env.token}"}
    async with Hub(other_config) as other, aiohttp.ClientSession(headers=headers) as session:
        await other.ready.wait()
        url = f"{other.api_url}/v1/brands/{hub_env.brand}/segments/changes/stream"
        async with session.get(f"{url}?product=coffee") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            twins = [device.twin(f"customer-{i}") for i in range(8)]
            h0 = now_hlc(-600_000)
            ms = HLC.unpack(h0).ms
            for seq, twin in enumerate(twins, start=1):  # one delta each: both hubs store
                device.publish(device.delta(seq, {twin: _ops(twin, h0, seq % 3, "seg@1")}))
            await device.wait_acked(set(range(1, 9)))
            first = await _take(resp, 8)
            assert sorted((e["twin"], e["from"], e["to"]) for e in first) == sorted(
                (t, None, i % 3) for i, t in enumerate(twins, start=1)
            )
            assert {e["model"] for e in first} == {"seg@1"}
            assert {e["time_ms"] for e in first} == {ms}
            assert {e["device"] for e in first} == {"dev-0"}

            # A repeat is no change; a new value is, with the segment it left.
            later = HLC(ms + 1000, 0).pack()
            ann = twins[0]
            device.publish(device.delta(9, {ann: _ops(ann, later, 1, "seg@1")}))  # 1 -> 1
            device.publish(device.delta(10, {ann: _ops(ann, later + 10, 2, "seg@2")}))  # 1 -> 2
            tv = [(later, "tv.segment", 3), (later + 1, "tv.segment_model", "tv@1")]
            device.publish(device.delta(11, {ann: tv}))  # another product's stream
            await device.wait_acked({9, 10, 11})
            change = await _take(resp, 1)
            assert [(e["twin"], e["from"], e["to"], e["model"]) for e in change] == [
                (ann, 1, 2, "seg@2")
            ]
        stored = [h.metrics.get("twinsync_hub_deltas_written_total") for h in (hub, other)]
        assert sum(stored) == 11
        assert min(stored) > 0, stored  # the cross-instance path was exercised

        # Reconnecting with Last-Event-ID replays from then on, then streams live.
        async with session.get(
            f"{url}?product=coffee", headers={"Last-Event-ID": str(ms + 1)}
        ) as resp:
            replayed = await _take(resp, 1)
            assert [(e["twin"], e["from"], e["to"]) for e in replayed] == [(ann, 1, 2)]
            bob = twins[1]
            device.publish(device.delta(12, {bob: _ops(bob, later + 20, 0, "seg@2")}))
            live = await _take(resp, 1)
            assert [(e["twin"], e["from"], e["to"]) for e in live] == [(bob, 2, 0)]
        assert await eventually(lambda: not other.feed._subs, within=5)


async def test_segment_stream_rejects_bad_requests(hub: Hub, hub_env: HubEnv) -> None:
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/segments/changes/stream"
    assert (await get_json(f"{base}?product=toaster", 400, token=hub_env.token))["error"][
        "code"
    ] == "bad_product"
    assert (await get_json(f"{base}?product=tv&since=x", 400, token=hub_env.token))["error"][
        "code"
    ] == "bad_since"
    assert not hub.feed._subs  # nothing left subscribed by refused requests
