"""A device's status carries the models it serves; the hub lists them per device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _fakes import get_json
from _poll import eventually
from hub_env import HubEnv

from cloud_hub import Hub
from edge_agent import Agent, load_config


async def test_running_models_reach_the_device_list(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    config = load_config(
        hub_env.bundles["dev-0"],
        {
            "mqtt": {"port": hub_env.services.mosquitto.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "models": {"dir": str(tmp_path / "models")},
        },
        environ={},
    )
    url = f"{hub.api_url}/v1/brands/{hub_env.brand}/devices"
    listed: dict[str, Any] = {}

    async def reported() -> bool:
        body = await get_json(url, token=hub_env.token)
        listed.update({d["device"]: d for d in body["devices"]})
        return bool(listed.get("dev-0", {}).get("models"))

    async with Agent(config):
        assert await eventually(reported, within=20)
    assert listed["dev-0"]["models"] == [
        "anomaly-coffee@1",
        "churn-coffee@1",
        "micro-coffee@1",
        "segment-coffee@1",
    ]
    assert listed["dev-0"]["model_failures"] == {}
    assert listed["dev-1"]["models"] == []  # never connected
