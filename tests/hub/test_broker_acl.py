"""A real mosquitto with the password and ACL files 'twinsync hub broker-auth' writes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from _fakes import get_json
from _poll import eventually
from hub_env import make_config

from cloud_hub import SCOPES, ApiKeys, Hub, Registry, provision_devices
from cloud_hub._broker_auth import HUB_USER, write_broker_files
from cloud_hub._provision import ensure_hub_mqtt_password
from cloud_hub.cli import main as hub_cli
from edge_agent import Agent, load_config
from firmware_sim.services import LocalServices, Mosquitto, free_port
from protocol import SignalIn


class _Client:
    """A paho client that records what it receives and how its connect ended."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.refused: object = None
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{username}-{id(self)}")
        self.c.username_pw_set(username, password)
        self.c.on_message = lambda _c, _u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.on_connect = self._on_connect
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.refused = rc
        else:
            self.connected.set()

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def acl_broker(tmp_path: Path, services: LocalServices, unique: str) -> Iterator[dict[str, Any]]:
    brand = f"a{unique}"
    config = make_config(tmp_path, services, f"db{unique}", brand)
    bundles = provision_devices(
        config.registry.path,
        config.keys.secrets_dir,
        brand,
        [("dev-a", "coffee"), ("dev-b", "coffee")],
        tmp_path / "bundles",
    )
    secret = ensure_hub_mqtt_password(config.keys.secrets_dir)
    passwd, acl = write_broker_files(config.registry.path, secret, tmp_path / "broker")
    port = free_port()
    broker = Mosquitto(
        tmp_path / "mosquitto",
        port,
        f"listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {passwd}\nacl_file {acl}\n",
    )
    broker.start()
    hub_config = config.model_copy(
        update={
            "mqtt": config.mqtt.model_copy(
                update={"port": port, "username": HUB_USER, "password_file": secret}
            )
        }
    )
    try:
        yield {
            "brand": brand,
            "port": port,
            "broker": broker,
            "config": hub_config,
            "bundles": bundles,
            "secret": secret,
            "out": tmp_path / "broker",
            "password": {
                d: (b.parent / "mqtt.password").read_text().strip() for d, b in bundles.items()
            },
        }
    finally:
        broker.stop()


def test_each_device_reads_and_writes_only_its_own_topics(acl_broker: dict[str, Any]) -> None:
    brand, port, pw = acl_broker["brand"], acl_broker["port"], acl_broker["password"]
    hub = _Client(port, HUB_USER, acl_broker["secret"].read_text().strip())
    a = _Client(port, f"{brand}.dev-a", pw["dev-a"])
    b = _Client(port, f"{brand}.dev-b", pw["dev-b"])
    clients = [hub, a, b]
    try:
        assert all(c.connected.wait(5) for c in clients)
        hub.c.subscribe(f"ts/v1/{brand}/+/delta", qos=1)
        a.c.subscribe(f"ts/v1/{brand}/dev-b/ack", qos=1)  # not A's to read
        a.c.subscribe(f"ts/v1/{brand}/+/delta", qos=1)  # nor other devices' uplinks
        b.c.subscribe(f"ts/v1/{brand}/dev-b/ack", qos=1)
        time.sleep(0.3)
        a.c.publish(f"ts/v1/{brand}/dev-a/delta", b"own", qos=1).wait_for_publish(5)
        a.c.publish(f"ts/v1/{brand}/dev-b/delta", b"forged", qos=1).wait_for_publish(5)
        a.c.publish(f"ts/v1/{brand}/dev-a/ack", b"self-ack", qos=1).wait_for_publish(5)
        hub.c.publish(f"ts/v1/{brand}/dev-b/ack", b"for-b", qos=1).wait_for_publish(5)
        assert eventually_sync(lambda: (f"ts/v1/{brand}/dev-b/ack", b"for-b") in b.got)
        assert eventually_sync(lambda: (f"ts/v1/{brand}/dev-a/delta", b"own") in hub.got)
        time.sleep(0.5)  # what was refused would have arrived by now
        assert [p for _t, p in hub.got] == [b"own"]  # the forged delta never reached the hub
        assert a.got == []  # A saw neither B's ack nor any delta
    finally:
        for c in clients:
            c.close()


