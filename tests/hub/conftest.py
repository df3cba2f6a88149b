"""Fixtures for tests/hub: an in-process Hub on the session's real mosquitto and influxd."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _fakes import FakeDevice
from hub_env import HubEnv, make_config

from cloud_hub import SCOPES, ApiKeys, Hub, provision_devices
from twinsync.services import LocalServices


@pytest.fixture
def hub_env(tmp_path: Path, services: LocalServices, unique: str) -> HubEnv:
    brand = f"b{unique}"
    config = make_config(tmp_path, services, f"db{unique}", brand)
    bundles = provision_devices(
        config.registry.path,
        config.keys.secrets_dir,
        brand,
        [(f"dev-{i}", "coffee") for i in range(3)],
        tmp_path / "bundles",
        "127.0.0.1",
        services.mosquitto.port,
    )
    _key, token = ApiKeys(config.registry.path).create(brand, "tests", SCOPES)
    return HubEnv(config, bundles, brand, services, token)


@pytest.fixture
async def hub(hub_env: HubEnv) -> AsyncIterator[Hub]:
    async with Hub(hub_env.config) as h:
        await h.ready.wait()
        await h._mqtt.connected.wait()
        yield h


@pytest.fixture
def device(hub_env: HubEnv) -> Iterator[FakeDevice]:
    d = FakeDevice(
        hub_env.bundles["dev-0"].parent, hub_env.brand, "dev-0", hub_env.services.mosquitto.port
    )
    yield d
    d.close()
