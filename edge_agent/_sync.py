"""sync: the uplink to the hub over MQTT (aiomqtt), with at-least-once delivery.

The oldest ``inflight`` unacked deltas are on the wire at any time; each is resent after
``ack_timeout_s`` (doubling per attempt, capped), and all of them again after a reconnect,
oldest first. Only a hub-signed ack (or a hub-signed permanent rejection) removes a delta
from the outbox. Each delta is sealed (signed, ``sent_ms`` = now) when it is sent, so the
hub measures clock skew on every attempt. With ``security.seal_deltas`` on, each delta
body is first encrypted to the hub (``protocol.BodySealer``, nonce from the seq), so the
broker sees no twin id, field or value; status messages stay signed-only (they carry no
customer data). The retained status topic says online/offline; the last will is a
pre-signed offline status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

import aiomqtt

from protocol import (
    BROADCAST,
    Ack,
    BodySealer,
    Channel,
    Clock,
    ConsentCommand,
    Desired,
    Envelope,
    ModelSet,
    OfferExposure,
    Status,
    TagsOffer,
    Tombstones,
    TwinSyncError,
    broadcast_topic,
    decode_body,
    open_envelope,
    packb,
    seal,
    topic,
)

from ._config import AgentConfig, Keys
from ._outbox import Outbox

if TYPE_CHECKING:
    from ._models import ModelStore
    from ._rollout import ModelUpdater

__all__ = ["Uplink"]

log = logging.getLogger("edge_agent.sync")
AGENT_VERSION = "0.1.0"


class Uplink:
    """Owns the MQTT connection; :meth:`run` until :meth:`close` is called.

    Every collaborator comes in at construction, by keyword: what the status reports
    (``status_extra``, the model store ``models``), where hub commands go (``on_consent``,
    ``on_tombstones``, the model ``updater``; None: that kind is not applied) and the
    ``status_changed`` event that others set to publish the status now.
    """

    def __init__(
        self,
        *,
        config: AgentConfig,
        keys: Keys,
        outbox: Outbox,
        clock: Clock,
        stats: dict[str, int],
        status_extra: Callable[[], dict[str, int]],
        status_changed: asyncio.Event | None = None,
        models: ModelStore | None = None,
        updater: ModelUpdater | None = None,
        on_consent: Callable[[ConsentCommand], None] | None = None,
        on_tombstones: Callable[[Tombstones], None] | None = None,
        on_tags: Callable[[bytes], bool] | None = None,
        on_offer: Callable[[OfferExposure], None] | None = None,
    ) -> None:
        self._config = config
        self._keys = keys
        self._outbox = outbox
        self._clock = clock
        self._stats = stats
        self._status_extra = status_extra
        self.wake = asyncio.Event()
        self.acked = asyncio.Event()
        self.connected = asyncio.Event()
        self._closing = asyncio.Event()
        dev = config.device
        self._delta_topic = topic(dev.brand, dev.id, Channel.DELTA)
        self._status_topic = topic(dev.brand, dev.id, Channel.STATUS)
        self._ack_topic = topic(dev.brand, dev.id, Channel.ACK)
        self._desired_topic = topic(dev.brand, dev.id, Channel.DESIRED)
        self._model_topic = topic(dev.brand, dev.id, Channel.MODEL)
        self._offer_topic = topic(dev.brand, dev.id, Channel.OFFER)
        self._tombstone_topic = broadcast_topic(dev.brand, "tombstone")
        self._consent_topic = broadcast_topic(dev.brand, "consent")
        self._tags_topic = broadcast_topic(dev.brand, "tags")
        # called with each hub-signed tag catalog document (edge_agent._tags.TagBook)
        self._on_tags = on_tags
        # called with each hub-signed consent command (the brand backend's changes)
        self._on_consent = on_consent
        # called with each hub-signed tombstone (erased twins)
        self._on_tombstones = on_tombstones
        # called with each hub-signed offer exposure (the strategy lab's treated twins)
        self._on_offer = on_offer
        #: set to publish the status now instead of at the next heartbeat
        self.status_changed = asyncio.Event() if status_changed is None else status_changed
        #: The newest hub-signed desired settings seen (nothing applies them yet); kept
        #: across restarts with the version floor (edge_agent._freshness).
        self.desired: Desired | None = outbox.freshness.desired()
        # the agent's model store, when models run: reported in the device status
        self._models = models
        # installs the models the hub's rollouts assign (None: models off)
        self._updater = updater
        self._attempts: dict[int, int] = {}
        hub_box = config.security.hub_box_key()
        #: seals delta bodies to the hub (None: deltas are signed only, in the clear)
        self.sealer = None if hub_box is None else BodySealer(outbox.box_key(), hub_box)
        if self.sealer is None:
            # An explicit 'seal_deltas = false' is the operator's choice; a bundle without
            # the hub box key (made before sealing existed) deserves a louder note.
            (log.info if config.security.seal_deltas is False else log.warning)(
                "delta bodies are sent unsealed: the broker can read twin ids, fields and "
                "values (docs/privacy.md, 'Sealed deltas')"
            )
        else:
            log.info(
                "sealing deltas to hub box key %s with device box key %s",
                self.sealer.hub_kid,
                self.sealer.device_kid,
            )

    def _seal(self, kind: Literal["delta", "status"], seq: int, body: bytes) -> bytes:
        dev = self._config.device
        env = Envelope(
            kind=kind,
            brand=dev.brand,
            device=dev.id,
            seq=seq,
            kid=self._keys.device.kid,
            sent_ms=self._clock.now_ms(),
            body=body,
        )
        if kind == "delta" and self.sealer is not None:
            # Encrypt, then sign: the hub checks the signature before it decrypts anything.
            env = self.sealer.seal(env)
        return seal(env, self._keys.device)

    def _status(self, online: bool) -> bytes:
        extra = self._status_extra()
        body = Status(
            online=online,
            product=self._config.device.product,
            agent_version=AGENT_VERSION,
            outbox_depth=self._outbox.depth,
            outbox_bytes=self._outbox.bytes,
            dropped=extra.get("dropped", 0),
            rejected_signals=extra.get("rejected", 0),
            last_seq=extra.get("last_seq", 0),
            **self._models_status(),
        )
        return self._seal("status", 0, packb(body.to_wire()))

    def _models_status(self) -> dict[str, Any]:
        store = self._models
        if store is None:
            return {}
        return {
            "models": tuple(sorted(store.running().values())),
            "model_failures": {name: f"{f.reason} {f.ref}" for name, f in store.failures().items()},
        }

    def _client(self) -> aiomqtt.Client:
        m = self._config.mqtt
        tls = ssl.create_default_context(cafile=m.ca_file or None) if m.tls else None
        return aiomqtt.Client(
            m.host,
            m.port,
            identifier=self._client_id(),
            username=m.username or None,
            password=self._keys.mqtt_password or None,
            keepalive=m.keepalive_s,
            clean_session=False,
            tls_context=tls,
            will=aiomqtt.Will(self._status_topic, self._status(False), qos=1, retain=True),
        )

    def _client_id(self) -> str:
        # Brokers set up by 'twinsync hub broker-auth' bind each device's account to this
        # id, so no credentials can take over another client's connection or session.
        return self._config.mqtt.client_id or self._expected_client_id

    @property
    def _expected_client_id(self) -> str:
        return f"{self._config.device.brand}.{self._config.device.id}"

    def _log_refusal(self, exc: aiomqtt.MqttCodeError) -> None:
        """Say why a broker refused the connection and what to change."""
        m, expected = self._config.mqtt, self._expected_client_id
        wrong_id = (
            f"mqtt.client_id {m.client_id!r} is not {expected!r}, the only id the broker "
            "accepts for this device's account ('twinsync hub broker-auth' binds them): "
            "remove mqtt.client_id"
            if m.client_id and m.client_id != expected
            else "check mqtt.username and the bundle's password file, and that the broker "
            "has this device ('twinsync hub broker-auth --apply')"
        )
        log.error(
            "broker %s:%d refused user %r with client id %r (%s): %s",
            m.host,
            m.port,
            m.username,
            self._client_id(),
            exc,
            wrong_id,
        )

    async def close(self) -> None:
        """Ask :meth:`run` to publish the offline status and return."""
        self._closing.set()

    async def run(self) -> None:
        """Connect, sync, reconnect with capped jittered backoff; return once closed."""
        delay = 0.5
        while not self._closing.is_set():
            entered = False
            try:
                async with self._client() as client:
                    entered = True
                    delay = 0.5
                    await self._session(client)
                    return
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                if not entered and _refused(exc):
                    self._log_refusal(exc)
                log.warning("mqtt connection lost (%s); reconnecting in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay * random.uniform(0.7, 1.3)):
                    await self._closing.wait()
            delay = min(delay * 2, self._config.sync.reconnect_max_s)

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self._ack_topic, qos=1)
        await client.subscribe(self._desired_topic, qos=1)
        if self._updater is not None:
            await client.subscribe(self._model_topic, qos=1)
        await client.subscribe(self._tombstone_topic, qos=1)
        await client.subscribe(self._consent_topic, qos=1)
        if self._on_tags is not None:
            await client.subscribe(self._tags_topic, qos=1)
        if self._on_offer is not None:
            await client.subscribe(self._offer_topic, qos=1)
        await client.publish(self._status_topic, self._status(True), qos=1, retain=True)
        self.connected.set()
        log.info("connected to mqtt://%s:%d", self._config.mqtt.host, self._config.mqtt.port)
        inflight: dict[int, float] = {}
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._receive(client, inflight), name="edge_agent.uplink.acks"),
                    tg.create_task(self._send(client, inflight), name="edge_agent.uplink.deltas"),
                    tg.create_task(self._heartbeat(client), name="edge_agent.uplink.status"),
                ]
                await self._closing.wait()
                for task in tasks:
                    task.cancel()
        except* aiomqtt.MqttError as group:
            # A lost connection fails every task of the session at once; the group hides
            # that from run()'s reconnect loop, so surface the first cause plainly.
            self.connected.clear()
            raise group.exceptions[0] from None
        self.connected.clear()
        # A clean disconnect does not fire the will: say offline ourselves.
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(2):
                await client.publish(self._status_topic, self._status(False), qos=1, retain=True)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.sync.status_interval_s):
                    await self.status_changed.wait()
            self.status_changed.clear()
            await client.publish(self._status_topic, self._status(True), qos=1, retain=True)

    async def _send(self, client: aiomqtt.Client, inflight: dict[int, float]) -> None:
        sync = self._config.sync
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for seq, sent in list(inflight.items()):
                timeout = sync.ack_timeout_s * min(2 ** (self._attempts.get(seq, 1) - 1), 8)
                if now - sent > timeout:
                    del inflight[seq]  # resend below
                    self._stats["resends"] += 1
            for row in self._outbox.unacked(sync.inflight):
                if row.seq in inflight:
                    continue
                await client.publish(
                    self._delta_topic, self._seal("delta", row.seq, row.body), qos=1
                )
                inflight[row.seq] = loop.time()
                self._attempts[row.seq] = self._attempts.get(row.seq, 0) + 1
                self._stats["deltas_sent"] += 1
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(1.0, sync.ack_timeout_s)):
                    await self.wake.wait()

    def _kind_of(
        self, received: aiomqtt.Topic
    ) -> Literal["ack", "desired", "model", "tombstone", "consent", "tags", "offer"]:
        if received.matches(self._offer_topic):
            return "offer"
        if received.matches(self._tombstone_topic):
            return "tombstone"
        if received.matches(self._tags_topic):
            return "tags"
        if received.matches(self._consent_topic):
            return "consent"
        if received.matches(self._desired_topic):
            return "desired"
        if received.matches(self._model_topic):
            return "model"
        return "ack"

    async def _receive(self, client: aiomqtt.Client, inflight: dict[int, float]) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            try:
                signed = open_envelope(bytes(payload))
                key = self._keys.hub.get(signed.envelope.kid)
                if key is None:
                    raise TwinSyncError(
                        f"unknown hub key {signed.envelope.kid}", reason="unknown_hub_key"
                    )
                env = signed.verify(key)
                kind = self._kind_of(message.topic)
                to = (
                    BROADCAST
                    if kind in ("tombstone", "consent", "tags")
                    else self._config.device.id
                )
                if (env.kind, env.brand, env.device) != (kind, self._config.device.brand, to):
                    raise TwinSyncError(
                        f"{env.kind} for {env.brand}/{env.device} on my {kind} topic",
                        reason="misdirected",
                    )
                ack = decode_body(kind, env.body)
            except TwinSyncError as exc:
                self._stats["bad_acks"] += 1
                log.warning("ignored message on %s: %s (%s)", message.topic, exc.reason, exc)
                continue
            # Hub time only moves forward here; the device's own clock is never used.
            self._outbox.freshness.observe(env.sent_ms)
            if isinstance(ack, ConsentCommand):
                if self._on_consent is not None:
                    self._on_consent(ack)
                continue
            if isinstance(ack, Tombstones):
                if self._on_tombstones is not None:
                    self._on_tombstones(ack)
                continue
            if isinstance(ack, TagsOffer):
                # Size, signature and version are the tag book's to check (and count).
                if self._on_tags is not None:
                    self._on_tags(ack.catalog.encode())
                continue
            if isinstance(ack, OfferExposure):
                if self._on_offer is not None:
                    self._on_offer(ack)
                continue
            fresh = self._outbox.freshness
            if isinstance(ack, ModelSet):
                if self._updater is not None and fresh.admits("model", ack.version, self._stats):
                    fresh.set_version("model", ack.version)
                    self._updater.offer(ack)
                continue
            if isinstance(ack, Desired):
                # Keep only newer versions: retained and redelivered copies are common.
                if fresh.admits("desired", ack.version, self._stats) and (
                    self.desired is None or ack.version > self.desired.version
                ):
                    fresh.set_version("desired", ack.version, packb(ack.to_wire()))
                    self.desired = ack
                    log.info("desired settings version %d received", ack.version)
                continue
            # Tombstones and acks are never refused as old: erasure only grows, and a seq
            # is never reused, so a replayed ack names only deltas already deleted.
            assert isinstance(ack, Ack)
            done = [*ack.seqs, *(r.seq for r in ack.rejected)]
            for r in ack.rejected:
                log.warning("hub rejected delta seq=%d for good: %s", r.seq, r.reason)
            self._outbox.delete(done)
            self._stats["deltas_acked"] += len(ack.seqs)
            self._stats["deltas_rejected_by_hub"] += len(ack.rejected)
            for seq in done:
                inflight.pop(seq, None)
                self._attempts.pop(seq, None)
            self.wake.set()
            self.acked.set()


def _refused(exc: aiomqtt.MqttError) -> TypeGuard[aiomqtt.MqttCodeError]:
    """Whether the broker refused the login (CONNACK "bad user name or password" or
    "not authorized", as MQTT 3.1.1 codes 4/5 or MQTT 5 reason codes 0x86/0x87)."""
    rc = getattr(exc, "rc", None)
    return isinstance(exc, aiomqtt.MqttCodeError) and getattr(rc, "value", rc) in (4, 5, 134, 135)
