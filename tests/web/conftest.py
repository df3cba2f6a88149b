"""Fixtures for tests/web: a real ``twinsync hub run`` holding a simulated fleet's data,
and a real headless Chromium (Debian's ``chromium``; ``make test`` installs it).

``dash`` is built once per module: a fleet of real agents (with their on-device models,
so twins have segments and churn risks) runs through the real broker into the hub, a
hand-driven device adds a twin whose text field holds markup (the XSS probe), another
brand gets a twin of its own, and a privacy request is made, so every page has data.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _fakes import FakeDevice, now_hlc
from browser import Chromium
from dash_env import XSS, Dash

from cloud_hub import SCOPES, ApiKeys, load_hub_config, provision_devices
from firmware_sim import FaultSpec, Fleet, FleetRunner, FleetSpec
from twinsync.services import LocalServices


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _post(url: str, token: str, body: object) -> Any:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _wait_acked(device: FakeDevice, seqs: set[int]) -> None:
    deadline = time.monotonic() + 30
    while not seqs <= device.acked_seqs() | set(device.rejected()):
        assert time.monotonic() < deadline, f"not acked: {seqs - device.acked_seqs()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory, services: LocalServices) -> Iterator[Dash]:
    tmp = tmp_path_factory.mktemp("dash")
    unique = uuid.uuid4().hex[:8]
    brand, other = f"b{unique}", f"o{unique}"
    port = _free_port()
    hub_toml = tmp / "hub.toml"
    hub_toml.write_text(
        f"""
[mqtt]
brands = ["{brand}", "{other}"]
port = {services.mosquitto.port}
client_id = "hub-dash{unique}"
shared_group = "dash{unique}"

{services.influxd.hub_toml(f"dash{unique}")}batch_max_wait_ms = 20

[api]
port = {port}

[registry]
path = "registry.sqlite"

[keys]
secrets_dir = "secrets"
"""
    )
    config = load_hub_config(hub_toml, environ={})
    now_ms = time.time_ns() // 1_000_000
    # Twelve hours that end now: the pages' default ranges (the last 24 h) show them.
    spec = FleetSpec(
        seed=5, devices=8, days=0.5, start_ms=now_ms - 12 * 3_600_000, brand=brand,
        faults=FaultSpec.none(),
    )  # fmt: skip
    fleet = Fleet.generate(spec)
    pairs = [(d.device_id, d.product) for d in fleet.devices]
    bundles = provision_devices(
        config.registry.path, config.keys.secrets_dir, brand, [*pairs, ("probe-0", "coffee")],
        tmp / "bundles", "127.0.0.1", services.mosquitto.port,
    )  # fmt: skip
    other_bundles = provision_devices(
        config.registry.path, config.keys.secrets_dir, other, [("other-0", "coffee")],
        tmp / "bundles", "127.0.0.1", services.mosquitto.port,
    )  # fmt: skip
    keys = ApiKeys(config.registry.path)
    token = keys.create(brand, "dashboard", SCOPES)[1]
    read_token = keys.create(brand, "reader", ["read"])[1]
    other_token = keys.create(other, "other", SCOPES)[1]
    log = tmp / "hub.log"
    with log.open("ab") as out:
        hub = subprocess.Popen(
            [sys.executable, "-m", "twinsync", "hub", "run", "--config", str(hub_toml)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert hub.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the hub did not become ready"
            time.sleep(0.1)
        # Trigger rules before the fleet runs: the triggers page lists them and their events.
        for rule in (
            {"name": "segment moves", "kind": "segment_change"},
            {"name": "churn alert", "kind": "churn_risk", "threshold": 0.5, "product": "coffee"},
        ):
            request = urllib.request.Request(
                f"{url}/v1/brands/{brand}/triggers",
                data=json.dumps(rule).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as r:
                assert r.status == 201
        asyncio.run(_run_fleet(fleet, {d: bundles[d] for d, _ in pairs}, services, tmp))
        probe = FakeDevice(bundles["probe-0"].parent, brand, "probe-0", services.mosquitto.port)
        xss_twin = probe.twin("mallory")
        delta = probe.delta(
            1,
            {xss_twin: [(now_hlc(-60_000), "coffee.segment_model", XSS),
                        (now_hlc(-50_000), "coffee.brews_total", 3),
                        (now_hlc(-50_000), "coffee.tag_evening_routine", True),
                        (now_hlc(-50_000), "coffee.tag_strong_coffee", False),
                        (now_hlc(-50_000), "coffee.tags_ref", "tags@1")]},
        )  # fmt: skip
        probe.publish(delta)
        _wait_acked(probe, {1})
        probe.publish(delta)  # a replay: the hub counts it as rejected (fleet health shows it)
        probe.close()
        outsider = FakeDevice(
            other_bundles["other-0"].parent, other, "other-0", services.mosquitto.port
        )
        other_twin = outsider.twin("olga")
        op = (now_hlc(-60_000), "coffee.strength", 4)
        outsider.publish(outsider.delta(1, {other_twin: [op]}))
        _wait_acked(outsider, {1})
        outsider.close()
        _post(f"{url}/v1/brands/{brand}/privacy/access", token, {"subject": "mallory"})
        # a finished experiment of the strategy lab (its offer's name holds markup)
        lab = f"{url}/v1/brands/{brand}/lab/experiments"
        new = {"offer": {"name": "<i>loyalty</i>", "cost": 2}, "outcome": {"days": 1}}
        _post(f"{lab}/{_post(lab, token, new)['id']}/stop", token, {})
        yield Dash(url, brand, token, read_token, other, other_token, other_twin, xss_twin, tmp)
    finally:
        hub.terminate()
        try:
            hub.wait(15)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()


async def _run_fleet(
    fleet: Fleet, bundles: dict[str, Path], services: LocalServices, tmp: Path
) -> None:
    runner = FleetRunner(
        fleet, bundles, "127.0.0.1", services.mosquitto.port, tmp / "agents", models=True
    )
    try:
        await runner.run()
        assert await runner.drain(120), "the agents' outboxes were not drained"
    finally:
        await runner.close()


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    browser = Chromium(tmp_path_factory.mktemp("chromium"))
    yield browser
    browser.close()
