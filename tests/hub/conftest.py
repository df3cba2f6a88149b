"""Fixtures for tests/hub: an in-process Hub on the session's real mosquitto and influxd.

``state_backend`` says where ``hub_env`` keeps the hub's shared state: ``"sqlite"`` (the
registry file, the default) or ``"postgresql"`` (a database of the test's own on the
session's PostgreSQL, tests/conftest.py). A test that must hold on both takes
``@both_stores`` (hub_env.py), which parametrizes it: ids ``[sqlite]`` and
``[postgresql]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _fakes import FakeDevice
from hub_env import HubEnv, make_config

from cloud_hub import SCOPES, ApiKeys, Hub, provision_devices
from cloud_hub.store import StateStore, open_state_store, state_store_from
from twinsync.services import LocalServices


@pytest.fixture
def state_backend() -> str:
    """Where the hub's shared state lives: the SQLite file unless a test parametrizes
    this (``@both_stores``)."""
    return "sqlite"


@pytest.fixture
def state_settings(request: pytest.FixtureRequest, state_backend: str) -> dict[str, str]:
    """The ``[state]`` section for ``state_backend`` (empty: the registry file)."""
    if state_backend == "sqlite":
        return {}
    assert state_backend == "postgresql", state_backend
    return dict(request.getfixturevalue("postgres").hub_settings())


@pytest.fixture
def state_url(tmp_path: Path, state_settings: dict[str, str]) -> tuple[str, str]:
    """``(state.url, password)`` of a store of this test's own on ``state_backend``."""
    if not state_settings:
        return f"sqlite:///{tmp_path / 'state.sqlite'}", ""
    return state_settings["url"], state_settings["password"]


@pytest.fixture
def state(state_url: tuple[str, str]) -> Iterator[StateStore]:
    """That store, open (as one hub instance holds it; open another for a second)."""
    url, password = state_url
    with open_state_store(url, password=password) as store:
        yield store


@pytest.fixture
def hub_env(
    tmp_path: Path, services: LocalServices, unique: str, state_settings: dict[str, str]
) -> HubEnv:
    brand = f"b{unique}"
    config = make_config(tmp_path, services, f"db{unique}", brand, state=state_settings)
    with state_store_from(config.state) as state:
        bundles = provision_devices(
            state,
            config.keys.secrets_dir,
            brand,
            [(f"dev-{i}", "coffee") for i in range(3)],
            tmp_path / "bundles",
            "127.0.0.1",
            services.mosquitto.port,
        )
        _key, token = ApiKeys(state).create(brand, "tests", SCOPES)
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
