"""The hub's MQTT adapter: paho-mqtt in manual-ack mode, handing messages to asyncio.

paho runs its own network thread (battle-tested reconnects and keepalive); every message
is put on a bounded inbox (see _inbox.py) and PUBACKed only when the pipeline calls :meth:`ack`
after InfluxDB has the data. The broker then never forgets a message the hub has not
durably stored: a hub killed mid-batch gets it redelivered (persistent session).
Because the broker caps un-PUBACKed messages in flight, a stalled writer naturally stops
the flow, so the inbox never grows past that cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_hub._config import MqttSettings
from cloud_hub._errors import ConfigError
from cloud_hub._metrics import Metrics
from protocol import Clock, hub_subscriptions

from ._events import SEGMENT_EVENTS_FILTER, is_event_topic, segment_topic
from ._inbox import Inbox

__all__ = ["HubMqtt", "Incoming"]

log = logging.getLogger("cloud_hub.mqtt")


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message from the broker; ``mid`` is what :meth:`HubMqtt.ack` needs."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ms: int


class HubMqtt:
    """paho client wrapper; use as ``async with HubMqtt(...) as mqtt:``."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        metrics: Metrics,
        clock: Clock,
        on_event: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        #: called on the loop with (topic, payload) of hub-to-hub announcements
        self._on_event = on_event
        self.inbox: Inbox[Incoming] = Inbox(settings.queue_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = asyncio.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.manual_ack_set(True)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        if settings.username:
            client.username_pw_set(settings.username, _password(settings) or None)
        if settings.tls:
            context = ssl.create_default_context(cafile=settings.ca_file or None)
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._subscribe_mid: int | None = None
        self._client = client

    # paho callbacks run on paho's network thread: hop to the loop for anything else.
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            m = self._settings
            hint = (
                f"the hub's broker account must be named like its client id "
                f"(mqtt.username {m.username!r}, mqtt.client_id {m.client_id!r}) and "
                "exist on the broker: run 'twinsync hub broker-auth --hub-ids ... --apply'"
                if m.username
                else "set mqtt.username and mqtt.password_file (twinsync hub broker-auth)"
            )
            log.warning("broker refused connection: %s; %s", rc, hint)
            return
        # Subscribing on every connect is idempotent and survives a broker that lost state.
        # Ready only once the broker confirmed it: before that, messages would be missed.
        filters = hub_subscriptions(self._settings.shared_group or None, self._settings.brands)
        # Announcements between instances: every instance needs all of them (not shared).
        brands = self._settings.brands
        filters += [segment_topic(b) for b in brands] if brands else [SEGMENT_EVENTS_FILTER]
        _, self._subscribe_mid = client.subscribe([(f, 1) for f in filters])
        log.info("connected to mqtt://%s:%d", self._settings.host, self._settings.port)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, codes: list[Any], _p: object
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [c for c in codes if getattr(c, "is_failure", False)]
        if refused:
            log.error("broker refused the hub's subscriptions (%s); check the broker ACL", refused)
            return
        self._call(self._set_connected, True)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        if self._loop is None:  # our own shutdown
            log.info("disconnected from broker")
        else:
            log.warning("disconnected from broker (%s); paho reconnects with backoff", rc)
        self._call(self._set_connected, False)

    def _set_connected(self, up: bool) -> None:
        self._metrics.set("twinsync_hub_mqtt_connected", 1 if up else 0)
        if up:
            self.connected.set()
        else:
            self.connected.clear()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if is_event_topic(msg.topic):
            # Live announcements: nothing to make durable, so acknowledge at once.
            if msg.qos > 0:
                self._client.ack(msg.mid, msg.qos)
            if self._on_event is not None:
                self._call(self._on_event, msg.topic, bytes(msg.payload))
            return
        incoming = Incoming(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._clock.now_ms())
        # Blocking paho's thread while the inbox is full is the backpressure: it stops
        # reading the socket, so the broker stops sending.
        self.inbox.put(incoming)

    def _call(self, fn: object, *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)  # type: ignore[arg-type]

    def ack(self, incoming: Incoming) -> None:
        """PUBACK ``incoming`` to the broker: call only once its data is durable."""
        if incoming.qos > 0:
            self._client.ack(incoming.mid, incoming.qos)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Queue a publish (paho's thread sends it; QoS 1 survives reconnects)."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    async def __aenter__(self) -> HubMqtt:
        self._loop = asyncio.get_running_loop()
        self.inbox.bind(self._loop)
        self._client.connect_async(
            self._settings.host, self._settings.port, self._settings.keepalive_s
        )
        self._client.loop_start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = self._loop
        self._loop = None
        # Unblock paho's thread if it waits on a full inbox, then stop it. What was
        # waiting was never PUBACKed: the broker delivers it again.
        self.inbox.close()
        await asyncio.to_thread(self._stop)
        del loop

    def _stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _password(settings: MqttSettings) -> str:
    if settings.password_file is None:
        return settings.password
    try:
        return settings.password_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read mqtt.password_file {settings.password_file}: {exc.strerror}"
        ) from exc
