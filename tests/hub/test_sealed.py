"""Sealed deltas end to end: a real agent seals its deltas to the hub's box key, a real
mosquitto carries them, the real hub opens them and InfluxDB holds exactly the ops, while
a sniffer on the broker finds no twin id, field name or value in any payload. Sealed
deltas moved to another device or seq are refused and counted; an unsealed delta is
refused where the hub requires sealing; across an agent restart no nonce repeats."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from _fakes import FakeDevice, now_hlc
from _poll import eventually
from hub_env import HubEnv

from cloud_hub import Hub, ensure_hub_key
from cloud_hub.ingest import segment_topic
from edge_agent import Agent, AgentConfig, ConfigError, load_config
from protocol import (
    HLC,
    BodyOpener,
    BodySealer,
    BoxPrivateKey,
    BoxPublicKey,
    Channel,
    Delta,
    Envelope,
    HubSealer,
    SealedBody,
    SignalIn,
    SigningKey,
    decode_body,
    hub_box_key,
    open_envelope,
    packb,
    seal,
    seal_nonce,
    topic,
)
from twinsync.services import free_port

SUBJECT = "erin.sealed@example.test"
LEVELS = [12.345678, 23.456789, 34.567891, 45.678912, 56.789123]


class _Sniffer:
    """Keeps every delta payload of a brand the broker carries (anyone may subscribe)."""

    def __init__(self, port: int, brand: str, pattern: str = "ts/v1/{brand}/+/delta") -> None:
        self.payloads: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        ready = threading.Event()
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(pattern.format(brand=brand), qos=1)
        self.client.loop_start()
        assert ready.wait(10), "sniffer did not subscribe"

    def _on(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append((msg.topic, bytes(msg.payload)))

    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return [open_envelope(p).envelope for _t, p in self.payloads]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _agent_config(env: HubEnv, tmp: Path, device: str = "dev-0") -> AgentConfig:
    return load_config(
        env.bundles[device],
        {
            "mqtt": {"port": env.services.mosquitto.port},
            "outbox": {"path": str(tmp / f"{device}-outbox.sqlite")},
            "models": {"enabled": False},
            "ingest": {"port": free_port()},
            "sync": {"flush_interval_ms": 20},
        },
        environ={},
    )


def _signals(start: int, values: list[float]) -> list[SignalIn]:
    now = int(time.time() * 1000)
    out = []
    for i, value in enumerate(values):
        seq = start + 2 * i
        out.append(SignalIn(seq=seq, ts=now, subject=SUBJECT, name="coffee.brew", value=1))
        out.append(
            SignalIn(
                seq=seq + 1, ts=now, subject=SUBJECT, name="coffee.water_level_pct", value=value
            )
        )
    return out


def _opener(env: HubEnv) -> BodyOpener:
    return BodyOpener([hub_box_key(ensure_hub_key(env.config.keys.secrets_dir))])


def _ops(env: HubEnv, envelopes: list[Envelope]) -> set[tuple[Any, ...]]:
    """What the hub should have stored: every op of every distinct seq, opened."""
    opener, out, seen = _opener(env), set(), set()
    for e in envelopes:
        if (e.device, e.seq) in seen:
            continue
        seen.add((e.device, e.seq))
        delta = decode_body("delta", opener.open(e))
        assert isinstance(delta, Delta)
        for t in delta.twins:
            out |= {(e.device, t.twin, HLC.unpack(o.hlc).to_ns(), o.field, o.value) for o in t.ops}
    return out


def _rejected(hub: Hub, reason: str) -> float:
    return hub.metrics.get("twinsync_hub_rejected_total", reason=reason)


async def test_a_sealing_agent_syncs_and_the_broker_sees_no_content(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    sniffer = _Sniffer(hub_env.services.mosquitto.port, hub_env.brand)
    try:
        config = _agent_config(hub_env, tmp_path)
        assert config.security.seal_deltas is True  # what provisioning writes
        async with Agent(config) as agent:
            assert agent._book is not None
            twin = agent._book.twin_of(SUBJECT)
            results = await agent.ingest_many(_signals(1, LEVELS))
            assert {r.status for r in results} == {"accepted"}
            assert await agent.drained(15)
        envelopes = sniffer.envelopes()
        assert envelopes
        assert all(e.sealed for e in envelopes)
        # InfluxDB holds exactly the ops the device sealed: nothing lost, nothing extra.
        expected = _ops(hub_env, envelopes)
        assert {p[3] for p in expected} == {"coffee.brews_total", "coffee.water_level_pct"}
        assert {p[4] for p in expected if p[3] == "coffee.water_level_pct"} == set(LEVELS)
        assert await eventually(lambda: hub_env.points() == expected, within=10)
        # The broker saw none of it: search every payload's bytes.
        secrets = [twin, twin.split("-", 1)[1], "coffee", "brews_total", "water_level", SUBJECT]
        forms = [s.encode() for s in secrets]
        forms += [packb(v) for v in LEVELS] + [struct.pack(">d", v) for v in LEVELS]
        forms += [repr(v).encode() for v in LEVELS]
        with sniffer._lock:
            payloads = [p for _t, p in sniffer.payloads]
        for payload in payloads:
            for form in forms:
                assert form not in payload, form
        assert _rejected(hub, "unsealed") == 0
    finally:
        sniffer.close()


async def test_sealed_deltas_moved_to_another_device_or_seq_are_refused_and_counted(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    sniffer = _Sniffer(hub_env.services.mosquitto.port, hub_env.brand)
    other = FakeDevice(
        hub_env.bundles["dev-1"].parent, hub_env.brand, "dev-1", hub_env.services.mosquitto.port
    )
    try:
        async with Agent(_agent_config(hub_env, tmp_path)) as agent:
            await agent.ingest_many(_signals(1, LEVELS[:2]))
            assert await agent.drained(15)
        with sniffer._lock:
            original = sniffer.payloads[0][1]
        env = open_envelope(original).envelope
        await eventually(lambda: bool(hub_env.points()), within=10)
        before = hub_env.points()
        dev0_key = SigningKey.from_bytes(
            (hub_env.bundles["dev-0"].parent / "device.key").read_bytes()
        )

        async def refused(payload: bytes, on: str, reason: str) -> None:
            count = _rejected(hub, reason)
            other.publish(payload, topic_=on)
            assert await eventually(lambda: _rejected(hub, reason) == count + 1, within=10), reason

        dev1_topic = topic(hub_env.brand, "dev-1", Channel.DELTA)
        dev0_topic = topic(hub_env.brand, "dev-0", Channel.DELTA)
        # Replayed as is on another device's topic: the header does not match the topic.
        await refused(original, dev1_topic, "topic_mismatch")
        # A compromised dev-1 re-signs dev-0's sealed body as its own: the AD names dev-0.
        as_dev1 = replace(env, device="dev-1", kid=other.key.kid, seq=env.seq + 10_000)
        await refused(seal(as_dev1, other.key), dev1_topic, "seal_tag")
        # The seq altered and re-signed with the right key: the AD still says the old seq.
        await refused(seal(replace(env, seq=env.seq + 10_001), dev0_key), dev0_topic, "seal_tag")
        # The seq altered by someone without the key: the signature fails first.
        header = [env.version, env.kind, env.brand, env.device, env.seq + 10_002, env.kid]
        altered = packb([*header, env.sent_ms, env.body])
        signature = open_envelope(original).signature
        await refused(packb([altered, signature]), dev0_topic, "signature")
        # The body sealed to a hub box key this hub does not hold.
        stranger = BodySealer(BoxPrivateKey.generate(), BoxPrivateKey.generate().public)
        plain = replace(env, version=1, body=packb({"t": []}), seq=env.seq + 10_003)
        await refused(seal(stranger.seal(plain), dev0_key), dev0_topic, "unknown_box_key")
        # Nothing was written, no refused seq was acked, and the hub is still serving.
        assert hub_env.points() == before
        refused_seqs = {env.seq + n for n in range(10_000, 10_004)}
        assert not refused_seqs & (other.acked_seqs() | set(other.rejected()))
        other.publish(other.delta(7, {other.twin("ok"): [(now_hlc(), "coffee.strength", 2)]}))
        await other.wait_acked({7})
    finally:
        other.close()
        sniffer.close()


async def test_an_unsealed_delta_is_refused_where_the_hub_requires_sealing(
    hub_env: HubEnv,
) -> None:
    limits = hub_env.config.limits.model_copy(update={"require_sealed_brands": [hub_env.brand]})
    config = hub_env.config.model_copy(update={"limits": limits})
    device = FakeDevice(
        hub_env.bundles["dev-0"].parent, hub_env.brand, "dev-0", hub_env.services.mosquitto.port
    )
    try:
        async with Hub(config) as hub:
            await hub.ready.wait()
            twin = device.twin("fay")
            plain = device.delta(3, {twin: [(now_hlc(), "coffee.water_level_pct", 61.25)]})
            device.publish(plain)
            assert await eventually(lambda: _rejected(hub, "unsealed") == 1, within=10)
            # Not acked (nor rejected for good): the device keeps it and may resend sealed.
            await asyncio.sleep(0.3)
            assert 3 not in device.acked_seqs() | set(device.rejected())
            assert hub_env.points() == set()
            # The same delta, sealed to the hub box key from the bundle, goes through.
            hub_box = BoxPublicKey.from_hex(
                (hub_env.bundles["dev-0"].parent / "hub-box.pub").read_text()
            )
            sealer = BodySealer(BoxPrivateKey.generate(), hub_box)
            env = open_envelope(plain).envelope
            device.publish(seal(sealer.seal(env), device.key))
            await device.wait_acked({3})
            assert {p[4] for p in hub_env.points()} == {61.25}
            # Status messages are not deltas: they stay signed-only and are accepted.
            device.publish(device.status(), Channel.STATUS)
            await asyncio.sleep(0.3)
            assert _rejected(hub, "unsealed") == 1
    finally:
        device.close()


async def test_an_agent_restart_keeps_its_box_key_and_never_repeats_a_nonce(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    sniffer = _Sniffer(hub_env.services.mosquitto.port, hub_env.brand)
    try:
        config = _agent_config(hub_env, tmp_path)
        kids: list[str] = []
        seqs: list[set[int]] = []
        for run, start in enumerate((1, 101)):
            async with Agent(config) as agent:
                assert agent._outbox is not None
                kids.append(agent._outbox.box_key().kid)
                await agent.ingest_many(_signals(start, LEVELS[run::2]))
                assert await agent.drained(15)
            seqs.append({e.seq for e in sniffer.envelopes()} - set().union(*seqs))
        # The key lives in the outbox beside the seq counter: both survived the restart,
        # so the second run continues the first's seqs (and nonces) instead of reusing them.
        assert kids[0] == kids[1]
        assert seqs[0]
        assert seqs[1]
        assert min(seqs[1]) > max(seqs[0])
        sealed = [(e, SealedBody.parse(e.body)) for e in sniffer.envelopes()]
        assert {s.device_key.kid for _e, s in sealed} == {kids[0]}
        by_seq: dict[int, set[bytes]] = {}
        for e, s in sealed:
            by_seq.setdefault(e.seq, set()).add(s.ciphertext)
        # One ciphertext per seq (a resend is byte-identical), one nonce per seq.
        assert all(len(c) == 1 for c in by_seq.values())
        nonces = {seal_nonce("delta", seq) for seq in by_seq}
        assert len(nonces) == len(by_seq) >= 2
        assert await eventually(
            lambda: hub_env.points() == _ops(hub_env, [e for e, _s in sealed]), within=10
        )
    finally:
        sniffer.close()


async def test_segment_ops_in_a_sealed_delta_are_still_announced(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    """The hub looks for segment ops in the opened body, not in the (sealed) payload."""
    announced = _Sniffer(hub_env.services.mosquitto.port, hub_env.brand, segment_topic("{brand}"))
    try:
        hub_box = BoxPublicKey.from_hex(
            (hub_env.bundles["dev-0"].parent / "hub-box.pub").read_text()
        )
        twin, hlc = device.twin("gus"), now_hlc()
        plain = device.delta(4, {twin: [(hlc, "coffee.segment", 2)]})
        sealed = BodySealer(BoxPrivateKey.generate(), hub_box).seal(open_envelope(plain).envelope)
        device.publish(seal(sealed, device.key))
        await device.wait_acked({4})
        assert await eventually(lambda: bool(announced.payloads), within=10)
        # Announcements are sealed to the hub instances too (tests/hub/test_hub_events_sealed.py).
        payload = announced.payloads[0][1]
        assert twin.encode() not in payload
        opened = HubSealer(ensure_hub_key(hub_env.config.keys.secrets_dir)).open(
            payload, brand=hub_env.brand, channel="segment-changes", max_bytes=1 << 20
        )
        assert twin.encode() in opened.body
    finally:
        announced.close()


def test_seal_deltas_without_the_hub_box_key_fails_at_start_up(hub_env: HubEnv) -> None:
    """An explicit 'seal_deltas = true' never falls back to sending in the clear."""
    bundle = hub_env.bundles["dev-2"]
    (bundle.parent / "hub-box.pub").unlink()
    with pytest.raises(ConfigError, match=r"hub-box\.pub"):
        load_config(bundle, environ={}).security.hub_box_key()
    auto = load_config(bundle, {"security": {"seal_deltas": None}}, environ={})
    assert auto.security.hub_box_key() is None  # an old bundle: unsealed, with a warning
    (bundle.parent / "hub-box.pub").write_text("not hex")
    with pytest.raises(ConfigError, match="bad hub box key"):
        load_config(bundle, environ={}).security.hub_box_key()
