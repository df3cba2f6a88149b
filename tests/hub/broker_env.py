"""A real mosquitto secured the way the docs deploy it (the Dynamic Security plugin with
the accounts 'twinsync hub broker-auth' makes), and a paho probe that records what a
client experiences: its CONNACK, SUBACKs, messages and disconnects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from hub_env import make_config

from cloud_hub import HubConfig, provision_devices
from cloud_hub.registry import DYNSEC_FILE, broker_setup, ensure_hub_password
from twinsync.services import LocalServices, Mosquitto, free_port


def wait_for(check: Callable[[], bool], within: float = 5.0) -> bool:
    """Poll ``check`` from a synchronous test until true or ``within`` s passed."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Probe:
    """A paho client (MQTT 3.1.1) that records its CONNACK, SUBACKs, messages and
    disconnects. ``client_id`` defaults to the username, as agents and hubs use it."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        client_id: str | None = None,
        *,
        clean_session: bool = False,
    ) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.refused: Any = None
        self.disconnects = 0
        self._subacks: dict[int, list[Any]] = {}
        self._lock = threading.Lock()
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id if client_id is not None else (username or ""),
            clean_session=clean_session,
        )
        if username is not None:
            self.c.username_pw_set(username, password)
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_disconnect = self._on_disconnect
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.refused = rc
        else:
            self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        if self.connected.is_set():
            self.disconnects += 1

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.got.append((m.topic, bytes(m.payload)))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[Any], _p: Any) -> None:
        with self._lock:
            self._subacks[mid] = codes

    def subscribe(self, topic: str) -> bool:
        """Subscribe (QoS 1) and return whether the broker granted it."""
        _rc, mid = self.c.subscribe(topic, qos=1)
        assert wait_for(lambda: mid in self._subacks), f"no SUBACK for {topic}"
        return not any(code.is_failure for code in self._subacks[mid])

    def refused_or_connected(self) -> bool:
        """Wait for the CONNACK; True when connected."""
        assert wait_for(lambda: self.connected.is_set() or self.refused is not None)
        return self.connected.is_set()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@dataclass
class SecuredBroker:
    """A broker with the plugin file of 'broker-auth --out', and what a test needs."""

    broker: Mosquitto
    port: int
    #: the hub's config on this broker: its own account (user = client id)
    config: HubConfig
    #: brand -> device -> bundle directory
    bundles: dict[str, dict[str, Path]]
    #: broker user -> password (devices from their bundles, the hub's)
    passwords: dict[str, str]
    out: Path
    toml: Path

    @property
    def hub_user(self) -> str:
        return self.config.mqtt.client_id

    def probe(self, username: str, client_id: str | None = None, **kw: Any) -> Probe:
        return Probe(self.port, username, self.passwords[username], client_id, **kw)


@contextmanager
def secured_broker(
    tmp: Path,
    services: LocalServices,
    db: str,
    fleets: dict[str, list[str]],
    *,
    shared_group: str = "twinsync-hub",
) -> Iterator[SecuredBroker]:
    """Provision ``fleets`` (brand -> device ids), write the broker's accounts with
    ``broker_setup(out=...)`` and start mosquitto with them; the hub's config serves every
    brand on this private broker through the shared group ``shared_group``."""
    port = free_port()
    config = make_config(tmp, services, db)
    secrets = config.keys.secrets_dir
    bundles = {
        brand: {
            d: toml.parent
            for d, toml in provision_devices(
                config.registry.path,
                secrets,
                brand,
                [(d, "coffee") for d in devices],
                tmp / "bundles" / brand,
                "127.0.0.1",
                port,
            ).items()
        }
        for brand, devices in fleets.items()
    }
    hub_password = ensure_hub_password(secrets)
    mqtt_settings = config.mqtt.model_copy(
        update={
            "port": port,
            "username": config.mqtt.client_id,
            "password_file": hub_password,
            "shared_group": shared_group,
        }
    )
    config = config.model_copy(update={"mqtt": mqtt_settings})
    out = tmp / "broker"
    broker_setup(config, out=out, apply=False)
    toml = tmp / "hub.toml"
    toml.write_text(
        f'[mqtt]\nport = {port}\nclient_id = "{config.mqtt.client_id}"\n'
        f'[registry]\npath = "{config.registry.path}"\n'
        f'[keys]\nsecrets_dir = "{secrets}"\n'
    )
    passwords = {
        f"{brand}.{d}": (b / "mqtt.password").read_text().strip()
        for brand, devices in bundles.items()
        for d, b in devices.items()
    }
    passwords[config.mqtt.client_id] = hub_password.read_text().strip()
    broker = Mosquitto(
        tmp / "mosquitto",
        port,
        f"listener {port} 127.0.0.1\nallow_anonymous false\n",
        dynsec_file=out / DYNSEC_FILE,
    )
    broker.start()
    try:
        yield SecuredBroker(broker, port, config, bundles, passwords, out, toml)
    finally:
        broker.stop()
