"""The device's own privacy page over the local interface: what it collects about a user,
for which purpose, whether it may, and what the twin says now."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from edge_agent import Agent
from firmware_sim.services import LocalServices, free_port

from .conftest import make_bundle
from .test_pipeline import SUBJECT, sig


async def _ask(port: int, request: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    reply: dict[str, Any] = json.loads(await reader.readline())
    writer.close()
    return reply


async def test_the_local_view_shows_purposes_consent_and_the_twin(
    services: LocalServices, tmp_path: Path, unique: str
) -> None:
    bundle = make_bundle(tmp_path / "b", f"b{unique}", f"d{unique}", consented=False)
    cfg = bundle.config(services.mosquitto.port, ingest={"port": free_port()})
    async with Agent(cfg) as agent:
        await agent.ingest(sig(1, "coffee.brew", 2))
        await agent.ingest(sig(2, "coffee.strength", 4))  # not consented: not kept
        view = (await _ask(cfg.ingest.port, {"view": {"subject": SUBJECT}}))["view"]
        assert view["consent"] == {"analytics": False, "personalization": False, "marketing": False}
        collected = {c["signal"]: c for c in view["collected"]}
        assert collected["coffee.strength"] == {
            "signal": "coffee.strength",
            "purpose": "personalization",
            "allowed": False,
            "becomes": "coffee.strength",
        }
        assert collected["coffee.brew"]["allowed"] is True
        assert view["twin_says"] == {"coffee.brews_total": {"value": 2, "purpose": "service"}}
        reply = await _ask(
            cfg.ingest.port,
            {
                "consent": {
                    "subject": SUBJECT,
                    "purposes": {"personalization": True},
                    "notice": "v1",
                }
            },
        )
        assert reply == {"seq": None, "status": "accepted", "reason": "consent"}
        await agent.ingest(sig(3, "coffee.strength", 5))
        view = (await _ask(cfg.ingest.port, {"view": {"subject": SUBJECT}}))["view"]
        assert view["consent"]["personalization"] is True
        assert view["twin_says"]["coffee.strength"] == {"value": 5, "purpose": "personalization"}
        assert [e[2:] for e in view["consent_ledger"]] == [["device", "v1"]]
        assert SUBJECT not in json.dumps(view)  # the view names the pseudonym, not the id
        bad = await _ask(cfg.ingest.port, {"view": {"subject": 7}})
        assert bad == {"seq": None, "status": "rejected", "reason": "malformed"}