def eventually_sync(check: Any, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_wrong_anonymous_and_revoked_credentials_are_refused(
    acl_broker: dict[str, Any],
) -> None:
    brand, port, pw = acl_broker["brand"], acl_broker["port"], acl_broker["password"]
    for username, password in ((f"{brand}.dev-a", "wrong"), (f"{brand}.dev-a", pw["dev-b"])):
        c = _Client(port, username, password)
        try:
            assert eventually_sync(lambda c=c: c.refused is not None)
            assert not c.connected.is_set()
        finally:
            c.close()
    anon = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    refused: list[object] = []
    anon.on_connect = lambda _c, _u, _f, rc, _p: refused.append(rc)
    anon.connect("127.0.0.1", port)
    anon.loop_start()
    try:
        assert eventually_sync(lambda: bool(refused))
        assert refused[0].is_failure  # type: ignore[attr-defined]
    finally:
        anon.loop_stop()
    # Revoking a device and reloading the broker shuts it out.
    config = acl_broker["config"]
    Registry(config.registry.path).revoke(brand, "dev-a")
    toml = acl_broker["out"] / "hub.toml"
    toml.write_text(
        f'[registry]\npath = "{config.registry.path}"\n'
        f'[keys]\nsecrets_dir = "{config.keys.secrets_dir}"\n'
    )
    assert hub_cli(["broker-auth", "--config", str(toml), "--out", str(acl_broker["out"])]) == 0
    assert f"{brand}.dev-a" not in (acl_broker["out"] / "twinsync.acl").read_text()
    pid = acl_broker["broker"].pid
    assert pid is not None
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.5)
    c = _Client(port, f"{brand}.dev-a", pw["dev-a"])
    try:
        assert eventually_sync(lambda: c.refused is not None)
    finally:
        c.close()
    still = _Client(port, f"{brand}.dev-b", pw["dev-b"])
    try:
        assert still.connected.wait(5)
    finally:
        still.close()


async def test_an_agent_syncs_through_the_confined_broker(
    acl_broker: dict[str, Any], tmp_path: Path
) -> None:
    config = acl_broker["config"]
    brand = acl_broker["brand"]
    _key, token = ApiKeys(config.registry.path).create(brand, "t", SCOPES)
    agent_config = load_config(
        acl_broker["bundles"]["dev-a"],
        {"mqtt": {"port": acl_broker["port"]}, "models": {"enabled": False}},
        environ={},
    )
    async with Hub(config) as hub, Agent(agent_config) as agent:
        await hub.ready.wait()
        await agent.ingest(
            SignalIn(seq=1, ts=int(time.time() * 1000), subject="ann", name="coffee.brew", value=1)
        )
        assert await agent.drained(15)
        url = f"{hub.api_url}/v1/brands/{brand}/twins"

        async def listed() -> bool:
            return len((await get_json(url, token=token))["twins"]) == 1

        assert await eventually(listed, within=10)


def test_provisioning_can_write_the_broker_files_at_once(tmp_path: Path) -> None:
    toml = tmp_path / "hub.toml"
    toml.write_text('[registry]\npath = "registry.sqlite"\n[keys]\nsecrets_dir = "secrets"\n')
    broker = tmp_path / "broker"
    argv = ["provision", "--config", str(toml), "--brand", "acme", "--device", "m-1"]
    argv += ["--product", "coffee", "--out", str(tmp_path / "m-1"), "--broker-dir", str(broker)]
    assert hub_cli(argv) == 0
    assert (tmp_path / "m-1" / "agent.toml").exists()
    assert "acme.m-1:" in (broker / "twinsync.passwd").read_text()
    acl = (broker / "twinsync.acl").read_text()
    assert "user acme.m-1" in acl
    assert "ts/v1/acme/m-1/delta" in acl
