"""End-to-end harness: provision a fleet, run real agents and hubs, compare with ground truth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_hub import SCOPES, ApiKeys, HubConfig, load_hub_config, provision_devices
from cloud_hub.store import state_store_from
from firmware_sim import (
    ChurnSpec,
    FaultSpec,
    Fleet,
    FleetSpec,
    GroundTruth,
    Point,
    normalise_value,
)
from protocol import FIELDS
from twinsync.services import LocalServices


@dataclass
class Stack:
    """Everything one end-to-end scenario needs."""

    tmp: Path
    services: LocalServices
    hub_config: HubConfig
    hub_toml: Path
    bundles: dict[str, Path]
    fleet: Fleet
    truth: GroundTruth
    #: an API key of the fleet's brand with every scope
    token: str

    @property
    def brand(self) -> str:
        return self.fleet.spec.brand

    def influx(self, q: str) -> list[dict[str, Any]]:
        return self.services.influxd.query(q, self.hub_config.influx.database, check=False)

    def points(self) -> set[Point]:
        """Every point of the twin measurements (one per field class), as ground-truth
        tuples."""
        out: set[Point] = set()
        res = self.influx(
            f'SELECT * FROM "twin","twin_profile" WHERE "brand" = \'{self.brand}\' GROUP BY *'
        )
        for s in res[0].get("series", []):
            tags = s["tags"]
            cols = s["columns"]
            for row in s["values"]:
                for col, value in zip(cols[1:], row[1:], strict=True):
                    if value is not None:
                        out.add(
                            (
                                tags["brand"],
                                tags["device"],
                                tags["twin"],
                                row[0],
                                col,
                                normalise_value(FIELDS[col].type, value),
                            )
                        )
        return out

    def assert_points_match(self) -> None:
        got, want = self.points(), self.truth.expected_points
        missing, extra = want - got, got - want
        summary = (
            f"{len(missing)} missing, {len(extra)} extra of {len(want)}; "
            f"e.g. missing {sorted(missing)[:3]} extra {sorted(extra)[:3]}"
        )
        assert not missing, summary
        assert not extra, summary


def build_stack(
    tmp: Path,
    services: LocalServices,
    *,
    devices: int,
    days: float = 1.0,
    seed: int = 11,
    faults: FaultSpec | None = None,
    churn: ChurnSpec | None = None,
    db: str = "twinsync",
    hub_overrides: dict[str, Any] | None = None,
    api_port: int = 0,
) -> Stack:
    brand = f"b{db[-8:]}".lower() if db != "twinsync" else "acme"
    hub_toml = tmp / "hub.toml"
    hub_toml.write_text(
        f"""
[mqtt]
brands = ["{brand}"]
port = {services.mosquitto.port}
client_id = "hub-{db}"
shared_group = "hubs-{db}"

{services.influxd.hub_toml(db)}batch_max_wait_ms = 20

[api]
port = {api_port}

[registry]
path = "registry.sqlite"

[keys]
secrets_dir = "secrets"
"""
    )
    config = load_hub_config(hub_toml, hub_overrides, environ={})
    spec = FleetSpec(
        seed=seed,
        devices=devices,
        days=days,
        brand=brand,
        faults=faults if faults is not None else FaultSpec(),
        churn=churn if churn is not None else ChurnSpec(),
    )
    fleet = Fleet.generate(spec)
    # The state store the config names: the registry file, or PostgreSQL (hub_overrides).
    with state_store_from(config.state) as state:
        bundles = provision_devices(
            state,
            config.keys.secrets_dir,
            spec.brand,
            [(d.device_id, d.product) for d in fleet.devices],
            tmp / "bundles",
            "127.0.0.1",
            services.mosquitto.port,
        )
        _key, token = ApiKeys(state).create(spec.brand, "tests", SCOPES)
    brand_key = (next(iter(bundles.values())).parent / "brand.key").read_bytes()
    truth = GroundTruth.compute(fleet, brand_key, 1, now_ms=time.time_ns() // 1_000_000)
    return Stack(tmp, services, config, hub_toml, bundles, fleet, truth, token)


@dataclass
class Sniffer:
    """Subscribes to '#' on the broker and keeps every topic and payload it sees."""

    port: int
    seen: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sniffer-{id(self)}")
        self._client.on_message = self._on
        self._client.connect("127.0.0.1", self.port)
        self._client.subscribe("#", qos=1)  # QoS 0 may be dropped under load
        self._client.loop_start()
        time.sleep(0.2)

    def _on(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.seen.append((msg.topic, bytes(msg.payload)))

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def sniffer(services: LocalServices) -> Iterator[Sniffer]:
    s = Sniffer(services.mosquitto.port)
    yield s
    s.close()


def subject_forms(subject: str) -> list[bytes]:
    """Byte patterns that would betray a raw identifier anywhere."""
    forms = {subject, subject.lower(), subject.strip().casefold()}
    local = subject.split("@", maxsplit=1)[0]
    if len(local) >= 6:
        forms.add(local)
    return [f.encode() for f in forms]


class HubProcess:
    """A real ``twinsync hub run`` process that a test can SIGKILL and restart."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.port = stack.hub_config.api.port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = stack.tmp / "hub.log"

    def start(self, timeout: float = 30) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "twinsync",
                    "hub",
                    "run",
                    "--config",
                    str(self.stack.hub_toml),
                    "--log-level",
                    "INFO",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "hub did not become ready"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics") as r:
            text = r.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )
