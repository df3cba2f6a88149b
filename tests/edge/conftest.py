"""Edge agent fixtures: device bundles in tmp_path and a test-only hub acker.

The acker is a fake of *our own* seam (the hub's ack protocol), not of MQTT: it talks to
the real mosquitto with paho, verifies device envelopes with ``protocol`` and publishes
hub-signed acks, recording every op it receives so tests can count losses and duplicates.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import AgentConfig, load_config
from protocol import (
    Ack,
    Channel,
    Delta,
    Envelope,
    Op,
    SigningKey,
    VerifyKey,
    decode_body,
    open_envelope,
    packb,
    seal,
    topic,
)


@dataclass
class Bundle:
    """A provisioned device bundle written into a temp directory."""

    root: Path
    brand: str
    device: str
    device_key: SigningKey
    hub_key: SigningKey
    brand_key: bytes

    @property
    def toml(self) -> Path:
        return self.root / "agent.toml"

    def config(self, port: int, **sections: dict[str, Any]) -> AgentConfig:
        overrides: dict[str, Any] = {"mqtt": {"port": port}, "sync": {"flush_interval_ms": 20}}
        for name, values in sections.items():
            overrides.setdefault(name, {}).update(values)
        return load_config(self.toml, overrides, environ={})


def make_bundle(
    root: Path,
    brand: str,
    device: str,
    product: str = "coffee",
    *,
    models: bool = False,
    consented: bool = True,
) -> Bundle:
    root.mkdir(parents=True, exist_ok=True)
    device_key, hub_key = SigningKey.generate(), SigningKey.generate()
    brand_key = uuid.uuid4().bytes * 2
    (root / "device.key").write_bytes(device_key.to_pem())
    (root / "brand.key").write_bytes(brand_key)
    (root / "hub.pub").write_text(hub_key.public.hex())
    (root / "agent.toml").write_text(
        f'[device]\nbrand = "{brand}"\nid = "{device}"\nproduct = "{product}"\n'
        'key_file = "device.key"\n\n[pseudonym]\nkey_file = "brand.key"\nepoch = 1\n\n'
        '[hub]\npublic_key_files = ["hub.pub"]\n\n[outbox]\npath = "state/outbox.sqlite"\n'
        # These tests pin the ops signals make; model outputs have tests of their own.
        f"\n[models]\nenabled = {'true' if models else 'false'}\n"
        # Tests of signal rules run as if every customer had said yes to every purpose;
        # consent has tests of its own (the shipped default is off).
        f"\n[consent]\noptional_default = {'true' if consented else 'false'}\n"
    )
    return Bundle(root, brand, device, device_key, hub_key, brand_key)


@pytest.fixture
def bundle(tmp_path: Path, unique: str) -> Bundle:
    return make_bundle(tmp_path / "bundle", f"b{unique}", f"d{unique}")


@dataclass
class Acker:
    """Receives deltas for one device, records their ops and (optionally) acks them."""

    bundle: Bundle
    port: int
    ack: bool = True
    sign_with: SigningKey | None = None
    seqs: list[int] = field(default_factory=list)
    ops: list[tuple[str, Op]] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    rejected_seqs: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: mqtt.Client | None = None

    def start(self) -> Acker:
        b = self.bundle
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"acker-{uuid.uuid4().hex[:6]}"
        )
        self._client.on_message = self._on_message
        ready = threading.Event()
        self._client.on_subscribe = lambda *_a: ready.set()
        self._client.on_connect = lambda c, *_a: c.subscribe(
            topic(b.brand, b.device, Channel.DELTA), qos=1
        )
        self._client.connect("127.0.0.1", self.port)
        self._client.loop_start()
        assert ready.wait(10), "acker did not subscribe"
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        b = self.bundle
        payload = bytes(msg.payload)
        env = open_envelope(payload).verify(b.device_key.public)
        delta = decode_body("delta", env.body)
        assert isinstance(delta, Delta)
        with self._lock:
            self.payloads.append(payload)
            if env.seq not in self.seqs:
                self.seqs.append(env.seq)
                self.ops.extend((t.twin, op) for t in delta.twins for op in t.ops)
        if self.ack:
            self.send_ack(Ack(seqs=(env.seq,), hub_ms=int(time.time() * 1000)))

    def send_ack(self, ack: Ack) -> None:
        b, key = self.bundle, self.sign_with or self.bundle.hub_key
        data = seal(
            Envelope(
                "ack", b.brand, b.device, 0, key.kid, int(time.time() * 1000), packb(ack.to_wire())
            ),
            key,
        )
        assert self._client is not None
        self._client.publish(topic(b.brand, b.device, Channel.ACK), data, qos=1)

    def unique_ops(self) -> list[tuple[str, Op]]:
        with self._lock:
            return list(self.ops)


@pytest.fixture
def acker_factory() -> Iterator[Callable[..., Acker]]:
    made: list[Acker] = []

    def make(bundle: Bundle, port: int, **kw: Any) -> Acker:
        a = Acker(bundle, port, **kw).start()
        made.append(a)
        return a

    yield make
    for a in made:
        a.stop()


def hub_verify_key(bundle: Bundle) -> VerifyKey:
    return bundle.hub_key.public
