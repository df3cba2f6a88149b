"""The device's own privacy page over the local interface: what it collects about a user,
for which purpose, whether it may, and what the twin says now."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from edge_agent import Agent
from twinsync.services import LocalServices, free_port

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


async def test_the_user_suppresses_and_restores_fields_on_the_device(
    services: LocalServices, tmp_path: Path, unique: str
) -> None:
    bundle = make_bundle(tmp_path / "b", f"b{unique}", f"d{unique}")
    cfg = bundle.config(services.mosquitto.port, ingest={"port": free_port()})
    port = cfg.ingest.port
    field = "coffee.strength"
    async with Agent(cfg) as agent:
        assert (await agent.ingest(sig(1, "coffee.strength", 4))).status == "accepted"
        reply = await _ask(port, {"fields": {"subject": SUBJECT, "suppress": [field]}})
        assert reply == {"seq": None, "status": "accepted", "reason": "fields"}
        assert await agent.ingest(sig(2, "coffee.strength", 5)) == (2, "rejected", "suppressed")
        view = (await _ask(port, {"view": {"subject": SUBJECT}}))["view"]
        assert view["suppressed"] == [field]
        assert {c["signal"]: c["allowed"] for c in view["collected"]}["coffee.strength"] is False
        # Bad requests change nothing.
        for bad in (
            {"subject": SUBJECT, "suppress": ["thermostat.mode"]},  # not this product's
            {"subject": SUBJECT, "suppress": ["coffee.nope"]},
            {"subject": SUBJECT},
            {"subject": SUBJECT, "suppress": field},
            {"suppress": [field]},
            {"subject": SUBJECT, "suppress": [field], "restore": [field]},
        ):
            assert (await _ask(port, {"fields": bad}))["status"] == "rejected", bad
        assert (await _ask(port, {"view": {"subject": SUBJECT}}))["view"]["suppressed"] == [field]
    async with Agent(cfg) as agent:  # remembered across a restart
        assert await agent.ingest(sig(3, "coffee.strength", 5)) == (3, "rejected", "suppressed")
        agent.set_fields(SUBJECT, restore=[field])
        assert (await agent.ingest(sig(4, "coffee.strength", 3))) == (4, "accepted", None)
    async with Agent(cfg) as agent:
        assert (await agent.ingest(sig(5, "coffee.strength", 2))).status == "accepted"
