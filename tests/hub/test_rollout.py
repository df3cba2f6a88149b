"""Model rollout end to end: real hub, real mosquitto and influxd, real agents.

The hub stores an uploaded model, assigns it to devices (a cohort, a percentage, all),
publishes each device's signed model set; every agent checks, downloads, verifies and
installs it (or refuses it) and reports what it runs in its status, which is what the
rollout's progress is computed from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from _fakes import get_json, send_json
from _poll import eventually
from hub_env import HubEnv, make_config

from cloud_hub import (
    SCOPES,
    ApiKeys,
    Hub,
    ensure_hub_key,
    load_hub_config,
    provision_devices,
)
from cloud_hub.cli import main as hub_cli
from cloud_hub.models import ModelRepo, RolloutStore
from cloud_hub.registry import Registry
from cloud_hub.store import state_of
from edge_agent import Agent, load_config
from protocol import (
    ANOMALY_FEATURES,
    Channel,
    Envelope,
    ModelManifest,
    ModelOffer,
    ModelSet,
    SigningKey,
    feature_names,
    packb,
    seal,
    topic,
)
from tests.edge import _onnx
from twinsync.services import LocalServices

COFFEE = feature_names("coffee")


def _env(tmp: Path, services: LocalServices, unique: str, devices: list[tuple[str, str]]) -> HubEnv:
    brand = f"r{unique}"
    # A slow reconcile pass: what reaches devices here is driven by the API's wake-ups.
    config = make_config(tmp, services, f"db{unique}", brand, models={"reconcile_s": 3600})
    bundles = provision_devices(
        config.registry.path,
        config.keys.secrets_dir,
        brand,
        devices,
        tmp / "bundles",
        "127.0.0.1",
        services.mosquitto.port,
    )
    _key, token = ApiKeys(config.registry.path).create(brand, "tests", SCOPES)
    return HubEnv(config, bundles, brand, services, token)


@contextlib.asynccontextmanager
async def _fleet(env: HubEnv, tmp: Path) -> AsyncIterator[dict[str, Agent]]:
    async with contextlib.AsyncExitStack() as stack:
        agents = {}
        for device, bundle in env.bundles.items():
            config = load_config(
                bundle,
                {
                    "mqtt": {"port": env.services.mosquitto.port},
                    "outbox": {"path": str(tmp / device / "outbox.sqlite")},
                    "models": {"dir": str(tmp / device / "models")},
                    "sync": {"status_interval_s": 30},
                },
                environ={},
            )
            agents[device] = await stack.enter_async_context(Agent(config))
        yield agents


def _form(manifest: ModelManifest, data: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("manifest", manifest.to_json(), content_type="application/json")
    form.add_field("model", data, filename="model.onnx", content_type="application/octet-stream")
    return form


class _Api:
    def __init__(self, hub: Hub, env: HubEnv) -> None:
        self.base = f"{hub.api_url}/v1/brands/{env.brand}"
        self.token = env.token
        self.headers = {"Authorization": f"Bearer {env.token}"}

    async def upload(self, manifest: ModelManifest, data: bytes) -> dict[str, Any]:
        form = _form(manifest, data)
        async with (
            aiohttp.ClientSession(headers=self.headers) as s,
            s.post(f"{self.base}/models", data=form) as r,
        ):
            body: dict[str, Any] = await r.json()
            assert r.status == 201, body
            return body

    async def send(self, method: str, path: str, body: object) -> tuple[int, Any]:
        return await send_json(method, self.base + path, body, self.token)

    async def rollout(self, model: str, target: dict[str, Any]) -> dict[str, Any]:
        status, body = await self.send("POST", "/rollouts", {"model": model, "target": target})
        assert status == 201, body
        return body

    async def progress(self, rollout_id: int) -> dict[str, Any]:
        return await get_json(f"{self.base}/rollouts/{rollout_id}", token=self.token)

    async def devices(self) -> dict[str, dict[str, Any]]:
        body = await get_json(f"{self.base}/devices", token=self.token)
        return {d["device"]: d for d in body["devices"]}


def _segment_model(key: SigningKey | None, version: int, **kw: Any) -> tuple[ModelManifest, bytes]:
    data = _onnx.segment_onnx(len(COFFEE), seed=version)
    return _onnx.make_manifest("segment", "coffee", data, COFFEE, key, version=version, **kw), data


async def _settled(api: _Api, rollout_id: int, expect: dict[str, int]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def done() -> bool:
        seen.update(await api.progress(rollout_id))
        return all(seen[k] == v for k, v in expect.items())

    assert await eventually(done, within=30), json.dumps(seen)
    return seen


async def test_a_good_model_reaches_every_device_of_its_cohort(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    env = _env(tmp_path, services, unique, [(f"c{i}", "coffee") for i in range(6)])
    key = ensure_hub_key(env.config.keys.secrets_dir)
    async with Hub(env.config) as hub, _fleet(env, tmp_path) as agents:
        await hub.ready.wait()
        api = _Api(hub, env)
        manifest, data = _segment_model(key, 2)
        uploaded = await api.upload(manifest, data)
        assert uploaded["model"] == "segment-coffee@2"
        assert uploaded["warnings"] == []
        status, cohort = await api.send("PUT", "/cohorts/beta", {"devices": ["c1", "c3", "c4"]})
        assert status == 200
        created = await api.rollout("segment-coffee@2", {"cohort": "beta"})
        assert created["devices"] == 3

        progress = await _settled(api, created["id"], {"running": 3})
        assert progress["members"] == {d: {"state": "running"} for d in ("c1", "c3", "c4")}
        assert progress["refused"] == progress["pending"] == 0
        listed = await api.devices()
        for device, agent in agents.items():
            in_cohort = device in cohort["devices"]
            want = "segment-coffee@2" if in_cohort else "segment-coffee@1"  # else the default
            assert want in listed[device]["models"], (device, listed[device])
            assert agent._models is not None
            assert agent._models.running()["segment-coffee"] == want
            # ... and it is what predicts on the device
            label = agent._models.segment([0.5] * len(COFFEE))
            assert label is not None
            assert label[1] == want

        # A device added to the cohort later gets the model too.
        status, body = await api.send("PUT", "/cohorts/beta", {"devices": ["c1", "c3", "c4", "c5"]})
        assert status == 200, body
        await _settled(api, created["id"], {"running": 4})


def _bad_model(case: str, key: SigningKey) -> tuple[ModelManifest, bytes, str]:
    """A model every device must refuse, and the reason it must give."""
    if case == "wrong_signature":
        manifest, data = _segment_model(SigningKey.generate(), 3)
        return manifest, data, "unknown_key"
    if case == "forged_manifest":
        manifest, data = _segment_model(key, 3)
        # Signed by the hub, then altered: claims other metrics.
        raw = json.loads(manifest.to_json())
        raw["metrics"] = {"ari": 1.0}
        return ModelManifest.from_json(json.dumps(raw)), data, "signature"
    if case == "mismatched_inputs":
        data = _onnx.segment_onnx(len(COFFEE) - 1, seed=3)
        manifest = _onnx.make_manifest("segment", "coffee", data, COFFEE[:-1], key, version=3)
        return manifest, data, "incompatible_inputs"
    if case == "fails_smoke_test":
        data = _onnx.nan_scores_onnx()
        manifest = _onnx.make_manifest("anomaly", "coffee", data, ANOMALY_FEATURES, key, version=3)
        return manifest, data, "smoke_failed"
    assert case == "tampered"
    manifest, data = _segment_model(key, 3)
    return manifest, data, "hash_mismatch"


@pytest.mark.parametrize(
    "case",
    ["tampered", "wrong_signature", "forged_manifest", "mismatched_inputs", "fails_smoke_test"],
)
async def test_a_bad_model_is_refused_and_the_old_one_keeps_serving(
    case: str, tmp_path: Path, services: LocalServices, unique: str
) -> None:
    env = _env(tmp_path, services, unique, [(f"c{i}", "coffee") for i in range(3)])
    key = ensure_hub_key(env.config.keys.secrets_dir)
    async with Hub(env.config) as hub, _fleet(env, tmp_path) as agents:
        await hub.ready.wait()
        api = _Api(hub, env)
        # The old model: an installed v2 (rolled out), or the package's default anomaly model.
        good, good_data = _segment_model(key, 2)
        await api.upload(good, good_data)
        first = await api.rollout("segment-coffee@2", {"all": True})
        await _settled(api, first["id"], {"running": 3})

        manifest, data, reason = _bad_model(case, key)
        uploaded = await api.upload(manifest, data)
        if case in ("wrong_signature", "forged_manifest", "mismatched_inputs"):
            assert uploaded["warnings"], uploaded  # the hub says devices will refuse it
        if case == "tampered":
            # The file store is not trusted: someone swaps the stored file's bytes.
            stored = hub.models.model(env.brand, manifest.name, manifest.version)
            assert stored is not None
            stored.path.write_bytes(data[:-64] + bytes(64))
        old = {d: a._models.running()[manifest.name] for d, a in agents.items() if a._models}
        rollout = await api.rollout(manifest.ref, {"all": True})
        progress = await _settled(api, rollout["id"], {"refused": 3})
        assert progress["refusals"] == {reason: 3}
        assert progress["running"] == 0
        listed = await api.devices()
        for device, agent in agents.items():
            assert listed[device]["model_failures"][manifest.name] == f"{reason} {manifest.ref}"
            assert old[device] in listed[device]["models"]
            assert manifest.ref not in listed[device]["models"]
            assert agent._models is not None
            assert agent._models.running()[manifest.name] == old[device]
            assert agent.stats["models_refused"] >= 1
        # ... and the old model still predicts.
        store = agents["c0"]._models
        assert store is not None
        if manifest.kind == "segment":
            assert store.segment([0.5] * len(COFFEE)) is not None
        else:
            scored = store.anomaly([0.1, 0.0, 0.5, 0.3, 0.5])  # an ordinary reading
            assert scored is not None
            assert scored[2] == old["c0"]


async def test_a_percentage_rollout_hits_the_requested_share(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    coffee = [f"c{i:02}" for i in range(10)]
    env = _env(
        tmp_path,
        services,
        unique,
        [(d, "coffee") for d in coffee] + [("t0", "thermostat"), ("t1", "thermostat")],
    )
    key = ensure_hub_key(env.config.keys.secrets_dir)
    async with Hub(env.config) as hub, _fleet(env, tmp_path):
        await hub.ready.wait()
        api = _Api(hub, env)
        manifest, data = _segment_model(key, 2)
        await api.upload(manifest, data)

        canary = await api.rollout(manifest.ref, {"percent": 30})
        assert canary["devices"] == 3  # 30 % of the 10 coffee devices; thermostats never
        progress = await _settled(api, canary["id"], {"running": 3})
        first = set(progress["members"])
        listed = await api.devices()
        running = {d for d, row in listed.items() if manifest.ref in row["models"]}
        assert running == first
        assert first <= set(coffee)

        wider = await api.rollout(manifest.ref, {"percent": 70})
        progress = await _settled(api, wider["id"], {"running": 7})
        assert first <= set(progress["members"])  # the canaries stay in
        listed = await api.devices()
        running = {d for d, row in listed.items() if manifest.ref in row["models"]}
        assert len(running) == 7
        assert running == set(progress["members"])


async def test_rollout_requests_are_checked(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    env = _env(tmp_path, services, unique, [("c0", "coffee")])
    key = ensure_hub_key(env.config.keys.secrets_dir)
    async with Hub(env.config) as hub:
        await hub.ready.wait()
        api = _Api(hub, env)
        manifest, data = _segment_model(key, 2)
        await api.upload(manifest, data)
        cases: list[tuple[str, str, object, int, str]] = [
            (
                "POST",
                "/rollouts",
                {"model": "segment-coffee@9", "target": {"all": True}},
                404,
                "unknown_model",
            ),
            (
                "POST",
                "/rollouts",
                {"model": "segment-coffee", "target": {"all": True}},
                400,
                "bad_model",
            ),
            (
                "POST",
                "/rollouts",
                {"model": manifest.ref, "target": {"percent": 0}},
                400,
                "bad_target",
            ),
            (
                "POST",
                "/rollouts",
                {"model": manifest.ref, "target": {"percent": 101}},
                400,
                "bad_target",
            ),
            (
                "POST",
                "/rollouts",
                {"model": manifest.ref, "target": {"all": True, "cohort": "x"}},
                400,
                "bad_target",
            ),
            (
                "POST",
                "/rollouts",
                {"model": manifest.ref, "target": {"cohort": "nobody"}},
                400,
                "unknown_cohort",
            ),
            ("POST", "/rollouts", [1, 2], 400, "bad_json"),
            ("PUT", "/cohorts/beta", {"devices": ["../etc"]}, 400, "bad_device"),
            ("PUT", "/cohorts/b%20c", {"devices": ["c0"]}, 400, "bad_cohort"),
        ]
        for method, path, body, status, code in cases:
            got, answer = await api.send(method, path, body)
            assert (got, answer["error"]["code"]) == (status, code), (path, body, answer)
        # A file that does not match its manifest is refused at upload, and nothing is stored.
        form = _form(manifest, data + b"x")
        async with (
            aiohttp.ClientSession(headers=api.headers) as s,
            s.post(f"{api.base}/models", data=form) as r,
        ):
            assert r.status == 422
            assert (await r.json())["error"]["code"] == "hash_mismatch"
        # Another version with another file under an existing name@version is a conflict.
        other_data = _onnx.segment_onnx(len(COFFEE), seed=99)
        other = _onnx.make_manifest("segment", "coffee", other_data, COFFEE, key, version=2)
        form = _form(other, other_data)
        async with (
            aiohttp.ClientSession(headers=api.headers) as s,
            s.post(f"{api.base}/models", data=form) as r,
        ):
            assert r.status == 409
        listed = await get_json(f"{api.base}/models", token=api.token)
        assert [m["model"] for m in listed["models"]] == ["segment-coffee@2"]
        assert (await get_json(f"{api.base}/rollouts", token=api.token))["rollouts"] == []


async def test_rolling_out_the_previous_version_rolls_back_without_a_download(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    env = _env(tmp_path, services, unique, [("c0", "coffee"), ("c1", "coffee")])
    key = ensure_hub_key(env.config.keys.secrets_dir)
    async with Hub(env.config) as hub, _fleet(env, tmp_path) as agents:
        await hub.ready.wait()
        api = _Api(hub, env)
        for version in (2, 3):
            manifest, data = _segment_model(key, version)
            await api.upload(manifest, data)
            rollout = await api.rollout(manifest.ref, {"all": True})
            await _settled(api, rollout["id"], {"running": 2})
        # The v2 file is gone from the hub: going back must not need it.
        v2 = hub.models.model(env.brand, "segment-coffee", 2)
        assert v2 is not None
        v2.path.unlink()
        back = await api.rollout("segment-coffee@2", {"all": True})
        await _settled(api, back["id"], {"running": 2})
        for agent in agents.values():
            assert agent._models is not None
            assert agent._models.running()["segment-coffee"] == "segment-coffee@2"
            assert agent.stats["models_rolled_back"] == 1
            assert agent.stats["models_installed"] == 2


async def test_a_device_offline_during_the_rollout_gets_the_model_when_it_returns(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    env = _env(tmp_path, services, unique, [("c0", "coffee")])
    key = ensure_hub_key(env.config.keys.secrets_dir)
    async with Hub(env.config) as hub:
        await hub.ready.wait()
        api = _Api(hub, env)
        manifest, data = _segment_model(key, 2)
        await api.upload(manifest, data)
        rollout = await api.rollout(manifest.ref, {"all": True})
        assert (await api.progress(rollout["id"]))["pending"] == 1
        async with _fleet(env, tmp_path):  # the set was retained for it
            await _settled(api, rollout["id"], {"running": 1})


async def test_a_model_set_not_signed_by_the_hub_is_ignored(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    env = _env(tmp_path, services, unique, [("c0", "coffee")])
    hub_key = ensure_hub_key(env.config.keys.secrets_dir)
    attacker = SigningKey.generate()
    manifest, _ = _segment_model(hub_key, 5)  # a genuine manifest, replayed elsewhere
    async with Hub(env.config) as hub, _fleet(env, tmp_path) as agents:
        await hub.ready.wait()
        agent = agents["c0"]
        body = ModelSet(
            version=1,
            models=(ModelOffer(manifest=manifest.to_json(), url="http://127.0.0.1:9/x.onnx"),),
        )
        envelope = Envelope(
            kind="model",
            brand=env.brand,
            device="c0",
            seq=1,
            kid=attacker.kid,
            sent_ms=int(time.time() * 1000),
            body=packb(body.to_wire()),
        )
        before = agent.stats["bad_acks"]
        # Subscribed before the attacker speaks (the set is not retained: nobody would
        # deliver it later).
        uplink = agent._uplink
        assert uplink is not None
        assert await eventually(uplink.connected.is_set, within=10)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", env.services.mosquitto.port)
        client.loop_start()
        try:
            client.publish(
                topic(env.brand, "c0", Channel.MODEL), seal(envelope, attacker), qos=1
            ).wait_for_publish(5)
            assert await eventually(lambda: agent.stats["bad_acks"] > before, within=10)
        finally:
            client.loop_stop()
            client.disconnect()
        assert agent.stats["model_sets"] == 0
        assert agent._models is not None
        assert agent._models.running()["segment-coffee"] != manifest.ref


async def test_models_and_rollouts_from_the_command_line(
    tmp_path: Path, services: LocalServices, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _env(tmp_path, services, unique, [("c0", "coffee")])
    toml = tmp_path / "hub.toml"
    toml.write_text(
        f"""
