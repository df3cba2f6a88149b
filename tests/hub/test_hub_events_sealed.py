"""Hub-to-hub announcements are sealed and signed (real hubs, mosquitto and influxd).

Segment changes travel between hub instances over the broker
(``ts/v1/_hub/{brand}/segment-changes``). A sniffer on ``ts/v1/_hub/#`` sees no twin id,
device id or segment; and an announcement that is not the hub's (unsigned, signed with a
device's key, tampered), or one already taken (a replay) or too old, reaches no SSE
subscriber and is counted by every instance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from _fakes import FakeDevice, now_hlc
from _poll import eventually
from hub_env import HubEnv
from test_segment_stream import _take

from cloud_hub import Hub, ensure_hub_key
from protocol import HubSealer, packb, unpackb

CHANNEL = "segment-changes"


class _Sniffer:
    """Everything published under ``ts/v1/_hub/#``; publishes as any broker client can."""

    def __init__(self, port: int) -> None:
        self.payloads: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("ts/v1/_hub/#", qos=1)
        self.client.loop_start()
        assert ready.wait(10)

    def _on(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append((msg.topic, bytes(msg.payload)))

    def seen(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.payloads)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def sniffer(hub_env: HubEnv) -> Iterator[_Sniffer]:
    s = _Sniffer(hub_env.services.mosquitto.port)
    yield s
    s.close()


def _ops(hlc: int, segment: int) -> list[tuple[int, str, object]]:
    return [(hlc, "coffee.segment", segment), (hlc + 1, "coffee.segment_model", "seg@1")]


async def test_announcements_show_nothing_on_the_broker(
    hub: Hub, hub_env: HubEnv, device: FakeDevice, sniffer: _Sniffer
) -> None:
    twins = [device.twin(f"sniffed-{i}") for i in range(3)]
    h0 = now_hlc(-60_000)
    for seq, twin in enumerate(twins, start=1):
        device.publish(device.delta(seq, {twin: _ops(h0, seq)}))
    await device.wait_acked({1, 2, 3})
    assert await eventually(lambda: len(sniffer.seen()) >= 1, within=10)
    key = ensure_hub_key(hub_env.config.keys.secrets_dir)
    rows = []
    for topic, payload in sniffer.seen():
        assert topic == f"ts/v1/_hub/{hub_env.brand}/{CHANNEL}"
        # (the brand and the channel name are in the topic anyway)
        for clear in (*(t.encode() for t in twins), b"dev-0", b"coffee", b"seg@1"):
            assert clear not in payload, clear
        assert not payload.lstrip().startswith(b"[")  # no JSON any more
        # ... and yet it is the announcement: the hub key opens it to the rows.
        body = HubSealer(key).open(payload, brand=hub_env.brand, channel=CHANNEL, max_bytes=1 << 20)
        rows += unpackb(body.body)  # type: ignore[arg-type]
    assert sorted((r[1], r[2], r[4]) for r in rows) == sorted(
        (t, "dev-0", i) for i, t in enumerate(twins, start=1)
    )


async def test_forged_replayed_and_old_announcements_reach_no_stream(
    hub: Hub, hub_env: HubEnv, device: FakeDevice, sniffer: _Sniffer
) -> None:
    mqtt_cfg = hub_env.config.mqtt.model_copy(
        update={"client_id": f"{hub_env.config.mqtt.client_id}b"}
    )
    other_config = hub_env.config.model_copy(update={"mqtt": mqtt_cfg})
    topic = f"ts/v1/_hub/{hub_env.brand}/{CHANNEL}"
    key = ensure_hub_key(hub_env.config.keys.secrets_dir)
    ann, bob, eve = (device.twin(n) for n in ("ann", "bob", "eve"))
    headers = {"Authorization": f"Bearer {hub_env.token}"}
    async with Hub(other_config) as other, aiohttp.ClientSession(headers=headers) as session:
        await other.ready.wait()
        url = f"{other.api_url}/v1/brands/{hub_env.brand}/segments/changes/stream?product=coffee"
        async with session.get(url) as resp:
            assert resp.status == 200
            # A real change of Ann's segment: its announcement is captured off the broker.
            device.publish(device.delta(1, {ann: _ops(now_hlc(-1000), 1)}))
            first = await _take(resp, 1)
            assert [(e["twin"], e["to"]) for e in first] == [(ann, 1)]
            assert await eventually(lambda: len(sniffer.seen()) >= 1, within=10)
            captured = sniffer.seen()[0][1]

            now_ns = time.time_ns()
            row = [["coffee", eve, "dev-0", now_ns, 2, "seg@1"]]
            device_key = device.key  # the device's own signing key
            signed, signature = unpackb(captured)  # type: ignore[misc]
            forgeries = {
                # the old cleartext format, from any client on the broker
                "malformed": b'[["coffee", "%s", "dev-0", %d, 2, "seg@1"]]'
                % (eve.encode(), now_ns),
                # sealed the hub's way, but with a device's key (its credentials' equivalent)
                "wrong_key": HubSealer(device_key).seal(
                    hub_env.brand, CHANNEL, packb(row), sent_ms=now_ns // 1_000_000
                ),
                # a hub announcement with one bit flipped
                "signature": packb([signed[:-1] + bytes([signed[-1] ^ 1]), signature]),
                # the captured real one, again
                "replay": captured,
                # genuinely the hub's, but sealed ten minutes ago (captured, held back)
                "stale": HubSealer(key).seal(
                    hub_env.brand, CHANNEL, packb(row), sent_ms=now_ns // 1_000_000 - 600_000
                ),
            }
            for payload in forgeries.values():
                sniffer.publish(topic, payload)
            # Then a real change of Bob's: the next event the stream gets must be his.
            device.publish(device.delta(2, {bob: _ops(now_hlc(), 2)}))
            nxt = await _take(resp, 1)
            assert [(e["twin"], e["to"]) for e in nxt] == [(bob, 2)]
        for instance in (hub, other):  # every instance refused and counted each one
            for reason in forgeries:
                assert await eventually(
                    lambda i=instance, r=reason: (
                        i.metrics.get("twinsync_hub_rejected_total", reason=f"event_{r}") >= 1
                    ),
                    within=10,
                ), (reason, instance.config.mqtt.client_id)
