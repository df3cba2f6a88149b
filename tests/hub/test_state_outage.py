"""The state store down while a hub runs (a real PostgreSQL, killed and started again).

Ingest neither refuses nor writes what it cannot check: a device the hub has not cached
yet is not "unknown" because the registry cannot answer, and no delta is stored against
tombstones it cannot re-read. The batch ends unwritten and un-acked, the supervisor
restarts ingest, and the broker redelivers it once the database is back. The API answers
503 ``state_unavailable`` with ``Retry-After`` and a fixed message (the database's host
stays in the log), never 401 for a key it could not look up. The process stays up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path

import aiohttp
import pytest
from _fakes import FakeDevice, get_json, now_hlc
from _poll import eventually
from hub_env import HubEnv, make_config

from cloud_hub import SCOPES, ApiKeys, Hub, provision_devices
from cloud_hub.store import state_store_from
from twinsync.services import LocalServices, Postgres


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A PostgreSQL these tests may kill (the session's is shared)."""
    with Postgres(tmp_path_factory.mktemp("outage-postgres")) as server:
        yield server


@pytest.fixture
def outage_env(
    tmp_path: Path, services: LocalServices, unique: str, own_postgres: Postgres
) -> Iterator[HubEnv]:
    own_postgres.start()  # a test before may have left it down
    database = own_postgres.create_database(f"o_{unique}")
    brand = f"b{unique}"
    # A short wait for a connection: the test need not sit out the 10 s default.
    state = {**database.hub_settings(), "timeout_s": 2.0}
    config = make_config(tmp_path, services, f"db{unique}", brand, state=state)
    with state_store_from(config.state) as store:
        bundles = provision_devices(
            store,
            config.keys.secrets_dir,
            brand,
            [("dev-0", "coffee"), ("dev-1", "coffee")],
            tmp_path / "bundles",
            "127.0.0.1",
            services.mosquitto.port,
        )
        _key, token = ApiKeys(store).create(brand, "tests", SCOPES)
    yield HubEnv(config, bundles, brand, services, token)
    own_postgres.start()


def _device(env: HubEnv, name: str) -> FakeDevice:
    return FakeDevice(env.bundles[name].parent, env.brand, name, env.services.mosquitto.port)


async def test_a_device_not_yet_cached_waits_for_the_store_and_is_never_refused(
    outage_env: HubEnv, own_postgres: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    env = outage_env
    known, fresh = _device(env, "dev-0"), _device(env, "dev-1")
    try:
        async with Hub(env.config) as hub:
            await hub.ready.wait()
            await hub._mqtt.connected.wait()
            lasting = asyncio.create_task(hub.wait())  # ends only if the hub gives up
            known.publish(known.delta(1, {known.twin("a"): [(now_hlc(), "coffee.brews_total", 1)]}))
            await known.wait_acked({1})

            own_postgres.kill()
            fresh.publish(fresh.delta(1, {fresh.twin("b"): [(now_hlc(), "coffee.brews_total", 1)]}))
            known.publish(known.delta(2, {known.twin("a"): [(now_hlc(), "coffee.brews_total", 2)]}))
            restarts = ("twinsync_hub_task_restarts_total",)
            assert await eventually(lambda: hub.metrics.get(*restarts, task="ingest") >= 1)
            await asyncio.sleep(1.0)
            # Nothing decided while the registry and the tombstones cannot be read.
            assert fresh.acked_seqs() == set()
            assert fresh.rejected() == {}
            assert known.acked_seqs() == {1}
            assert hub.metrics.get("twinsync_hub_rejected_total", reason="unknown_device") == 0
            assert not {p for p in env.points() if p[0] == "dev-1"}
            assert not lasting.done()
            await get_json(f"{hub.api_url}/healthz")  # the process serves on

            own_postgres.start()
            await fresh.wait_acked({1}, within=60)
            await known.wait_acked({1, 2}, within=60)
            assert fresh.rejected() == {}
            assert hub.metrics.get("twinsync_hub_rejected_total", reason="unknown_device") == 0
            assert {p for p in env.points() if p[0] == "dev-1"}
            assert not lasting.done()
            lasting.cancel()
    finally:
        known.close()
        fresh.close()
    assert "state store" in caplog.text  # the restart says why, by its message


async def test_the_api_answers_503_while_the_store_is_down_and_never_names_it(
    outage_env: HubEnv, own_postgres: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    env = outage_env
    async with Hub(env.config) as hub:
        await hub.ready.wait()
        requests = f"{hub.api_url}/v1/brands/{env.brand}/privacy/requests"
        await get_json(requests, token=env.token)  # 200, and the key is now cached
        # A second key, valid but never used: looking it up needs the store.
        with state_store_from(env.config.state) as store:
            _key, unused = ApiKeys(store).create(env.brand, "unused", ["privacy"])

        own_postgres.kill()
        for token in (env.token, unused):
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession() as s, s.get(requests, headers=headers) as resp:
                body = await resp.text()
                assert resp.status == 503, body
                assert resp.headers["Retry-After"] == "5"
            assert '"code": "state_unavailable"' in body
            for secret in ("127.0.0.1", str(own_postgres.port), "postgresql", "o_"):
                assert secret not in body
        assert f"127.0.0.1:{own_postgres.port}" in caplog.text  # the operator's log has it
        assert hub.metrics.get("twinsync_hub_api_refused_total", status="503") == 2

        async def state_check() -> object:
            async with aiohttp.ClientSession() as s, s.get(f"{hub.api_url}/readyz") as resp:
                return (resp.status, (await resp.json())["checks"]["state"])

        assert await eventually(lambda: _is(state_check(), (503, False)), within=10)

        own_postgres.start()

        async def served() -> bool:
            headers = {"Authorization": f"Bearer {unused}"}
            async with aiohttp.ClientSession() as s, s.get(requests, headers=headers) as resp:
                return resp.status == 200

        assert await eventually(served, within=30)
        assert await eventually(lambda: _is(state_check(), (200, True)), within=10)


async def _is(answer: Awaitable[object], expected: object) -> bool:
    return await answer == expected