[mqtt]
port = {services.mosquitto.port}
brands = ["{env.brand}"]
client_id = "hub-cli-{unique}"
shared_group = "gcli{unique}"
{services.influxd.hub_toml(f"db{unique}")}[api]
port = 0
[registry]
path = "registry.sqlite"
[keys]
secrets_dir = "secrets"
[models]
dir = "models"
reconcile_s = 0.2
"""
    )
    config = load_hub_config(toml)
    assert config.registry.path == env.config.registry.path  # the provisioned fleet
    key = ensure_hub_key(config.keys.secrets_dir)
    trained = tmp_path / "trained"  # laid out like 'twinsync hub train --out'
    manifest, data = _segment_model(key, 4)
    _onnx.write_builtin(trained, manifest, data)
    async with Hub(config) as hub, _fleet(env, tmp_path):
        await hub.ready.wait()
        cli = ["--config", str(toml), "--brand", env.brand]
        assert await asyncio.to_thread(hub_cli, ["models", *cli, str(trained)]) == 0
        assert capsys.readouterr().out.splitlines() == ["segment-coffee@4"]
        argv = ["rollout", *cli, "--model", "segment-coffee@4", "--all"]
        assert await asyncio.to_thread(hub_cli, argv) == 0
        created = json.loads(capsys.readouterr().out)
        assert created["devices"] == 1
        await _settled(_Api(hub, env), created["id"], {"running": 1})
        bad = ["rollout", *cli, "--model", "segment-coffee@5", "--all"]
        assert await asyncio.to_thread(hub_cli, bad) == 2
        assert "no model segment-coffee@5" in capsys.readouterr().err


def test_set_versions_count_changes_per_device(tmp_path: Path) -> None:
    state = state_of(tmp_path / "r.sqlite")
    store = RolloutStore(
        state=state,
        repo=ModelRepo(state=state, models_dir=tmp_path / "m"),
        registry=Registry(state),
    )
    empty = {"": "E"}
    assert store.set_versions("b", {**empty, "d1": "A", "d2": "A"}) == {"d1": 1, "d2": 1}
    assert store.set_versions("b", {**empty, "d1": "A", "d2": "A"}) == {}  # nothing changed
    assert store.set_versions("b", {**empty, "d1": "B", "d2": "A"}) == {"d1": 2}
    # A hub (re)starting re-sends every set at its current version.
    assert store.set_versions("b", {**empty, "d1": "B", "d2": "A"}, everything=True) == {
        "d1": 2,
        "d2": 1,
    }
    # A device no rollout addresses any more gets the empty set, once.
    assert store.set_versions("b", {**empty, "d1": "B"}) == {"d2": 2}
    assert store.set_versions("b", {**empty, "d1": "B"}) == {}
    assert store.set_versions("other", {**empty, "d1": "B"}) == {"d1": 1}  # per brand
