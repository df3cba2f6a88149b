"""The twin query index against InfluxDB on a real hub, mosquitto and InfluxDB, with the
shared state on SQLite and PostgreSQL.

After ingest (several devices per twin, out-of-order and replayed deltas), an erasure, an
objection, a rectification with a suppression, a key rotation's move and a retention
sweep, the index equals what InfluxDB holds (``check_index``: every field's merged last
value, HLC and device, each twin's newest time, churn risk and products), and the twin
API (computed from InfluxDB alone) agrees with it. A rebuild from InfluxDB gives the very
same rows; an instance that does not keep the index says so and refuses queries.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _fakes import FakeDevice, get_json, now_hlc, send_json
from _poll import eventually
from hub_env import HubEnv, both_stores, make_config

from cloud_hub import Hub
from cloud_hub.cli import main as hub_cli
from cloud_hub.store import STATE_KEYS, TWIN_INDEX_TABLES, TwinIndex
from protocol import TwinLink, pseudonymize

ANN, BOB, CAT = "ann@example.test", "bob@example.test", "cat@example.test"
HOUR = 3_600_000


def rows(env: HubEnv) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the index's tables, in key order."""
    with env.state() as state, state.transaction(readonly=True) as tx:
        return {
            t: tx.execute(f"SELECT * FROM {t} ORDER BY {', '.join(STATE_KEYS[t])}").fetchall()
            for t in TWIN_INDEX_TABLES
        }


async def api_fields(hub: Hub, env: HubEnv, twin: str) -> dict[str, Any]:
    body = await get_json(f"{hub.api_url}/v1/brands/{env.brand}/twins/{twin}", token=env.token)
    return {name: f["value"] for name, f in body["fields"].items()}


async def listed(hub: Hub, env: HubEnv, **query: str) -> dict[str, Any]:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return await get_json(f"{hub.api_url}/v1/brands/{env.brand}/twins?{q}", token=env.token)


class Fleet:
    """The three coffee devices of ``hub_env``, sending hand-made deltas."""

    def __init__(self, env: HubEnv) -> None:
        port = env.services.mosquitto.port
        self.devices = [
            FakeDevice(env.bundles[f"dev-{i}"].parent, env.brand, f"dev-{i}", port)
            for i in range(3)
        ]
        self.seq = [0, 0, 0]

    def twin(self, subject: str) -> str:
        return self.devices[0].twin(subject)

    async def send(self, i: int, ops: dict[str, list[tuple[int, str, object]]]) -> int:
        self.seq[i] += 1
        device = self.devices[i]
        device.publish(device.delta(self.seq[i], ops))
        await device.wait_acked({self.seq[i]})
        return self.seq[i]

    def close(self) -> None:
        for d in self.devices:
            d.close()


@pytest.fixture
def fleet(hub_env: HubEnv) -> Any:
    f = Fleet(hub_env)
    yield f
    f.close()


async def populate(fleet: Fleet) -> dict[str, str]:
    """Three customers: counters from several devices, lww fields set out of order,
    scores and segments, replays."""
    ann, bob, cat = fleet.twin(ANN), fleet.twin(BOB), fleet.twin(CAT)
    t = now_hlc(-2 * HOUR)
    await fleet.send(
        0,
        {
            ann: [
                (t, "coffee.brews_total", 3),
                (t, "coffee.strength", 2),
                (t, "coffee.churn_risk", 0.4),
                (t, "coffee.segment", 1),
                (t, "coffee.f_share_morning", 0.5),
            ],
            bob: [(t, "coffee.brews_total", 7), (t, "thermostat.mode", "eco")],
        },
    )
    # dev-1 sends an older strength (loses), a newer segment (wins) and its own counter
    await fleet.send(
        1,
        {
            ann: [
                (now_hlc(-2 * HOUR - 60_000), "coffee.strength", 5),
                (now_hlc(-HOUR), "coffee.segment", 3),
                (now_hlc(-HOUR), "coffee.brews_total", 10),
                (now_hlc(-HOUR), "tv.churn_risk", 0.8),
            ],
            cat: [
                (now_hlc(-HOUR), "coffee.descale_due", True),
                (now_hlc(-HOUR), "coffee.churn_risk", 0.1),
            ],
        },
    )
    # a replay of dev-0's first delta (same seq) and a newer value from dev-2
    device = fleet.devices[0]
    device.publish(device.delta(1, {ann: [(t, "coffee.brews_total", 3)]}))
    await fleet.send(2, {bob: [(now_hlc(-1000), "thermostat.mode", "heat")]})
    return {"ann": ann, "bob": bob, "cat": cat}


