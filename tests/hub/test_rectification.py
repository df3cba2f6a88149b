"""Rectification / "edit my twin" on the real broker and influxd: a customer-asserted
value wins until the device reports a newer reading; a suppressed field is removed from
InfluxDB (other fields sharing its points stay), dropped at ingest, hidden from reads and
named in a hub-signed command to devices; bad requests change nothing; the journaled
removal finishes after a hub stopped mid-job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from _fakes import FakeDevice, get_json, now_hlc, send_json
from _poll import eventually
from hub_env import HubEnv
from test_hub_faults import _run_hub

from cloud_hub import Hub, ensure_hub_key
from cloud_hub.privacy import verify_receipt
from cloud_hub.store import twin_lines
from edge_agent import Agent, load_config
from protocol import (
    HLC,
    ConsentCommand,
    Op,
    SchemaError,
    SignalIn,
    TwinOps,
    broadcast_topic,
    decode_body,
    open_envelope,
    packb,
)
from twinsync.services import free_port

ANN = "ann.rectifies@example.test"


async def _rectify(hub: Hub, env: HubEnv, body: object) -> tuple[int, dict[str, Any]]:
    url = f"{hub.api_url}/v1/brands/{env.brand}/privacy/rectification"
    return await send_json("POST", url, body, env.token)


async def _twin(hub: Hub, env: HubEnv, twin: str) -> dict[str, Any]:
    url = f"{hub.api_url}/v1/brands/{env.brand}/twins/{twin}"
    result: dict[str, Any] = await get_json(url, token=env.token)
    return result["fields"]


def _field_points(env: HubEnv, twin: str, field: str) -> list[Any]:
    return sorted((p[0], p[2], p[4]) for p in env.points() if p[1] == twin and p[3] == field)


async def test_set_wins_until_the_device_reports_a_newer_reading(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    ann = device.twin(ANN)
    device.publish(device.delta(1, {ann: [(now_hlc(-60_000), "coffee.strength", 2)]}))
    await device.wait_acked({1})
    status, receipt = await _rectify(hub, hub_env, {"subject": ANN, "set": {"coffee.strength": 4}})
    assert status == 200, receipt
    verify_receipt(receipt, ensure_hub_key(hub_env.config.keys.secrets_dir).public)
    assert (receipt["kind"], receipt["set"], receipt["twins"]) == (
        "rectification",
        ["coffee.strength"],
        [ann],
    )
    fields = await _twin(hub, hub_env, ann)
    assert fields["coffee.strength"]["value"] == 4
    assert fields["coffee.strength"]["device"] == "_customer"  # provenance
    device.publish(device.delta(2, {ann: [(now_hlc(), "coffee.strength", 5)]}))
    await device.wait_acked({2})
    fields = await _twin(hub, hub_env, ann)
    assert (fields["coffee.strength"]["value"], fields["coffee.strength"]["device"]) == (5, "dev-0")
    requests = await get_json(
        f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy/requests", token=hub_env.token
    )
    (row,) = requests["requests"]
    assert (row["kind"], row["state"]) == ("rectification", "done")
    assert row["deadline_ms"] - row["received_ms"] == 30 * 86_400_000


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"subject": ANN}, "nothing to do"),
        ({"subject": ANN, "set": {"coffee.nope": 1}}, "unknown twin field"),
        ({"subject": ANN, "set": {"coffee.brews_total": 3}}, "cannot be set"),
        ({"subject": ANN, "set": {"coffee.segment": 1}}, "cannot be set"),
        ({"subject": ANN, "set": {"coffee.strength": "strong"}}, "expected int"),
        ({"subject": ANN, "set": {"coffee.strength": 9}}, "outside"),
        ({"subject": ANN, "set": {"wearable.heart_rate_bpm": 60}}, "unknown twin field"),
        ({"subject": ANN, "suppress": "coffee.strength"}, "a list of fields"),
        ({"subject": ANN, "suppress": ["coffee.strength", "coffee.strength"]}, "distinct"),
        (
            {"subject": ANN, "set": {"coffee.strength": 3}, "suppress": ["coffee.strength"]},
            "each named once",
        ),
        ({"subject": ANN, "set": {}, "extra": 1}, "send {"),
    ],
)
async def test_bad_rectifications_are_refused_and_change_nothing(
    hub: Hub, hub_env: HubEnv, device: FakeDevice, body: dict[str, Any], needle: str
) -> None:
    ann = device.twin(ANN)
    device.publish(device.delta(1, {ann: [(now_hlc(), "coffee.strength", 2)]}))
    await device.wait_acked({1})
    before = hub_env.points()
    status, answer = await _rectify(hub, hub_env, body)
    assert (status, answer["error"]["code"]) == (400, "bad_rectification"), answer
    assert needle in answer["error"]["message"]
    assert hub_env.points() == before
    requests = await get_json(
        f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy/requests", token=hub_env.token
    )
    assert requests["requests"] == []


class _Commands:
    """Hub-signed consent commands on the brand's broadcast topic."""

    def __init__(self, env: HubEnv) -> None:
        self.seen: list[ConsentCommand] = []
        self._lock = threading.Lock()
        self._key = ensure_hub_key(env.config.keys.secrets_dir).public
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", env.services.mosquitto.port)
        self.client.subscribe(broadcast_topic(env.brand, "consent"), qos=1)
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        env = open_envelope(bytes(msg.payload)).verify(self._key)
        body = decode_body(env.kind, env.body)
        assert isinstance(body, ConsentCommand)
        with self._lock:
            self.seen.append(body)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_suppressed_field_is_removed_dropped_hidden_and_sent_to_devices(
    hub: Hub, hub_env: HubEnv, device: FakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    env = hub_env
    ann, bob = device.twin(ANN), device.twin("bob")
    field = "coffee.water_level_pct"
    ops = {
        t: [(now_hlc(-5000 + i), field, 50.0 + i) for i in range(3)]
        + [(now_hlc(-1000), "coffee.brews_total", 2)]
        for t in (ann, bob)
    }
    device.publish(device.delta(1, ops))
    await device.wait_acked({1})
    # Another field sharing a point with the suppressed one (same series and time).
    shared = now_hlc(-500)
    lines: list[str] = []
    twin_lines(env.brand, "dev-0", (TwinOps(ann, (Op(shared, field, 9.5),)),), lines)
    twin_lines(
        env.brand, "dev-0", (TwinOps(ann, (Op(shared, "coffee.descale_due", True),)),), lines
    )
    env.write(lines)
    assert len(_field_points(env, ann, field)) == 4
    commands = _Commands(env)
    try:
        status, receipt = await _rectify(hub, env, {"subject": ANN, "suppress": [field]})
        assert status == 200, receipt
        assert (receipt["suppressed"], receipt["points_removed"]) == ([field], 4)
        assert _field_points(env, ann, field) == []
        assert len(_field_points(env, bob, field)) == 3  # another customer keeps theirs
        assert _field_points(env, ann, "coffee.descale_due") == [
            ("dev-0", HLC.unpack(shared).to_ns(), True)
        ]
        assert len(_field_points(env, ann, "coffee.brews_total")) == 1
        fields = await _twin(hub, env, ann)
        assert field not in fields
        assert "coffee.brews_total" in fields
        # A device still sending the field: acked, not stored.
        device.publish(device.delta(2, {ann: [(now_hlc(), field, 70.0)]}))
        await device.wait_acked({2})
        assert _field_points(env, ann, field) == []
        # Devices were told, in a hub-signed command naming the field.
        for _ in range(50):
            if commands.seen:
                break
            await asyncio.sleep(0.05)
        (command,) = commands.seen
        assert (command.twins, command.suppress, command.purposes) == ((ann,), (field,), {})
        # A value for a suppressed field is refused.
        status, answer = await _rectify(hub, env, {"subject": ANN, "set": {field: 40.0}})
        assert (status, answer["error"]["code"]) == (409, "field_suppressed")
        status, export = await send_json(
            "POST",
            f"{hub.api_url}/v1/brands/{env.brand}/privacy/access",
            {"subject": ANN},
            env.token,
        )
        assert [(r["kind"], r["field"]) for r in export["restrictions"]] == [("suppression", field)]
        # The customer changes their mind: collection resumes (what was removed stays so).
        status, receipt = await _rectify(hub, env, {"subject": ANN, "restore": [field]})
        assert status == 200, receipt
        assert receipt["restored"] == [field]
        for _ in range(50):
            if len(commands.seen) == 2:
                break
            await asyncio.sleep(0.05)
        assert (commands.seen[1].twins, commands.seen[1].restore) == ((ann,), (field,))
        await asyncio.sleep(hub.erasures.blocks.refresh_s + 0.2)
        device.publish(device.delta(3, {ann: [(now_hlc(), field, 71.0)]}))
        await device.wait_acked({3})
        assert [p[2] for p in _field_points(env, ann, field)] == [71.0]
        assert (await _twin(hub, env, ann))[field]["value"] == 71.0
    finally:
        commands.close()
    with sqlite3.connect(env.config.registry.path) as db:
        dump = "\n".join(db.iterdump())
    assert ANN not in dump
    assert ANN not in caplog.text
    assert json.dumps(ANN) not in dump


async def test_a_removal_left_by_a_stopped_hub_is_finished_at_start_up(
    hub_env: HubEnv, device: FakeDevice
) -> None:
    env = hub_env
    ann, bob = device.twin(ANN), device.twin("bob")
    field = "coffee.water_level_pct"
    shared = now_hlc(-500)
    lines: list[str] = []
    early = now_hlc(-900)
    for twin in (ann, bob):
        ops = (Op(early, field, 40.0), Op(shared, field, 41.0))
        twin_lines(env.brand, "dev-0", (TwinOps(twin, ops),), lines)
        share = (Op(shared, "coffee.descale_due", False),)
        twin_lines(env.brand, "dev-0", (TwinOps(twin, share),), lines)
    env.write(lines)
    async with Hub(env.config) as hub:
        await hub.ready.wait()
        # bob's job: the hub stops right after journaling it (step 1).
        bob_job, found = await hub.rectifier.stage(env.brand, bob, field, "r1")
        assert (bob_job is not None, found) == (True, 2)
        # ann's job: the hub stops after deleting (step 2), before writing back: the
        # shared point's other field exists only in the journal now.
        ann_job, _ = await hub.rectifier.stage(env.brand, ann, field, "r2")
        assert ann_job is not None
    for hlc in (early, shared):
        where = f"\"twin\" = '{ann}' AND time = {HLC.unpack(hlc).to_ns()}"
        _post_query(env, f'DELETE FROM "twin" WHERE {where}')
    with sqlite3.connect(env.config.registry.path) as db:
        db.execute("UPDATE rewrite_jobs SET state = 'deleted' WHERE id = ?", (ann_job,))
    assert _field_points(env, ann, "coffee.descale_due") == []
    async with Hub(env.config) as hub:
        await hub.ready.wait()
        for _ in range(100):
            with sqlite3.connect(env.config.registry.path) as db:
                states = {r[0] for r in db.execute("SELECT state FROM rewrite_jobs")}
            if states == {"done"}:
                break
            await asyncio.sleep(0.05)
        assert states == {"done"}
    for twin in (ann, bob):
        assert _field_points(env, twin, field) == []
        assert [p[2] for p in _field_points(env, twin, "coffee.descale_due")] == [False]


def _post_query(env: HubEnv, q: str) -> None:
    env.services.influxd.query(q, env.config.influx.database)


def test_consent_command_carries_suppressions_round_trip_and_rejects_bad_ones() -> None:
    twin = "1-" + "a" * 32
    plain = ConsentCommand(
        twins=(twin,), purposes={"analytics": False}, notice="v1", request_id="r", ts_ms=1
    )
    assert "suppress" not in plain.to_wire()  # unchanged wire for plain consent changes
    command = ConsentCommand(
        twins=(twin,),
        purposes={},
        notice="rectification",
        request_id="r",
        ts_ms=1,
        suppress=("coffee.strength",),
    )
    assert decode_body("consent", packb(command.to_wire())) == command
    for bad in (
        {"purposes": {}},  # says nothing
        {"purposes": {}, "suppress": ["coffee.nope"]},
        {"suppress": "coffee.strength"},
        {"suppress": ["coffee.strength"] * 65},
    ):
        with pytest.raises(SchemaError):
            decode_body("consent", packb({**plain.to_wire(), **bad}))


async def test_an_agent_records_a_suppression_sent_by_the_hub(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    config = load_config(
        hub_env.bundles["dev-2"],
        {
            "mqtt": {"port": hub_env.services.mosquitto.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "models": {"dir": str(tmp_path / "models")},
            "ingest": {"port": free_port()},
        },
        environ={},
    )
    field = "coffee.water_level_pct"
    async with Agent(config) as agent:
        assert agent._book is not None
        ann = agent._book.twin_of(ANN)
        signal = SignalIn(seq=1, ts=int(time.time() * 1000), subject=ANN, name=field, value=55.0)
        assert (await agent.ingest(signal)).status == "accepted"
        assert await agent.drained(15)
        status, _ = await _rectify(hub, hub_env, {"subject": ANN, "suppress": [field]})
        assert status == 200
        book = agent._book
        assert await eventually(lambda: book.gate.suppressed(ann) == {field}, within=10)
        assert not book.gate.allows_field(ann, field, "service")
        assert book.gate.allows_field(ann, "coffee.brews_total", "service")
        assert book.gate.suppressed(agent._book.twin_of("someone else")) == frozenset()
        # The device itself withholds the field from now on (not only the hub's drop) ...
        now = int(time.time() * 1000)
        again = SignalIn(seq=2, ts=now, subject=ANN, name=field, value=60.0)
        assert await agent.ingest(again) == (2, "rejected", "suppressed")
        brew = SignalIn(seq=3, ts=now, subject=ANN, name="coffee.brew", value=1)
        assert (await agent.ingest(brew)).status == "accepted"
    # ... and after a restart (the suppression is in the agent's SQLite file).
    async with Agent(config) as agent:
        late = SignalIn(seq=4, ts=int(time.time() * 1000), subject=ANN, name=field, value=61.0)
        assert await agent.ingest(late) == (4, "rejected", "suppressed")
        assert agent.rejected_by_reason == {"suppressed": 1}
        # Lifted through the brand: the device collects the field again, for good.
        status, _ = await _rectify(hub, hub_env, {"subject": ANN, "restore": [field]})
        assert status == 200
        book = agent._book
        assert book is not None
        assert await eventually(lambda: not book.gate.suppressed(ann), within=10)
        back = SignalIn(seq=5, ts=int(time.time() * 1000), subject=ANN, name=field, value=62.0)
        assert (await agent.ingest(back)).status == "accepted"
    async with Agent(config) as agent:
        again = SignalIn(seq=6, ts=int(time.time() * 1000), subject=ANN, name=field, value=63.0)
        assert (await agent.ingest(again)).status == "accepted"


async def test_hub_killed_mid_removal_finishes_it_after_restart(
    hub_env: HubEnv, device: FakeDevice, unique: str
) -> None:
    """SIGKILL of ``python -m twinsync hub run`` while a suppressed field is being removed:
    the restarted hub finishes the job from its journal; nothing else is lost."""
    env, c = hub_env, hub_env.config
    ann = device.twin(ANN)
    field, other = "coffee.water_level_pct", "coffee.descale_due"
    base = now_hlc(-600_000)
    ops = [Op(base + (i << 16), field, float(i % 100)) for i in range(4000)]
    # Every tenth point also holds another field: it must survive the rewrite.
    shared = [Op(base + (i << 16), other, i % 20 == 0) for i in range(0, 4000, 10)]
    lines: list[str] = []
    twin_lines(env.brand, "dev-0", (TwinOps(ann, (*ops, *shared)),), lines)
    env.write(lines)
    api_port = free_port()
    cfg_path = env.config.registry.path.parent / "hub.toml"
    cfg_path.write_text(
        f"""[mqtt]
port = {env.services.mosquitto.port}
client_id = "hubr-{unique}"
shared_group = "gr{unique}"
brands = ["{env.brand}"]
{env.services.influxd.hub_toml(c.influx.database)}[api]
port = {api_port}
[registry]
path = "{c.registry.path}"
[keys]
secrets_dir = "{c.keys.secrets_dir}"
[models]
dir = "{c.models.dir}"
"""
    )
    proc = await _run_hub(cfg_path, api_port)
    try:
        url = f"http://127.0.0.1:{api_port}/v1/brands/{env.brand}/privacy/rectification"
        request = asyncio.ensure_future(
            send_json("POST", url, {"subject": ANN, "suppress": [field]}, env.token)
        )
        state = None
        for _ in range(2000):
            with sqlite3.connect(c.registry.path) as db:
                row = (
                    db.execute("SELECT state FROM rewrite_jobs").fetchone()
                    if _has_jobs(db)
                    else None
                )
            if row is not None:
                state = row[0]
                break
            await asyncio.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        with pytest.raises(aiohttp.ClientError):
            await request
        assert state in ("staged", "deleted"), state  # killed mid-job
        proc = await _run_hub(cfg_path, api_port)
        # Within a lease (10 s, if the killed hub had claimed the job) and a resume tick.
        for _ in range(400):
            with sqlite3.connect(c.registry.path) as db:
                states = [r[0] for r in db.execute("SELECT state FROM rewrite_jobs")]
            if states == ["done"]:
                break
            await asyncio.sleep(0.1)
        assert states == ["done"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert _field_points(env, ann, field) == []
    assert len(_field_points(env, ann, other)) == len(shared)


def _has_jobs(db: sqlite3.Connection) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'rewrite_jobs'").fetchone()
    return found is not None
