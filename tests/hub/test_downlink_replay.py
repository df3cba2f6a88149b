"""Replayed downlink commands change nothing (real mosquitto, hub, influxd and agents).

Every hub command is signed, so an attacker on the broker cannot forge one, but can
capture one and publish the same bytes again later. Each test captures real hub commands
off the broker, lets a newer command supersede them, replays the captured bytes and shows
the device keeps the newer state (its consent gate, its privacy view), also after the
agent restarts, and counts the refusal (``downlinks_refused``). See edge_agent/_freshness.py
and docs/privacy.md, "Fresh commands".
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
from _fakes import send_json
from _poll import eventually
from hub_env import HubEnv

from cloud_hub import Hub, ensure_hub_key
from cloud_hub.testing import seal_downlink
from edge_agent import Agent, AgentConfig, load_config
from protocol import (
    Channel,
    ConsentCommand,
    Desired,
    ModelManifest,
    ModelSet,
    SignalIn,
    broadcast_topic,
    decode_body,
    feature_names,
    open_envelope,
    topic,
)
from tests.edge import _onnx
from twinsync.services import free_port

COFFEE = feature_names("coffee")
DORA = "dora.replay@example.test"
ERIN = "erin.later@example.test"
FIELD = "coffee.water_level_pct"


class _Tap:
    """A plain client on the (anonymous) test broker: records what is published on a
    topic and publishes captured bytes again, as anyone on the broker could."""

    def __init__(self, port: int, topic_: str) -> None:
        self.topic = topic_
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic_, qos=1)
        self.client.loop_start()
        assert ready.wait(10)

    def _on(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(bytes(msg.payload))

    def count(self) -> int:
        with self._lock:
            return len(self.payloads)

    async def next_after(self, n: int) -> bytes:
        """The first payload captured after the first ``n``."""
        assert await eventually(lambda: self.count() > n, within=15)
        with self._lock:
            return self.payloads[n]

    def replay(self, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(self.topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextlib.contextmanager
def _tap(env: HubEnv, topic_: str) -> Any:
    tap = _Tap(env.services.mosquitto.port, topic_)
    try:
        yield tap
    finally:
        tap.close()


def _config(env: HubEnv, tmp: Path, device: str = "dev-0", **over: Any) -> AgentConfig:
    data: dict[str, Any] = {
        "mqtt": {"port": env.services.mosquitto.port},
        "outbox": {"path": str(tmp / device / "outbox.sqlite")},
        "models": {"dir": str(tmp / device / "models"), "enabled": False},
        "ingest": {"port": free_port()},
    }
    for section, values in over.items():
        data.setdefault(section, {}).update(values)
    return load_config(env.bundles[device], data, environ={})


@contextlib.asynccontextmanager
async def _running(config: AgentConfig) -> AsyncIterator[Agent]:
    async with Agent(config) as agent:
        assert agent._uplink is not None
        # Subscribed before anyone speaks: broadcasts are not retained.
        assert await eventually(agent._uplink.connected.is_set, within=15)
        yield agent


def _signal(seq: int, subject: str, name: str, value: object) -> SignalIn:
    return SignalIn(seq=seq, ts=int(time.time() * 1000), subject=subject, name=name, value=value)


async def _post(hub: Hub, env: HubEnv, path: str, body: object) -> dict[str, Any]:
    status, answer = await send_json(
        "POST", f"{hub.api_url}/v1/brands/{env.brand}{path}", body, env.token
    )
    assert status in (200, 202), answer
    result: dict[str, Any] = answer
    return result


async def _consent(hub: Hub, env: HubEnv, subject: str, purposes: dict[str, bool]) -> None:
    body = {"subject": subject, "purposes": purposes, "notice": "v1"}
    await _post(hub, env, "/privacy/consent", body)


async def _refused_once_more(agent: Agent, before: int) -> None:
    refused = await eventually(lambda: agent.stats.get("downlinks_refused", 0) > before, within=10)
    assert refused, "the replayed command was not refused"


OFF = {"analytics": False, "personalization": False, "marketing": False}


async def test_a_replayed_consent_grant_does_not_undo_the_withdrawal(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    config = _config(hub_env, tmp_path)
    with _tap(hub_env, broadcast_topic(hub_env.brand, "consent")) as tap:
        async with _running(config) as agent:
            assert (await agent.ingest(_signal(1, DORA, "coffee.brew", 1))).status == "accepted"
            grant = {"personalization": True, "marketing": True}
            await _consent(hub, hub_env, DORA, grant)
            captured = await tap.next_after(0)  # the hub's signed grant, off the broker
            assert await eventually(lambda: agent.consent_state(DORA)["marketing"], within=10)
            withdraw = dict.fromkeys(grant, False)
            await _consent(hub, hub_env, DORA, withdraw)
            assert await eventually(lambda: not agent.consent_state(DORA)["marketing"], within=10)
            assert agent._outbox is not None
            ledger = agent._outbox.consent_ledger()

            before = agent.stats.get("downlinks_refused", 0)
            tap.replay(captured)
            await _refused_once_more(agent, before)
            assert agent.consent_state(DORA) == OFF
            assert agent.privacy_view(DORA)["consent"] == OFF
            assert agent._outbox.consent_ledger() == ledger  # no row for the replay
            r = await agent.ingest(_signal(2, DORA, "coffee.strength", 3))
            assert (r.status, r.reason) == ("rejected", "no_consent")

        # The memory is on disk: a restarted agent refuses the replay too.
        async with _running(config) as again:
            before = again.stats.get("downlinks_refused", 0)
            tap.replay(captured)
            await _refused_once_more(again, before)
            assert again.consent_state(DORA) == OFF
            assert again.privacy_view(DORA)["consent"] == OFF


async def test_a_replayed_grant_does_not_undo_the_users_own_withdrawal(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    config = _config(hub_env, tmp_path)
    with _tap(hub_env, broadcast_topic(hub_env.brand, "consent")) as tap:
        async with _running(config) as agent:
            assert (await agent.ingest(_signal(1, DORA, "coffee.brew", 1))).status == "accepted"
            body = {"subject": DORA, "purposes": {"marketing": True}, "notice": "v1"}
            await _post(hub, hub_env, "/privacy/consent", body)
            captured = await tap.next_after(0)
            assert await eventually(lambda: agent.consent_state(DORA)["marketing"], within=10)
            agent.set_consent(DORA, {"marketing": False}, "v2")  # on the device's own app
            before = agent.stats.get("downlinks_refused", 0)
            tap.replay(captured)
            await _refused_once_more(agent, before)
            assert agent.consent_state(DORA)["marketing"] is False


async def test_a_replayed_restore_does_not_lift_a_later_suppression(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    config = _config(hub_env, tmp_path, "dev-1")
    with _tap(hub_env, broadcast_topic(hub_env.brand, "consent")) as tap:
        async with _running(config) as agent:
            assert (await agent.ingest(_signal(1, DORA, FIELD, 55.0))).status == "accepted"
            assert await agent.drained(15)
            assert agent._book is not None
            dora = agent._book.twin_of(DORA)
            suppress = {"subject": DORA, "suppress": [FIELD]}
            await _post(hub, hub_env, "/privacy/rectification", suppress)
            assert await eventually(lambda: FIELD in agent._book.gate.suppressed(dora), within=10)
            seen = tap.count()
            await _post(
                hub, hub_env, "/privacy/rectification", {"subject": DORA, "restore": [FIELD]}
            )
            restore = await tap.next_after(seen)
            assert await eventually(lambda: not agent._book.gate.suppressed(dora), within=10)
            await _post(hub, hub_env, "/privacy/rectification", suppress)
            assert await eventually(lambda: FIELD in agent._book.gate.suppressed(dora), within=10)

            before = agent.stats.get("downlinks_refused", 0)
            tap.replay(restore)
            await _refused_once_more(agent, before)
            assert agent.privacy_view(DORA)["suppressed"] == [FIELD]
            r = await agent.ingest(_signal(2, DORA, FIELD, 40.0))
            assert (r.status, r.reason) == ("rejected", "suppressed")
            assert agent.twin_value(dora, FIELD) == 55.0

        async with _running(config) as again:
            before = again.stats.get("downlinks_refused", 0)
            tap.replay(restore)
            await _refused_once_more(again, before)
            assert again.privacy_view(DORA)["suppressed"] == [FIELD]


async def test_an_old_grant_about_a_customer_met_later_is_refused(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    config = _config(hub_env, tmp_path)
    with _tap(hub_env, broadcast_topic(hub_env.brand, "consent")) as tap:
        async with _running(config) as agent:
            # Erin is not a user of this device yet: the commands about her are not applied.
            body = {"subject": ERIN, "purposes": {"marketing": True}, "notice": "v1"}
            await _post(hub, hub_env, "/privacy/consent", body)
            captured = await tap.next_after(0)
            body = {"subject": ERIN, "purposes": {"marketing": False}, "notice": "v1"}
            await _post(hub, hub_env, "/privacy/consent", body)
            withdrawn = open_envelope(await tap.next_after(1)).envelope.sent_ms
            assert agent._outbox is not None
            fresh = agent._outbox.freshness
            assert await eventually(lambda: fresh.hub_ms >= withdrawn, within=10)  # both seen
            assert "consent_changes" not in agent.stats  # ... and neither applied
            # She starts using the device; the grant she later withdrew is replayed.
            assert (await agent.ingest(_signal(1, ERIN, "coffee.brew", 1))).status == "accepted"
            before = agent.stats.get("downlinks_refused", 0)
            tap.replay(captured)
            await _refused_once_more(agent, before)
            assert agent.consent_state(ERIN)["marketing"] is False


async def test_a_grant_older_than_the_device_window_is_refused_but_late_news_about_another_twin_is_not(  # noqa: E501
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    key = ensure_hub_key(hub_env.config.keys.secrets_dir)
    config = _config(hub_env, tmp_path)

    def command(subject_twin: str, at: int, request: str, granted: bool) -> bytes:
        body = ConsentCommand(
            twins=(subject_twin,),
            purposes={"marketing": granted},
            notice="v1",
            request_id=request,
            ts_ms=at,
        )
        return seal_downlink(key, "consent", hub_env.brand, "broadcast", body, sent_ms=at)

    with _tap(hub_env, broadcast_topic(hub_env.brand, "consent")) as tap:
        async with _running(config) as agent:
            assert agent._book is not None
            dora, erin = agent._book.twin_of(DORA), agent._book.twin_of(ERIN)
            ok = await agent.ingest_many(
                [_signal(1, DORA, "coffee.brew", 1), _signal(2, ERIN, "coffee.brew", 1)]
            )
            assert [r.status for r in ok] == ["accepted", "accepted"]
            assert await agent.drained(15)  # the hub's acks tell the device the hub's time
            now = int(time.time() * 1000)
            # Signed by the hub, but eight days old: captured long ago, replayed today.
            before = agent.stats.get("downlinks_refused", 0)
            tap.replay(command(dora, now - 8 * 86_400_000, "ancient", True))
            await _refused_once_more(agent, before)
            assert agent.consent_state(DORA)["marketing"] is False
            # Two instances: a newer command about Dora, then an older one about Erin that
            # was delayed (other twin, other target): both apply.
            tap.replay(command(dora, now + 10, "newer", True))
            tap.replay(command(erin, now + 5, "late", True))
            assert await eventually(lambda: agent.consent_state(ERIN)["marketing"], within=10)
            assert agent.consent_state(DORA)["marketing"] is True


async def _roll_out(hub: Hub, env: HubEnv, version: int) -> str:
    """Upload segment-coffee@``version`` (signed with the hub key) and roll it out to all."""
    key = ensure_hub_key(env.config.keys.secrets_dir)
    data = _onnx.segment_onnx(len(COFFEE), seed=version)
    manifest = _onnx.make_manifest("segment", "coffee", data, COFFEE, key, version=version)
    form = aiohttp.FormData()
    form.add_field("manifest", manifest.to_json(), content_type="application/json")
    form.add_field("model", data, filename="model.onnx", content_type="application/octet-stream")
    base = f"{hub.api_url}/v1/brands/{env.brand}"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {env.token}"}) as session,
        session.post(f"{base}/models", data=form) as resp,
    ):
        assert resp.status == 201, await resp.text()
    status, body = await send_json(
        "POST", f"{base}/rollouts", {"model": manifest.ref, "target": {"all": True}}, env.token
    )
    assert status == 201, body
    return manifest.ref


def _offers(payload: bytes) -> set[str]:
    body = decode_body("model", open_envelope(payload).envelope.body)
    assert isinstance(body, ModelSet)
    return {ModelManifest.from_json(o.manifest.encode()).ref for o in body.models}


async def test_an_old_model_set_put_back_on_the_retained_topic_rolls_nothing_back(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    config = _config(hub_env, tmp_path, models={"enabled": True})
    with _tap(hub_env, topic(hub_env.brand, "dev-0", Channel.MODEL)) as tap:
        async with _running(config) as agent:
            assert agent._models is not None
            models = agent._models
            v2 = await _roll_out(hub, hub_env, 2)
            assert await eventually(lambda: models.running()["segment-coffee"] == v2, within=30)
            v3 = await _roll_out(hub, hub_env, 3)
            assert await eventually(lambda: models.running()["segment-coffee"] == v3, within=30)
            with tap._lock:
                old = next(p for p in tap.payloads if _offers(p) == {v2})
            # Anyone on the broker puts the captured old set back as the retained copy.
            before = agent.stats.get("downlinks_refused", 0)
            tap.replay(old, retain=True)
            await _refused_once_more(agent, before)
        # A restarted agent is handed that copy first thing: it must not roll back to v2.
        async with _running(config) as again:
            assert again._models is not None
            models = again._models
            await _refused_once_more(again, 0)
            assert models.running()["segment-coffee"] == v3
            assert again.stats["models_rolled_back"] == 0


async def test_a_replayed_old_desired_version_is_refused_also_after_a_restart(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    key = ensure_hub_key(hub_env.config.keys.secrets_dir)
    config = _config(hub_env, tmp_path)
    where = topic(hub_env.brand, "dev-0", Channel.DESIRED)

    def desired(version: int) -> bytes:
        body = Desired(version=version, settings={"mode": f"v{version}"})
        return seal_downlink(key, "desired", hub_env.brand, "dev-0", body)

    old, new = desired(1), desired(2)
    with _tap(hub_env, where) as tap:
        async with _running(config) as agent:
            assert agent._uplink is not None
            tap.replay(old)
            tap.replay(new)
            assert await eventually(
                lambda: (
                    agent._uplink is not None
                    and agent._uplink.desired is not None
                    and agent._uplink.desired.version == 2
                ),
                within=10,
            )
            before = agent.stats.get("downlinks_refused", 0)
            tap.replay(old)
            await _refused_once_more(agent, before)
            assert agent._uplink.desired is not None
            assert agent._uplink.desired.settings == {"mode": "v2"}
        async with _running(config) as again:
            assert again._uplink is not None
            assert again._uplink.desired is not None  # kept across the restart
            assert again._uplink.desired.version == 2
            before = again.stats.get("downlinks_refused", 0)
            tap.replay(old)
            await _refused_once_more(again, before)
            assert again._uplink.desired.settings == {"mode": "v2"}


async def test_a_replayed_tombstone_or_ack_removes_nothing_else(
    hub_env: HubEnv, tmp_path: Path
) -> None:
    """Never refused, by design: erasure only grows (a replay erases what is gone already)
    and a seq is never reused (a replayed ack names only deltas the device deleted)."""
    config = _config(hub_env, tmp_path)
    acks = _Tap(hub_env.services.mosquitto.port, topic(hub_env.brand, "dev-0", Channel.ACK))
    tombs = _Tap(hub_env.services.mosquitto.port, broadcast_topic(hub_env.brand, "tombstone"))
    try:
        async with _running(config) as agent:
            assert agent._book is not None
            assert agent._outbox is not None
            dora, erin = agent._book.twin_of(DORA), agent._book.twin_of(ERIN)
            async with Hub(hub_env.config) as hub:
                await hub.ready.wait()
                ok = await agent.ingest_many(
                    [_signal(1, DORA, "coffee.brew", 1), _signal(2, ERIN, "coffee.brew", 1)]
                )
                assert [r.status for r in ok] == ["accepted", "accepted"]
                assert await agent.drained(15)
                ack = await acks.next_after(0)
                await _post(hub, hub_env, "/privacy/erasure", {"subject": DORA})
                tombstone = await tombs.next_after(0)
                book = agent._book
                assert await eventually(lambda: book.is_erased(dora), within=10)
            # The hub is gone: what the device sends now stays in its outbox.
            assert (await agent.ingest(_signal(3, ERIN, "coffee.brew", 1))).status == "accepted"
            await agent.flush()
            depth, acked = agent.outbox_depth(), agent.stats["deltas_acked"]
            assert depth >= 1
            acks.replay(ack)
            assert await eventually(lambda: agent.stats["deltas_acked"] > acked, within=10)
            assert agent.outbox_depth() == depth  # the new deltas were not deleted
            erased, acked = agent.stats.get("twins_erased", 0), agent.stats["deltas_acked"]
            tombs.replay(tombstone)
            acks.replay(ack)  # delivered after the tombstone: once seen, the replay is done
            assert await eventually(lambda: agent.stats["deltas_acked"] > acked, within=10)
            assert agent.stats.get("twins_erased", 0) == erased
            assert agent.twin_value(erin, "coffee.brews_total") == 2
            assert agent.outbox_depth() == depth
    finally:
        acks.close()
        tombs.close()
