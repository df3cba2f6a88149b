"""The reference a twin hub is compared with: a Node-RED / Telegraf-style flow.

MQTT subscribe (QoS 1, acknowledged on receipt, as mqtt-in nodes and Telegraf's
``mqtt_consumer`` do) → decode the payload → one line per value → batched InfluxDB
writes. No signature check, no registry, no schema or timestamp checks, no replay window,
no merge rules, no acks to the device, no "PUBACK only after the write is durable": a
message is gone from the broker before it is stored. It reads the same delta envelopes
the hub gets (unsealed: a flow has no hub key), with msgpack and a bare aiohttp client,
and is timed exactly like the hub (messages queued in its persistent session while it is
offline, then the clock runs until every line is written), so the hub's rate over this
one is the price of the twin semantics.

Also here: what sealing and signing cost per delta, on each side (:func:`seal_costs`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgpack
import paho.mqtt.client as mqtt

from protocol import (
    FIELDS,
    HLC,
    BodyOpener,
    BodySealer,
    BoxPrivateKey,
    Delta,
    Envelope,
    Op,
    SealedBody,
    SigningKey,
    TwinOps,
    decode_body,
    hub_box_key,
    open_envelope,
    packb,
    pseudonymize,
    seal,
)

from ._swarm_devices import usage_fields

__all__ = ["BrokerDrain", "FlowReference", "seal_costs"]

_TYPES = {name: spec.type for name, spec in FIELDS.items()}


def _line(brand: str, device: str, twin: str, op: list[Any]) -> str:
    hlc, field, value = op
    kind = _TYPES.get(field, "float")
    if kind == "int":
        text = f"{value}i"
    elif kind == "bool":
        text = "true" if value else "false"
    elif kind == "str":
        text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        text = repr(value)
    ts = (hlc >> 16) * 1_000_000 + (hlc & 0xFFFF)
    return f"twin,brand={brand},device={device},twin={twin} {field}={text} {ts}"


class FlowReference:
    """One flow instance: a paho subscriber feeding a batching InfluxDB writer."""

    def __init__(
        self,
        port: int,
        influx: Mapping[str, str],
        database: str,
        *,
        filter_: str = "ts/v1/+/+/delta",
        batch: int = 5000,
        flush_ms: int = 50,
        writers: int = 2,
    ) -> None:
        self.port = port
        self.influx = influx
        self.database = database
        self.filter = filter_
        self.batch = batch
        self.flush_s = flush_ms / 1000
        self.writers = writers
        self.client_id = f"flow-{database}"
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.received = 0

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        # What a flow's "decode" node does: unpack the envelope and the body, no checks.
        signed, _signature = msgpack.unpackb(msg.payload)
        _v, _k, brand, device, _seq, _kid, _sent, body = msgpack.unpackb(signed)
        lines = [
            _line(brand, device, twin, op)
            for twin, ops in msgpack.unpackb(body, strict_map_key=False)["t"]
            for op in ops
        ]
        with self._lock:
            self._lines += lines
            self.received += 1

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False
        )
        client.on_message = self._on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *_a: subscribed.set()
        client.on_connect = lambda c, *_a: c.subscribe(self.filter, qos=1)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the flow's subscription was not confirmed")
        return client

    def subscribe_once(self) -> None:
        """Create the persistent session (messages published from now on are queued)."""
        client = self._client()
        client.disconnect()
        client.loop_stop()

    async def drain(self, lines_expected: int) -> tuple[float, int, int]:
        """Connect, write until ``lines_expected`` lines are stored; (seconds, messages
        received, lines written)."""
        headers = {
            "Authorization": aiohttp.encode_basic_auth(
                self.influx["username"], self.influx["password"]
            )
        }
        url = self.influx["url"]
        async with aiohttp.ClientSession(headers=headers) as session:
            await session.post(f"{url}/query", data={"q": f'CREATE DATABASE "{self.database}"'})
            t0 = time.perf_counter()
            client = await asyncio.to_thread(self._client)
            written = 0
            gate = asyncio.Semaphore(self.writers)
            pending: set[asyncio.Task[int]] = set()

            async def write(lines: list[str]) -> int:
                async with (
                    gate,
                    session.post(
                        f"{url}/write",
                        params={"db": self.database, "precision": "ns"},
                        data="\n".join(lines).encode(),
                    ) as resp,
                ):
                    if resp.status != 204:
                        raise RuntimeError(f"flow write failed: {resp.status}")
                return len(lines)

            try:
                while written < lines_expected:
                    await asyncio.sleep(self.flush_s)
                    with self._lock:
                        lines, self._lines = self._lines, []
                    for i in range(0, len(lines), self.batch):
                        pending.add(asyncio.create_task(write(lines[i : i + self.batch])))
                    done = {t for t in pending if t.done()}
                    pending -= done
                    written += sum(t.result() for t in done)
                    if not lines and not pending and written < lines_expected:
                        await asyncio.sleep(self.flush_s)
                written += sum(await asyncio.gather(*pending))
            finally:
                client.disconnect()
                client.loop_stop()
            return time.perf_counter() - t0, self.received, written


class BrokerDrain(FlowReference):
    """The broker's own ceiling for a paho consumer, measured like the hub and the flow:
    queued messages drained by a subscriber that only counts them (acked on receipt)."""

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received += 1

    def count(self, expected: int, timeout_s: float = 300) -> float:
        """Connect and return the seconds until ``expected`` messages arrived."""
        t0 = time.perf_counter()
        client = self._client()
        try:
            deadline = time.monotonic() + timeout_s
            while self.received < expected:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker drain: {self.received}/{expected} arrived")
                time.sleep(0.002)
            return time.perf_counter() - t0
        finally:
            client.disconnect()
            client.loop_stop()


def _timed(fn: Any, n: int) -> float:
    """Median µs of ``fn(i)`` over 5 rounds of ``n`` calls."""
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        rounds.append((time.perf_counter() - t0) / n * 1e6)
    return sorted(rounds)[2]


def _costs(
    delta: Delta, n: int, now: int, keys: tuple[SigningKey, BoxPrivateKey]
) -> dict[str, Any]:
    device_key, hub = keys
    sealer = BodySealer(BoxPrivateKey.generate(), hub.public)
    opener = BodyOpener([hub])
    body = packb(delta.to_wire())

    def env(i: int) -> Envelope:
        return Envelope("delta", "bench", "dev-1", i + 1, device_key.kid, now, body)

    plain = [seal(env(i), device_key) for i in range(n)]
    sealed = [seal(sealer.seal(env(i)), device_key) for i in range(n)]
    plain_env = [open_envelope(p) for p in plain]
    sealed_env = [open_envelope(p) for p in sealed]
    return {
        "ops": delta.op_count,
        "plain_bytes": len(plain[0]),
        "sealed_bytes": len(sealed[0]),
        "encode_us": _timed(lambda _i: packb(delta.to_wire()), n),
        "seal_us": _timed(lambda i: sealer.seal(env(i)), n),
        "sign_us": _timed(lambda i: seal(env(i), device_key), n),
        "decode_us": _timed(lambda i: open_envelope(sealed[i]), n),
        "verify_us": _timed(lambda i: plain_env[i].verify(device_key.public), n),
        "parse_us": _timed(lambda i: SealedBody.parse(sealed_env[i].envelope.body), n),
        "open_us": _timed(lambda i: opener.open(sealed_env[i].envelope), n),
        "body_us": _timed(lambda _i: decode_body("delta", body), n),
    }


def seal_costs(ops_list: tuple[int, ...] = (1, 10), n: int = 2000) -> list[dict[str, Any]]:
    """Per delta, in µs on one core: the device's encode, seal and sign; the hub's
    envelope decode, signature check, seal open (cached AEAD) and body decode; bytes."""
    keys = (SigningKey.generate(), hub_box_key(SigningKey.generate()))
    twin = pseudonymize(os.urandom(32), 1, "customer@example.com")
    fields = [f for f in usage_fields("thermostat") if FIELDS[f].type == "float"]
    now = time.time_ns() // 1_000_000
    out = []
    for ops in ops_list:
        ops_ = tuple(Op(HLC(now, k).pack(), fields[k % len(fields)], 20.5 + k) for k in range(ops))
        out.append(_costs(Delta.model_construct(twins=(TwinOps(twin, ops_),)), n, now, keys))
    return out
