"""Test doubles of *our own* seams: a hand-driven device that signs real envelopes.

It talks to the real broker with paho; nothing here replaces mosquitto or InfluxDB.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
from _poll import eventually
from paho.mqtt.enums import CallbackAPIVersion

from protocol import (
    HLC,
    Ack,
    Channel,
    Delta,
    Envelope,
    Op,
    SigningKey,
    Status,
    TwinOps,
    VerifyKey,
    decode_body,
    open_envelope,
    packb,
    pseudonymize,
    seal,
    topic,
)


class FakeDevice:
    """A provisioned device whose messages the test composes by hand."""

    def __init__(self, bundle: Path, brand: str, device: str, mqtt_port: int) -> None:
        self.brand, self.device = brand, device
        self.key = SigningKey.from_bytes((bundle / "device.key").read_bytes())
        self.brand_key = (bundle / "brand.key").read_bytes()
        self.hub_key = VerifyKey.from_hex((bundle / "hub.pub").read_text())
        self.acks: list[Ack] = []
        self._acked = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{device}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", mqtt_port)
        self.client.subscribe(topic(brand, device, Channel.ACK), qos=1)
        self.client.loop_start()

    def twin(self, subject: str) -> str:
        return pseudonymize(self.brand_key, 1, subject)

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        env = open_envelope(msg.payload).verify(self.hub_key)
        body = decode_body(env.kind, env.body)
        assert isinstance(body, Ack)
        with self._acked:
            self.acks.append(body)
            self._acked.notify_all()

    def envelope(
        self,
        kind: str,
        seq: int,
        body: bytes,
        *,
        key: SigningKey | None = None,
        device: str | None = None,
        sent_ms: int | None = None,
    ) -> bytes:
        key = key or self.key
        env = Envelope(
            kind=kind,
            brand=self.brand,
            device=device or self.device,
            seq=seq,  # type: ignore[arg-type]
            kid=key.kid,
            sent_ms=sent_ms or time.time_ns() // 1_000_000,
            body=body,
        )
        return seal(env, key)

    def delta(self, seq: int, ops: dict[str, list[tuple[int, str, object]]], **kw: object) -> bytes:
        twins = tuple(TwinOps(t, tuple(Op(h, f, v) for h, f, v in o)) for t, o in ops.items())  # type: ignore[arg-type]
        return self.envelope("delta", seq, packb(Delta(twins=twins).to_wire()), **kw)  # type: ignore[arg-type]

    def status(self, online: bool = True) -> bytes:
        body = Status(online=online, product="coffee", agent_version="test", outbox_depth=2)
        return self.envelope("status", 0, packb(body.to_wire()))

    def publish(
        self, payload: bytes, channel: Channel = Channel.DELTA, *, topic_: str | None = None
    ) -> None:
        info = self.client.publish(
            topic_ or topic(self.brand, self.device, channel), payload, qos=1
        )
        info.wait_for_publish(10)

    def acked_seqs(self) -> set[int]:
        with self._acked:
            return {s for a in self.acks for s in a.seqs}

    def rejected(self) -> dict[int, str]:
        with self._acked:
            return {r.seq: r.reason for a in self.acks for r in a.rejected}

    async def wait_acked(self, seqs: set[int], within: float = 15) -> None:
        def answered() -> bool:
            return seqs <= (self.acked_seqs() | set(self.rejected()))

        if not await eventually(answered, within=within, every=0.05):
            raise AssertionError(f"not acked: {sorted(seqs - self.acked_seqs())}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def get_json(url: str, status: int = 200, token: str | None = None) -> Any:
    """GET ``url`` with aiohttp (never block the loop the hub runs in) and check the status;
    ``token`` is sent as the API key."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        body = await resp.json()
        assert resp.status == status, (resp.status, body)
        return body


async def send_json(
    method: str, url: str, body: object, token: str | None = None
) -> tuple[int, Any]:
    """``method`` ``url`` with a JSON body (and ``token`` as the API key): (status, JSON)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


def now_hlc(offset_ms: int = 0, counter: int = 0) -> int:
    """A packed HLC near now (ms precision)."""
    return HLC(time.time_ns() // 1_000_000 + offset_ms, counter).pack()
