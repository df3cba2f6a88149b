"""Key rotation: a customer's twin keeps its history across a new brand key epoch.

Real agents, mosquitto, influxd and hub: a device that holds both keys carries its
customers over (state, consent) and links old -> new; the hub moves the history, stores a
not-yet-rotated device's ops under the new id, refuses a link from a device that never
served the customer, and retiring the old epoch leaves nothing under it. Each runs on both
state stores (the SQLite file and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from _fakes import FakeDevice, get_json, send_json
from _poll import eventually
from hub_env import HubEnv, both_stores

from cloud_hub import CloudHubError, Hub, Metrics
from cloud_hub.cli import main as hub_cli
from cloud_hub.privacy import Relinks
from cloud_hub.registry import held_epochs, retire_in_bundles, rotate_brand_key
from cloud_hub.store import InfluxStore, TwinIndex
from edge_agent import Agent, load_config
from protocol import Delta, SignalIn, TwinLink, packb, pseudonymize

ANN, BOB = "ann@example.test", "bob@example.test"
_seq = iter(range(1, 10_000))


def _agent_config(env: HubEnv, device: str, tmp: Path) -> Any:
    return load_config(
        env.bundles[device],
        {
            "mqtt": {"port": env.services.mosquitto.port},
            "outbox": {"path": str(tmp / f"{device}.sqlite")},
            "models": {"enabled": False},
        },
        environ={},
    )


async def _brew(agent: Agent, subject: str, n: int = 1) -> None:
    now = int(time.time() * 1000)
    for i in range(n):
        signal = SignalIn(
            seq=next(_seq), ts=now - 1000 + i, subject=subject, name="coffee.brew", value=1
        )
        assert (await agent.ingest(signal)).status == "accepted"


def _key(env: HubEnv, epoch: int) -> bytes:
    return (env.config.keys.secrets_dir / "brands" / env.brand / f"{epoch}.key").read_bytes()


def _of(env: HubEnv, twin: str) -> set[tuple[Any, ...]]:
    return {p for p in env.points() if p[1] == twin}


@both_stores
async def test_a_rotated_key_carries_the_twin_and_its_history_over(
    hub_env: HubEnv, tmp_path: Path
) -> None:
    env = hub_env
    env.config = env.config.model_copy(
        update={"keys": env.config.keys.model_copy(update={"link_grace_s": 2.0})}
    )
    old_ann, old_bob = (pseudonymize(_key(env, 1), 1, s) for s in (ANN, BOB))
    async with Hub(env.config) as hub:
        await hub.ready.wait()
        async with (
            Agent(_agent_config(env, "dev-1", tmp_path)) as one,
            Agent(_agent_config(env, "dev-2", tmp_path)) as two,
        ):
            one.set_consent(ANN, {"analytics": True}, "v1")
            await _brew(one, ANN, 3)
            await _brew(one, BOB, 2)
            await _brew(two, ANN, 1)
            assert await one.drained(20)
            assert await two.drained(20)
        history = _of(env, old_ann)
        assert {p[0] for p in history} == {"dev-1", "dev-2"}
        bob_before = _of(env, old_bob)

        # Rotate: dev-1's bundle moves to epoch 2 and keeps epoch 1's key to carry over.
        bundle = env.bundles["dev-1"].parent
        assert rotate_brand_key(env.config.keys.secrets_dir, env.brand, [bundle]) == 2
        assert (bundle / "brand.1.key").read_bytes() == _key(env, 1)
        new_ann = pseudonymize(_key(env, 2), 2, ANN)
        async with Agent(_agent_config(env, "dev-1", tmp_path)) as one:
            await _brew(one, ANN)
            # The customer's choices came along (the ledger moved with the twin).
            assert one.consent_state(ANN)["analytics"] is True
            assert one.twin_value(new_ann, "coffee.brews_total") == 4
            assert one.twin_value(old_ann, "coffee.brews_total") is None
            assert await one.drained(20)

        def moved() -> bool:
            return not _of(env, old_ann) and len(_of(env, new_ann)) == len(history) + 1

        assert await eventually(moved, within=20)
        # Every old point is there under the new id, same device, time, field and value.
        assert {(p[0], new_ann, *p[2:]) for p in history} <= _of(env, new_ann)
        base = f"{hub.api_url}/v1/brands/{env.brand}/twins"
        state = await get_json(f"{base}/{new_ann}", token=env.token)
        assert state["fields"]["coffee.brews_total"]["value"] == 5  # dev-1 4 + dev-2 1
        await get_json(f"{base}/{old_ann}", status=404, token=env.token)
        consent = await get_json(f"{base}/{new_ann}/consent", token=env.token)
        assert consent["current"]["analytics"]["granted"] is True  # the ledger moved too
        assert _of(env, old_bob) == bob_before  # bob was not seen since: not linked

        # dev-2 is still on epoch 1: its ops of ann land on the new twin.
        async with Agent(_agent_config(env, "dev-2", tmp_path)) as two:
            await _brew(two, ANN)
            assert await two.drained(20)
        assert await eventually(
            lambda: any(p[0] == "dev-2" and p[4] == 2 for p in _of(env, new_ann)), within=10
        )
        assert not _of(env, old_ann)
        assert hub.metrics.get("twinsync_hub_aliased_ops_total") >= 1

        # A device that never served bob cannot graft bob's history onto another twin.
        fake = FakeDevice(bundle.parent / "dev-0", env.brand, "dev-0", env.services.mosquitto.port)
        try:
            forged = Delta(twins=(), links=(TwinLink(old_bob, "2-" + "f" * 32),))
            fake.publish(fake.envelope("delta", 1, packb(forged.to_wire())))
            await fake.wait_acked({1})
        finally:
            fake.close()
        assert await eventually(
            lambda: hub.relinks.status(env.brand)["links"].get("refused") == 1, within=15
        )
        assert _of(env, old_bob) == bob_before
        assert not _of(env, "2-" + "f" * 32)

        # Retiring epoch 1: bob is still under it, so the operator must decide.
        with pytest.raises(CloudHubError, match="1 twins"):
            await hub.relinks.retire(env.brand, 1)
        assert await hub.relinks.retire(env.brand, 1, delete_unlinked=True) == 1
        assert not _of(env, old_bob)
        assert held_epochs(env.config.keys.secrets_dir, env.brand) == [2]
        assert retire_in_bundles([bundle], 1) == 1
        assert not (bundle / "brand.1.key").exists()
        assert "previous" not in (bundle / "agent.toml").read_text()
        # A device still on the retired key: acked, not stored, counted.
        async with Agent(_agent_config(env, "dev-2", tmp_path)) as two:
            await _brew(two, BOB)
            assert await two.drained(20)
        assert not _of(env, old_bob)
        assert hub.metrics.get("twinsync_hub_retired_epoch_ops_dropped_total") >= 1

        # Erasure finds the customer under the epoch that remains.
        url = f"{hub.api_url}/v1/brands/{env.brand}/privacy/erasure"
        status, receipt = await send_json("POST", url, {"subject": ANN}, env.token)
        assert status == 200, receipt
        assert receipt["twins"] == [new_ann]
        assert not _of(env, new_ann)


@both_stores
async def test_a_move_interrupted_half_way_resumes_without_loss(hub_env: HubEnv) -> None:
    """As after a crash between copying and deleting: some points are already under the
    new id, all still under the old one. The next pass finishes the job exactly."""
    env = hub_env
    old, new = pseudonymize(_key(env, 1), 1, ANN), pseudonymize(b"k" * 32, 2, ANN)
    (env.config.keys.secrets_dir / "brands" / env.brand / "2.key").write_bytes(b"k" * 32)
    t0 = time.time_ns() - 3_600 * 10**9
    lines = [
        f"twin,brand={env.brand},device=dev-1,twin={old} coffee.brews_total={i}i {t0 + i}"
        for i in range(1, 41)
    ]
    async with InfluxStore(env.config.influx) as store:
        state = env.state()
        await store.ensure_database()
        await store.write(lines)
        await store.write([line.replace(old, new) for line in lines[:25]])  # the crashed copy
        relinks = Relinks(
            state=state,
            secrets_dir=env.config.keys.secrets_dir,
            store=store,
            index=TwinIndex(state=state),
            metrics=Metrics(),
        )
        relinks.propose(env.brand, "dev-1", [TwinLink(old, new)])
        assert await relinks.step() == 1  # checked: dev-1 wrote the old twin -> aliased
        assert relinks.alias(env.brand) == {old: new}
        await asyncio.sleep(relinks.refresh_s + 0.3)
        assert await relinks.step() == 1  # moved
    assert not _of(env, old)
    assert _of(env, new) == {("dev-1", new, t0 + i, "coffee.brews_total", i) for i in range(1, 41)}
    assert relinks.status(env.brand)["links"] == {"done": 1}
    state.close()


@both_stores
async def test_brand_keys_from_the_command_line(
    hub_env: HubEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = hub_env
    toml = tmp_path / "hub.toml"
    toml.write_text(
        env.services.influxd.hub_toml(env.config.influx.database)
        + env.state_toml(tmp_path)
        + '[keys]\nsecrets_dir = "secrets"\n'
    )
    bundles = [str(env.bundles[d].parent) for d in ("dev-1", "dev-2")]
    cli = ["--config", str(toml), "--brand", env.brand]
    assert (
        await asyncio.to_thread(hub_cli, ["brand-key", "rotate", *cli, "--bundles", *bundles]) == 0
    )
    assert "key epoch 2; 2 bundles" in capsys.readouterr().out
    for bundle in bundles:
        config = load_config(Path(bundle) / "agent.toml", environ={})
        assert config.pseudonym.epoch == 2
        assert config.keys().previous == ((1, _key(env, 1)),)
        assert config.keys().brand_key == _key(env, 2)
    assert await asyncio.to_thread(hub_cli, ["brand-key", "status", *cli]) == 0
    assert '"epochs": [1, 2]' in capsys.readouterr().out
    # The current epoch cannot be retired; the old one can (no twins stored under it).
    assert await asyncio.to_thread(hub_cli, ["brand-key", "retire", *cli, "--epoch", "2"]) == 2
    assert "current key" in capsys.readouterr().err
    argv = ["brand-key", "retire", *cli, "--epoch", "1", "--bundles", *bundles]
    assert await asyncio.to_thread(hub_cli, argv) == 0
    assert "2 bundles updated" in capsys.readouterr().out
    assert held_epochs(env.config.keys.secrets_dir, env.brand) == [2]
    assert load_config(Path(bundles[0]) / "agent.toml", environ={}).pseudonym.previous == []
