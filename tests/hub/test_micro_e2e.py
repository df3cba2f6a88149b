"""Micro-segments end to end, with a real agent (its built-in models, micro-coffee among
them), broker, hub and InfluxDB: the agent runs the micro model after the segment model,
``coffee.micro_segment`` and ``coffee.micro_model`` reach the twin and the query index
(``where=coffee.micro_segment = n`` finds the customer), and a customer without
personalization consent gets neither on the wire nor in the twin; the access export
explains the value as the micro model's prediction."""

from __future__ import annotations

import itertools
import urllib.parse
from pathlib import Path

from _fakes import get_json, send_json
from hub_env import HubEnv
from test_tags_e2e import ANN, BOB, _agent, _evenings, _Sniffer, _twin

from cloud_hub import Hub
from edge_agent import BUILTIN_MODELS, ModelStore
from protocol import MODEL_FIELDS

MICRO, REF = MODEL_FIELDS[("coffee", "micro_segment")], MODEL_FIELDS[("coffee", "micro_model")]


async def _where(hub: Hub, env: HubEnv, where: str) -> list[str]:
    url = f"{hub.api_url}/v1/brands/{env.brand}/twins?where={urllib.parse.quote(where)}"
    result = await get_json(url, token=env.token)
    return [t["twin"] if isinstance(t, dict) else t for t in result["twins"]]


async def test_micro_segment_reaches_twin_and_index_only_with_consent(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    env = hub_env
    shipped = ModelStore(tmp_path / "probe", "coffee", {}, builtin=BUILTIN_MODELS).running()
    assert shipped["micro-coffee"] == "micro-coffee@1"  # the package ships one
    sniffer = _Sniffer(env.services.mosquitto.port, env.brand)
    try:
        async with _agent(env, tmp_path) as agent:
            assert agent._book is not None
            ann, bob = agent._book.twin_of(ANN), agent._book.twin_of(BOB)
            agent.set_consent(ANN, {"analytics": True, "personalization": True}, "v1")
            agent.set_consent(BOB, {"analytics": True}, "v1")
            await agent.ingest_many(_evenings([ANN, BOB]))
            assert await agent.drained(20)
            sent = agent.twin_value(ann, MICRO)
        wire = sniffer.ops(env)
    finally:
        sniffer.close()
    assert isinstance(sent, int)
    # Only changes travel: one value per change, never the same value twice in a row.
    values = wire[ann][MICRO]
    assert all(a != b for a, b in itertools.pairwise(values))
    assert wire[ann][REF] == ["micro-coffee@1"]
    assert MICRO not in wire[bob]
    assert REF not in wire[bob]

    fields = await _twin(hub, env, ann)
    assert fields[MICRO]["value"] == sent
    assert fields[REF]["value"] == "micro-coffee@1"
    assert MICRO not in await _twin(hub, env, bob)
    assert await _where(hub, env, f"{MICRO} = {sent}") == [ann]
    assert await _where(hub, env, f"{MICRO} = {sent + 1}") == []
    # The customer's access export explains it as a prediction of the micro model.
    base = f"{hub.api_url}/v1/brands/{env.brand}/privacy"
    status, export = await send_json("POST", f"{base}/access", {"subject": ANN}, env.token)
    assert status == 200, export
    (twin,) = export["twins"]
    (prediction,) = [p for p in twin["predictions"] if p["field"] == MICRO]
    assert (prediction["value"], prediction["model"]) == (sent, "micro-coffee@1")
    assert f"micro-segment {sent}" in prediction["explanation"]