@both_stores
async def test_ingest_leaves_the_index_equal_to_influxdb(
    hub: Hub, hub_env: HubEnv, fleet: Fleet
) -> None:
    twins = await populate(fleet)
    assert await hub_env.index_differences() == []
    body = await listed(hub, hub_env, fields="coffee.brews_total,coffee.strength,thermostat.mode")
    by_twin = {i["twin"]: i for i in body["items"]}
    assert set(by_twin) == set(twins.values())
    for twin in twins.values():
        api = await api_fields(hub, hub_env, twin)
        mine = by_twin[twin]["fields"]
        assert mine == {k: v for k, v in api.items() if k in mine}, twin
    ann = by_twin[twins["ann"]]
    assert ann["fields"] == {"coffee.brews_total": 13, "coffee.strength": 2}
    assert ann["segments"] == {"coffee": 3}
    assert ann["churn_risk"] == 0.8
    assert ann["devices"] == ["dev-0", "dev-1"]
    assert ann["products"] == ["coffee", "tv"]
    assert by_twin[twins["bob"]]["fields"]["thermostat.mode"] == "heat"
    assert hub.metrics.get("twinsync_hub_index_ops_total") >= 13


@both_stores
async def test_privacy_requests_leave_the_index_equal_to_influxdb(
    hub: Hub, hub_env: HubEnv, fleet: Fleet
) -> None:
    """Erasure takes the twin out; an objection its profile fields (its churn risk and
    segment go, its usage stays); a rectification's value wins by its HLC, a suppressed
    field goes; after each, the index equals InfluxDB."""
    twins = await populate(fleet)
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy"
    status, _ = await send_json("POST", f"{base}/erasure", {"subject": CAT}, hub_env.token)
    assert status == 200
    assert await hub_env.index_differences() == []
    assert twins["cat"] not in (await listed(hub, hub_env))["twins"]

    status, _ = await send_json("POST", f"{base}/objection", {"subject": ANN}, hub_env.token)
    assert status == 200
    assert await hub_env.index_differences() == []
    (ann,) = (await listed(hub, hub_env, where="coffee.brews_total = 13"))["items"]
    assert (ann["churn_risk"], ann["segments"]) == (None, {})
    assert ann["products"] == ["coffee"]  # tv held only a churn score
    assert (await listed(hub, hub_env, where="coffee.segment = 3"))["count"] == 0

    body = {"subject": BOB, "set": {"coffee.strength": 4}, "suppress": ["thermostat.mode"]}
    status, _ = await send_json("POST", f"{base}/rectification", body, hub_env.token)
    assert status == 200
    assert await hub_env.index_differences() == []
    (bob,) = (await listed(hub, hub_env, where="coffee.strength = 4", fields="coffee.strength"))[
        "items"
    ]
    assert bob["twin"] == twins["bob"]
    assert "_customer" in bob["devices"]
    assert (await listed(hub, hub_env, where="thermostat.mode = heat"))["count"] == 0
    # What the suppression and the erasure block stays out, whatever a device sends.
    await fleet.send(0, {twins["bob"]: [(now_hlc(), "thermostat.mode", "eco")]})
    await fleet.send(0, {twins["cat"]: [(now_hlc(), "coffee.strength", 1)]})
    assert await hub_env.index_differences() == []
    assert (await listed(hub, hub_env))["count"] == 2


@both_stores
async def test_key_rotation_moves_the_twin_in_the_index(
    hub: Hub, hub_env: HubEnv, fleet: Fleet
) -> None:
    """The old id's rows merge into the new id's (the newest value of each field wins,
    counters of both ids' devices add up) and the old id is gone."""
    env = hub_env
    folder = env.config.keys.secrets_dir / "brands" / env.brand
    (folder / "2.key").write_bytes(b"k" * 32)
    old, new = fleet.twin(ANN), pseudonymize(b"k" * 32, 2, ANN)
    await fleet.send(
        0,
        {old: [(now_hlc(-HOUR), "coffee.brews_total", 5), (now_hlc(-HOUR), "coffee.strength", 1)]},
    )
    await fleet.send(
        1, {new: [(now_hlc(), "coffee.brews_total", 2), (now_hlc(-2 * HOUR), "coffee.segment", 2)]}
    )
    await asyncio.to_thread(hub.relinks.propose, env.brand, "dev-0", [TwinLink(old, new)])
    assert await eventually(
        lambda: hub.relinks.status(env.brand)["links"] == {"done": 1}, within=20
    )
    assert await env.index_differences() == []
    body = await listed(hub, env, fields="coffee.brews_total,coffee.strength")
    assert body["twins"] == [new]
    assert body["items"][0]["fields"] == {"coffee.brews_total": 7, "coffee.strength": 1}
    assert body["items"][0]["segments"] == {"coffee": 2}


