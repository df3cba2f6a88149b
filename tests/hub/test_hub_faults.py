"""Faults against real services: influxd outage, hub SIGKILL, two hubs sharing the load.

The hub kill and the two hubs run on both state stores (``@both_stores``): the SQLite
file one host's instances share, and PostgreSQL, with which the two hubs are two hosts
that share no file at all (each its own working directory and copy of the secrets, as
an operator deploys them). In both, the twin query index ends equal to what InfluxDB
holds: the two hubs merge one customer's deltas from four devices at once, and the batch
a kill interrupts is indexed when the broker redelivers it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from _fakes import FakeDevice, now_hlc
from _poll import eventually
from hub_env import HubEnv, both_stores, make_config

from cloud_hub import Hub, HubConfig, provision_devices
from cloud_hub.store import state_store_from
from twinsync.services import LocalServices, free_port


def _env(
    tmp: Path, svc: LocalServices, unique: str, n: int = 1, state: dict[str, str] | None = None
) -> HubEnv:
    cfg = make_config(tmp, svc, f"db{unique}", f"b{unique}", state=state or {})
    with state_store_from(cfg.state) as store:
        bundles = provision_devices(
            store,
            cfg.keys.secrets_dir,
            f"b{unique}",
            [(f"dev-{i}", "coffee") for i in range(n)],
            tmp / "bundles",
            "127.0.0.1",
            svc.mosquitto.port,
        )
    return HubEnv(cfg, bundles, f"b{unique}", svc)


def _another_host(env: HubEnv, root: Path, client_id: str) -> HubConfig:
    """A second instance as a second host runs it: its own working directory and its own
    copy of the secrets (the hub key signs acks, the brand keys serve erasures: every
    instance holds the same), the same broker, InfluxDB and state store."""
    root.mkdir(parents=True)
    shutil.copytree(env.config.keys.secrets_dir, root / "secrets")
    state = {"url": env.config.state.url, "password": env.config.state.secret()}
    return make_config(
        root,
        env.services,
        env.config.influx.database,
        env.brand,
        state=state,
        mqtt={"client_id": client_id},
    )


def _paths(value: Any) -> set[Path]:
    """Every file or folder a config names (its SQLite state file included)."""
    if isinstance(value, Path):
        return {value}
    if isinstance(value, dict):
        return {p for v in value.values() for p in _paths(v)}
    if isinstance(value, list | tuple):
        return {p for v in value for p in _paths(v)}
    if isinstance(value, str) and value.startswith("sqlite:///"):
        return {Path(value.removeprefix("sqlite:///"))}
    return set()


def _common_paths(a: HubConfig, b: HubConfig) -> set[tuple[Path, Path]]:
    """Pairs of a path of ``a`` and one of ``b`` that are the same or one inside the other."""
    mine, theirs = _paths(a.model_dump()), _paths(b.model_dump())
    return {
        (x, y) for x in mine for y in theirs if x == y or x.is_relative_to(y) or y.is_relative_to(x)
    }


def _count(env: HubEnv) -> int:
    try:
        return len(env.points())
    except Exception:  # database may not exist yet
        return 0


async def _wait_points(env: HubEnv, n: int, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while _count(env) < n:
        assert time.monotonic() < deadline, f"{_count(env)} of {n} points"
        await asyncio.sleep(0.1)


async def test_influxd_outage_loses_nothing_and_acks_only_after_write(
    tmp_path: Path, own_services: LocalServices, unique: str
) -> None:
    env = _env(tmp_path, own_services, unique)
    dev = FakeDevice(env.bundles["dev-0"].parent, env.brand, "dev-0", own_services.mosquitto.port)
    try:
        async with Hub(env.config) as hub:
            await hub.ready.wait()
            await hub._mqtt.connected.wait()
            dev.publish(dev.delta(1, {dev.twin("a"): [(now_hlc(), "coffee.brews_total", 1)]}))
            await dev.wait_acked({1})
            own_services.influxd.stop()
            for seq in range(2, 12):
                dev.publish(
                    dev.delta(
                        seq, {dev.twin("a"): [(now_hlc(counter=seq), "coffee.brews_total", seq)]}
                    )
                )
            await asyncio.sleep(1.5)
            assert dev.acked_seqs() == {1}, "acked before the write was durable"
            own_services.influxd.start()
            await dev.wait_acked(set(range(1, 12)), within=40)
            assert _count(env) == 11
            assert hub.metrics.get("twinsync_hub_write_errors_total") >= 1
    finally:
        dev.close()


@both_stores
async def test_two_hubs_with_shared_subscription_write_every_point_once(
    tmp_path: Path, services: LocalServices, unique: str, state_settings: dict[str, str]
) -> None:
    env = _env(tmp_path / "host-a", services, unique, n=4, state=state_settings)
    two_hosts = env.config.state.target.scheme == "postgresql"
    if not two_hosts:
        # One host: both instances open the same state file.
        cfg2 = env.config.model_copy(
            update={"mqtt": env.config.mqtt.model_copy(update={"client_id": f"hub2-{unique}"})}
        )
    else:
        cfg2 = _another_host(env, tmp_path / "host-b", f"hub2-{unique}")
        assert _common_paths(env.config, cfg2) == set()
    devs = [
        FakeDevice(env.bundles[f"dev-{i}"].parent, env.brand, f"dev-{i}", services.mosquitto.port)
        for i in range(4)
    ]
    try:
        async with Hub(env.config) as h1, Hub(cfg2) as h2:
            for h in (h1, h2):
                await h.ready.wait()
                await h._mqtt.connected.wait()
            for d in devs:
                # One customer on every device: each device's counter adds up, the newest
                # strength wins; the two instances merge them into the index at once.
                for seq in range(1, 26):
                    at = now_hlc(counter=seq)
                    ops = [(at, "coffee.brews_total", seq), (at, "coffee.strength", seq % 5 + 1)]
                    d.publish(d.delta(seq, {d.twin("t"): ops}))
            for d in devs:
                await d.wait_acked(set(range(1, 26)), within=30)
            assert not any(d.rejected() for d in devs), [d.rejected() for d in devs]
            points = env.points()  # acked means durable: every point is already there
            assert len(points) == 200, sorted(points)[:5]
            # ... and in the twin query index, merged as InfluxDB's last values say
            assert await env.index_differences() == []
            with env.state() as state, state.transaction(readonly=True) as tx:
                total = tx.execute(
                    "SELECT num FROM twin_fields WHERE field = 'coffee.brews_total'"
                ).scalar()
            assert total == 4 * 25
            got = [h.metrics.get("twinsync_hub_messages_total", kind="delta") for h in (h1, h2)]
            assert sum(got) == 100, got
            assert min(got) > 0, got
        if two_hosts:
            # Nothing of the state went to a file on either host.
            assert not env.config.registry.path.exists()
            assert not cfg2.registry.path.exists()
            assert not list((tmp_path / "host-b").rglob("*.sqlite*"))
    finally:
        for d in devs:
            d.close()


def _index_caught_up(env: HubEnv) -> Any:
    async def check() -> bool:
        return await env.index_differences() == []

    return check


def _spawn(cfg_path: Path) -> subprocess.Popen[bytes]:
    with (cfg_path.parent / "hub.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "twinsync", "hub", "run", "--config", str(cfg_path)],
            cwd=Path(__file__).parents[2],
            stdout=log,
            stderr=log,
        )


async def _run_hub(cfg_path: Path, api_port: int) -> subprocess.Popen[bytes]:
    """Start ``python -m twinsync hub run`` and wait until its /readyz says 200."""
    proc = _spawn(cfg_path)
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, (cfg_path.parent / "hub.log").read_text()
        try:
            async with (
                aiohttp.ClientSession() as s,
                s.get(f"http://127.0.0.1:{api_port}/readyz") as r,
            ):
                if r.status == 200:
                    return proc
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "hub subprocess never became ready"
        await asyncio.sleep(0.1)


@both_stores
async def test_hub_sigkill_mid_stream_then_restart_loses_nothing(
    tmp_path: Path, services: LocalServices, unique: str, state_settings: dict[str, str]
) -> None:
    env = _env(tmp_path, services, unique, state=state_settings)
    c = env.config
    api_port = free_port()
    cfg_path = tmp_path / "hub.toml"
    cfg_path.write_text(
        f"""[mqtt]
port = {services.mosquitto.port}
client_id = "hubk-{unique}"
shared_group = "gk{unique}"
{services.influxd.hub_toml(c.influx.database)}[api]
port = {api_port}
{env.state_toml(tmp_path)}[keys]
secrets_dir = "{c.keys.secrets_dir}"
"""
    )
    dev = FakeDevice(env.bundles["dev-0"].parent, env.brand, "dev-0", services.mosquitto.port)
    proc = await _run_hub(cfg_path, api_port)
    try:
        dev.publish(dev.delta(1, {dev.twin("k"): [(now_hlc(), "coffee.brews_total", 1)]}))
        await dev.wait_acked({1}, within=30)
        for seq in range(2, 202):
            dev.publish(
                dev.delta(seq, {dev.twin("k"): [(now_hlc(counter=seq), "coffee.brews_total", seq)]})
            )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc = await _run_hub(cfg_path, api_port)
        await _wait_points(env, 201, within_s=40)
        assert _count(env) == 201
        # The batch the kill interrupted was redelivered: the index has what InfluxDB has.
        assert await eventually(_index_caught_up(env), within=20), await env.index_differences()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) is not None
        except subprocess.TimeoutExpired:
            proc.kill()
        dev.close()
