"""Micro-segment models roll out like the other kinds: real hub, mosquitto, influxd and
agents. A signed ``micro-coffee@2`` (the package's graph, re-versioned) is uploaded
without warnings and installed by every device, which then serves it after its segment
model; a micro model declaring the segment model's inputs only (no ``segment`` column)
gets an upload warning and is refused by every device (``incompatible_inputs``, counted
in ``models_refused``) while ``micro-coffee@1`` keeps serving."""

from __future__ import annotations

from pathlib import Path

from test_rollout import COFFEE, _Api, _env, _fleet, _settled

from cloud_hub import Hub, ensure_hub_key
from edge_agent import BUILTIN_MODELS
from protocol import MICRO_SEGMENT_INPUT, ModelManifest, SigningKey
from tests.edge import _onnx
from twinsync.services import LocalServices

ROW = [0.5] * len(COFFEE)


def _micro(key: SigningKey, version: int, inputs: tuple[str, ...]) -> tuple[ModelManifest, bytes]:
    data = (BUILTIN_MODELS / "micro-coffee.onnx").read_bytes()
    manifest = _onnx.make_manifest("micro", "coffee", data, inputs, key, version=version)
    return manifest, data


async def test_a_micro_model_rolls_out_and_a_mismatched_one_is_refused(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    env = _env(tmp_path, services, unique, [(f"c{i}", "coffee") for i in range(3)])
    key = ensure_hub_key(env.config.keys.secrets_dir)
    async with Hub(env.config) as hub, _fleet(env, tmp_path) as agents:
        await hub.ready.wait()
        api = _Api(hub, env)
        for agent in agents.values():
            assert agent._models is not None
            assert agent._models.running()["micro-coffee"] == "micro-coffee@1"  # built in

        good, data = _micro(key, 2, (*COFFEE, MICRO_SEGMENT_INPUT))
        uploaded = await api.upload(good, data)
        assert uploaded["model"] == "micro-coffee@2"
        assert uploaded["warnings"] == []
        rollout = await api.rollout("micro-coffee@2", {"all": True})
        await _settled(api, rollout["id"], {"running": 3})
        for agent in agents.values():
            assert agent._models is not None
            assert agent._models.running()["micro-coffee"] == "micro-coffee@2"
            segment = agent._models.segment(ROW)
            assert segment is not None
            micro = agent._models.micro(ROW, segment[0])
            assert micro is not None
            assert micro[1] == "micro-coffee@2"

        bad, bad_data = _micro(key, 3, COFFEE)  # no segment column
        uploaded = await api.upload(bad, bad_data)
        assert any("inputs" in w for w in uploaded["warnings"]), uploaded
        rollout = await api.rollout("micro-coffee@3", {"all": True})
        progress = await _settled(api, rollout["id"], {"refused": 3})
        assert progress["refusals"] == {"incompatible_inputs": 3}
        for agent in agents.values():
            assert agent._models is not None
            assert agent._models.running()["micro-coffee"] == "micro-coffee@2"
            assert agent._models.failures()["micro-coffee"].reason == "incompatible_inputs"
            assert agent.stats["models_refused"] >= 1