@both_stores
async def test_retention_expires_the_same_values_in_the_index(
    hub_env: HubEnv, tmp_path: Path, fleet: Fleet
) -> None:
    env = hub_env
    ann, bob = fleet.twin(ANN), fleet.twin(BOB)
    async with Hub(env.config) as hub:
        await hub.ready.wait()
        old, recent = now_hlc(-72 * HOUR), now_hlc(-HOUR)
        await fleet.send(
            0,
            {
                ann: [
                    (old, "coffee.churn_risk", 0.9),
                    (old, "coffee.brews_total", 4),
                    (recent, "coffee.segment", 2),
                ],
                bob: [(old, "coffee.segment", 1)],
            },
        )
        await fleet.send(1, {ann: [(recent, "coffee.brews_total", 1)]})
    limits = make_config(
        tmp_path, env.services, "unused", retention={"usage": "2d", "profile": "2d"}
    )
    swept = env.config.model_copy(update={"retention": limits.retention})
    async with Hub(swept) as hub:
        await hub.ready.wait()
        assert await eventually(lambda: bool(hub.retention.last_swept()), within=15)
        await asyncio.sleep(0.5)
        assert await env.index_differences() == []
        body = await listed(hub, env, fields="coffee.brews_total")
        assert body["twins"] == [ann]  # bob held only an old segment
        (item,) = body["items"]
        assert item["fields"] == {"coffee.brews_total": 1}  # dev-0's old total expired
        assert (item["churn_risk"], item["segments"]) == (None, {"coffee": 2})


@both_stores
async def test_a_rebuild_from_influxdb_gives_the_same_index(
    hub: Hub, hub_env: HubEnv, fleet: Fleet, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    twins = await populate(fleet)
    status, _ = await send_json(
        "POST",
        f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy/erasure",
        {"subject": CAT},
        hub_env.token,
    )
    assert status == 200
    before = rows(hub_env)
    assert len(before["twin_index"]) == 2
    config = tmp_path / "hub.toml"
    config.write_text(
        f'{hub_env.state_toml(tmp_path)}[keys]\nsecrets_dir = "{hub_env.config.keys.secrets_dir}"\n'
        + hub_env.services.influxd.hub_toml(hub_env.config.influx.database)
    )
    with hub_env.state() as state:
        TwinIndex(state=state).clear(hub_env.brand)
    assert rows(hub_env)["twin_index"] == []
    assert (await listed(hub, hub_env))["twins"] == []
    assert await asyncio.to_thread(hub_cli, ["index", "rebuild", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"brand {hub_env.brand}: 2 twins indexed" in out
    assert rows(hub_env) == before
    assert twins["cat"] not in (await listed(hub, hub_env))["twins"]
    assert await asyncio.to_thread(hub_cli, ["index", "check", "--config", str(config)]) == 0
    assert "equals InfluxDB" in capsys.readouterr().out
    # A check that finds a difference says which, and exits 1.
    with hub_env.state() as state, state.transaction() as tx:
        tx.execute("UPDATE twin_fields SET num = 99 WHERE field = 'coffee.strength'")
    assert await asyncio.to_thread(hub_cli, ["index", "check", "--config", str(config)]) == 1
    assert "coffee.strength" in capsys.readouterr().out


async def test_an_instance_without_the_index_says_so(
    hub_env: HubEnv, tmp_path: Path, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """``index.enabled = false``: twin ids still listed (from InfluxDB), where/sort/fields
    503 index_disabled, the index marked incomplete (a warning asks for a rebuild once it
    is on again)."""
    env = hub_env
    off = env.config.model_copy(
        update={"index": env.config.index.model_copy(update={"enabled": False})}
    )
    async with Hub(off) as hub:
        await hub.ready.wait()
        ann = fleet.twin(ANN)
        await fleet.send(0, {ann: [(now_hlc(), "coffee.strength", 2)]})
        assert (await listed(hub, env))["twins"] == [ann]
        for query in (
            {"where": "coffee.strength = 2"},
            {"sort": "-last_seen"},
            {"fields": "coffee.strength"},
        ):
            body = await get_json(
                f"{hub.api_url}/v1/brands/{env.brand}/twins?"
                + "&".join(f"{k}={v}" for k, v in query.items()),
                503,
                env.token,
            )
            assert body["error"]["code"] == "index_disabled"
    with env.state() as state:
        assert not TwinIndex(state=state).complete()
    async with Hub(env.config) as hub:
        await hub.ready.wait()
    assert "run 'twinsync hub index rebuild'" in caplog.text
