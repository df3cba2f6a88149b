"""Erasure: after the receipt no point of the twin is left, the hub answers 404, and no
outbox or late device brings it back; the receipt verifies with the hub's public key. The
erasure with a device offline runs on both state stores (SQLite file, PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from _fakes import FakeDevice, get_json, now_hlc, send_json
from _poll import eventually
from hub_env import HubEnv, both_stores

from cloud_hub import Hub, ensure_hub_key
from cloud_hub.privacy import verify_receipt
from cloud_hub.testing import seal_downlink
from edge_agent import Agent, load_config
from protocol import (
    BROADCAST,
    SignalIn,
    SignatureError,
    Tombstones,
    broadcast_topic,
    decode_body,
    open_envelope,
)
from twinsync.services import free_port

SUBJECT = "Ann.Example@Mail.test"


async def _erase(hub: Hub, env: HubEnv, subject: str) -> tuple[int, dict[str, Any]]:
    url = f"{hub.api_url}/v1/brands/{env.brand}/privacy/erasure"
    return await send_json("POST", url, {"subject": subject}, env.token)


def _twin_points(env: HubEnv, twin: str) -> set[Any]:
    return {p for p in env.points() if p[1] == twin}


async def test_erasure_deletes_everything_and_nothing_resurrects(
    hub: Hub, hub_env: HubEnv, device: FakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    ann, bob = device.twin(SUBJECT), device.twin("bob")
    old = now_hlc(-3_600_000)
    device.publish(
        device.delta(
            1,
            {
                ann: [(old, "coffee.brews_total", 3), (old + 1, "coffee.strength", 4)],
                bob: [(old, "coffee.brews_total", 1)],
            },
        )
    )
    await device.wait_acked({1})
    assert _twin_points(hub_env, ann)
    # The identifier in another spelling is the same customer (normalised before HMAC).
    status, receipt = await _erase(hub, hub_env, "  ann.example@mail.TEST ")
    assert status == 200, receipt
    assert receipt["twins"] == [ann]
    assert receipt["points_found"] == 2  # ann's two field values
    assert receipt["points_left"] == 0
    hub_public = ensure_hub_key(hub_env.config.keys.secrets_dir).public
    verify_receipt(receipt, hub_public)
    with pytest.raises(SignatureError):
        verify_receipt({**receipt, "points_left": 5}, hub_public)

    assert _twin_points(hub_env, ann) == set()
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/twins"
    await get_json(f"{base}/{ann}", status=404, token=hub_env.token)
    assert (await get_json(f"{base}/{bob}", token=hub_env.token))["fields"]
    # A device that was offline sends its old outbox: acked, but the twin stays gone.
    device.publish(
        device.delta(
            2,
            {ann: [(old + 5, "coffee.brews_total", 4)], bob: [(old + 5, "coffee.brews_total", 2)]},
        )
    )
    late = now_hlc()
    device.publish(device.delta(3, {ann: [(late, "coffee.brews_total", 5)]}))
    await device.wait_acked({2, 3})
    assert _twin_points(hub_env, ann) == set()
    await get_json(f"{base}/{ann}", status=404, token=hub_env.token)
    bob_state = await get_json(f"{base}/{bob}", token=hub_env.token)
    assert bob_state["fields"]["coffee.brews_total"]["value"] == 2
    assert hub.metrics.get("twinsync_hub_erased_ops_dropped_total") == 2

    requests = await get_json(
        f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy/requests", token=hub_env.token
    )
    (request,) = requests["requests"]
    assert request["state"] == "done"
    assert request["deadline_ms"] == request["received_ms"] + 30 * 86_400_000
    assert request["receipt"] == receipt
    # The identifier was never logged, stored in the audit log or the hub's files.
    assert not any("ann.example" in r.getMessage().lower() for r in caplog.records)
    audit = await get_json(f"{hub.api_url}/v1/brands/{hub_env.brand}/audit", token=hub_env.token)
    assert "ann" not in json.dumps(audit).lower().replace("brand", "")
    registry = await asyncio.to_thread(Path(hub_env.config.registry.path).read_bytes)
    assert b"ann.example" not in registry.lower()


async def test_erasure_requests_are_checked(hub: Hub, hub_env: HubEnv) -> None:
    for body in ({}, {"subject": ""}, {"subject": 5}, {"subject": "x" * 300}):
        url = f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy/erasure"
        headers = {"Authorization": f"Bearer {hub_env.token}"}
        async with aiohttp.ClientSession(headers=headers) as s, s.post(url, json=body) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "bad_subject"


@both_stores
async def test_an_agent_offline_during_the_erasure_does_not_recreate_the_twin(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    def config(port: int) -> Any:
        return load_config(
            hub_env.bundles["dev-1"],
            {
                "mqtt": {"port": port},
                "outbox": {"path": str(tmp_path / "outbox.sqlite")},
                "models": {"enabled": False},
            },
            environ={},
        )

    now = int(time.time() * 1000)
    async with Agent(config(free_port())) as agent:  # no broker there: offline
        for i, subject in enumerate([SUBJECT, "bob", SUBJECT]):
            await agent.ingest(
                SignalIn(
                    seq=i + 1, ts=now - 60_000 + i, subject=subject, name="coffee.brew", value=1
                )
            )
        await agent.flush()
        assert agent.outbox_depth() > 0
        ann = agent._book._twin(SUBJECT) if agent._book else ""
    status, receipt = await _erase(hub, hub_env, SUBJECT)
    assert status == 200
    assert receipt["twins"] == [ann]
    assert receipt["points_found"] == 0
    async with Agent(config(hub_env.services.mosquitto.port)) as agent:
        assert await agent.drained(20)  # the hub acked every delta of the old outbox
    points = hub_env.points()
    assert {p[1] for p in points if p[0] == "dev-1"} == {
        t for t in {p[1] for p in points} if t != ann
    }
    assert _twin_points(hub_env, ann) == set()
    assert any(p[0] == "dev-1" for p in points)  # bob's data did arrive


def _tombstone_sniffer(port: int, brand: str) -> tuple[mqtt.Client, list[bytes]]:
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    client.connect("127.0.0.1", port)
    client.subscribe(broadcast_topic(brand, "tombstone"), qos=1)
    client.loop_start()
    return client, got


async def test_the_hub_broadcasts_a_signed_tombstone(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    client, got = _tombstone_sniffer(hub_env.services.mosquitto.port, hub_env.brand)
    try:
        await asyncio.sleep(0.3)
        status, receipt = await _erase(hub, hub_env, SUBJECT)
        assert status == 200
        assert await eventually(lambda: bool(got), within=5)
    finally:
        client.loop_stop()
        client.disconnect()
    env = open_envelope(got[0]).verify(ensure_hub_key(hub_env.config.keys.secrets_dir).public)
    assert (env.kind, env.brand, env.device) == ("tombstone", hub_env.brand, BROADCAST)
    body = decode_body("tombstone", env.body)
    assert isinstance(body, Tombstones)
    assert list(body.twins) == receipt["twins"] == [device.twin(SUBJECT)]


async def test_a_device_forgets_an_erased_twin_and_refuses_it_from_then_on(
    hub_env: HubEnv, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    config = load_config(
        hub_env.bundles["dev-2"],
        {
            "mqtt": {"port": hub_env.services.mosquitto.port},
            "outbox": {"path": str(outbox)},
            "models": {"dir": str(tmp_path / "models")},
        },
        environ={},
    )
    now = int(time.time() * 1000)
    key = ensure_hub_key(hub_env.config.keys.secrets_dir)
    async with Agent(config) as agent:  # no hub runs: everything stays in the outbox
        # A consent entry too: the ledger row and the delta carrying it must go as well.
        agent.set_consent(SUBJECT, {"personalization": True}, "v1")
        for i, (subject, name, value) in enumerate(
            [
                (SUBJECT, "coffee.brew", 1),
                ("bob", "coffee.brew", 2),
                (SUBJECT, "coffee.strength", 4),
            ]
        ):
            await agent.ingest(
                SignalIn(seq=i + 1, ts=now - 5000 + i, subject=subject, name=name, value=value)
            )
        await agent.flush()
        assert agent._book is not None
        ann, bob = agent._book._twin(SUBJECT), agent._book._twin("bob")
        assert await eventually(
            lambda: agent._uplink is not None and agent._uplink.connected.is_set(), within=10
        )
        raw = await asyncio.to_thread(_files, outbox)
        assert ann.encode() in raw  # before: the outbox holds ann's ops
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", hub_env.services.mosquitto.port)
        client.loop_start()
        topic_ = broadcast_topic(hub_env.brand, "tombstone")
        try:
            body = Tombstones(twins=(ann,), request_id="r1", erased_ms=now)
            message = seal_downlink(key, "tombstone", hub_env.brand, BROADCAST, body)
            client.publish(topic_, message, qos=1).wait_for_publish(5)
            assert await eventually(lambda: agent.stats.get("twins_erased") == 1, within=10)
            # A customer this device never saw: nothing to forget, nothing remembered.
            body = Tombstones(twins=("1-" + "f" * 32,), request_id="r2", erased_ms=now)
            message = seal_downlink(key, "tombstone", hub_env.brand, BROADCAST, body)
            client.publish(topic_, message, qos=1).wait_for_publish(5)
            await asyncio.sleep(1.0)
            assert agent.stats["twins_erased"] == 1
            assert len(agent._book.erased) == 1
        finally:
            client.loop_stop()
            client.disconnect()
        raw = await asyncio.to_thread(_files, outbox)
        assert ann.encode() not in raw  # not in a delta, a state row, a free page or the WAL
        assert bob.encode() in raw
        assert agent.twin_value(ann, "coffee.brews_total") is None
        assert agent._outbox is not None
        assert agent._outbox.consent_ledger(ann) == []
        again = await agent.ingest(
            SignalIn(seq=9, ts=now, subject=SUBJECT, name="coffee.brew", value=1)
        )
        assert (again.status, again.reason) == ("rejected", "erased")
    async with Agent(config) as agent:  # remembered across a restart
        again = await agent.ingest(
            SignalIn(seq=10, ts=now, subject=SUBJECT, name="coffee.brew", value=1)
        )
        assert (again.status, again.reason) == ("rejected", "erased")
        bob_ok = await agent.ingest(
            SignalIn(seq=11, ts=now, subject="bob", name="coffee.brew", value=1)
        )
        assert bob_ok.status == "accepted"


def _files(outbox: Path) -> bytes:
    return b"".join(p.read_bytes() for p in outbox.parent.glob(outbox.name + "*"))
