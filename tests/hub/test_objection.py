"""Objection to profiling with a real agent, broker, hub and InfluxDB: after the request
no profile field of the twin is in InfluxDB nor sent by the device, usage fields keep
flowing, other twins are untouched; the request is tracked, signed, sent as a webhook,
audited without the identifier, shown by access, and lifted by consent given again."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from _fakes import FakeDevice, get_json, now_hlc, send_json
from _poll import eventually
from hub_env import HubEnv

from cloud_hub import Hub, ensure_hub_key
from cloud_hub.privacy import verify_receipt
from edge_agent import Agent, load_config
from protocol import FIELDS, SignalIn
from twinsync.services import free_port

DORA, ERIN = "dora.objects@example.test", "erin@example.test"
_PROFILE = {n for n, s in FIELDS.items() if s.field_class == "profile"}


async def _post(hub: Hub, env: HubEnv, path: str, body: object) -> tuple[int, dict[str, Any]]:
    return await send_json("POST", f"{hub.api_url}/v1/brands/{env.brand}{path}", body, env.token)


def _profile_points(env: HubEnv, twin: str) -> list[Any]:
    res = env.influx(f'SELECT * FROM "twin_profile" WHERE "twin" = \'{twin}\'')
    return res[0].get("series") or []


def _usage_fields_since(env: HubEnv, twin: str, since_ms: int) -> set[str]:
    res = env.influx(
        f'SELECT * FROM "twin" WHERE "twin" = \'{twin}\' AND time >= {since_ms * 1_000_000}'
    )
    out = set()
    for s in res[0].get("series") or []:
        for row in s["values"]:
            out |= {c for c, v in zip(s["columns"], row, strict=True) if v is not None}
    return out - {"time", "brand", "device", "twin"}


async def test_objection_removes_and_stops_profiling_of_that_twin_only(
    hub: Hub, hub_env: HubEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = hub_env
    status, _ = await send_json(
        "PUT",
        f"{hub.api_url}/v1/brands/{env.brand}/webhook",
        {"url": "http://127.0.0.1:9/"},
        env.token,
    )
    assert status == 200
    config = load_config(
        env.bundles["dev-0"],
        {
            "mqtt": {"port": env.services.mosquitto.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "models": {"dir": str(tmp_path / "models")},
            "ingest": {"port": free_port()},
        },
        environ={},
    )
    hub_key = ensure_hub_key(env.config.keys.secrets_dir).public
    seq = 0

    async def brew(subject: str) -> None:
        nonlocal seq
        seq += 1
        ts = int(time.time() * 1000)
        result = await agent.ingest(
            SignalIn(seq=seq, ts=ts, subject=subject, name="coffee.brew", value=1)
        )
        assert result.status == "accepted", result

    async with Agent(config) as agent:
        assert agent._book is not None
        dora, erin = agent._book.twin_of(DORA), agent._book.twin_of(ERIN)
        for subject in (DORA, ERIN):
            agent.set_consent(subject, {"analytics": True, "personalization": True}, "v1")
            await brew(subject)
        assert await agent.drained(15)
        assert await eventually(
            lambda: bool(_profile_points(env, dora) and _profile_points(env, erin)), within=10
        )

        status, receipt = await _post(hub, env, "/privacy/objection", {"subject": DORA})
        assert status == 200, receipt
        verify_receipt(receipt, hub_key)
        assert (receipt["kind"], receipt["twins"], receipt["points_left"]) == (
            "objection",
            [dora],
            0,
        )
        assert receipt["points_found"] > 0
        objected_ms = int(time.time() * 1000)
        assert _profile_points(env, dora) == []
        assert _profile_points(env, erin)  # another customer's profile stays

        # The device applied the signed consent withdrawal: its models keep nothing.
        assert await eventually(
            lambda: not any(agent.consent_state(DORA)[p] for p in ("analytics", "personalization")),
            within=10,
        )
        for _ in range(3):
            await brew(DORA)
            await brew(ERIN)
        assert await agent.drained(15)
        await asyncio.sleep(0.5)
        # The hub drops (and counts) any profile op of the twin it receives: none came,
        # so the device sent none (delta bodies may be sealed to the hub, so this
        # count, not a sniffer, is the witness).
        assert hub.metrics.get("twinsync_hub_blocked_ops_dropped_total") == 0
        assert "coffee.brews_total" in _usage_fields_since(env, dora, objected_ms)
        assert _profile_points(env, dora) == []

        # Any device still sending a profile op for the twin: acked, not stored.
        fake = FakeDevice(
            env.bundles["dev-1"].parent, env.brand, "dev-1", env.services.mosquitto.port
        )
        try:
            fake.publish(
                fake.delta(
                    1,
                    {
                        dora: [
                            (now_hlc(), "coffee.segment", 3),
                            (now_hlc(), "coffee.brews_total", 9),
                        ]
                    },
                )
            )
            await fake.wait_acked({1})
            assert _profile_points(env, dora) == []
            assert hub.metrics.get("twinsync_hub_blocked_ops_dropped_total") >= 1

            # Tracked with its deadline, shown by access, audited without identifiers.
            requests = await get_json(
                f"{hub.api_url}/v1/brands/{env.brand}/privacy/requests", token=env.token
            )
            (row,) = [r for r in requests["requests"] if r["kind"] == "objection"]
            assert row["state"] == "done"
            assert row["deadline_ms"] - row["received_ms"] == 30 * 86_400_000
            status, export = await _post(hub, env, "/privacy/access", {"subject": DORA})
            assert status == 200
            assert [(r["twin"], r["kind"]) for r in export["restrictions"]] == [(dora, "objection")]
            assert not {f["field"] for t in export["twins"] for f in t["fields"]} & _PROFILE
            audit = hub.api_keys.audit_log(env.brand)
            assert any(a["route"].endswith("/privacy/objection") for a in audit)
            with sqlite3.connect(env.config.registry.path) as db:
                queued = [json.loads(b) for (b,) in db.execute("SELECT body FROM webhook_queue")]
                dump = "\n".join(db.iterdump())
            (event,) = [e for e in queued if e["event"] == "objection"]
            verify_receipt(event["receipt"], hub_key)
            assert DORA not in dump
            assert DORA not in caplog.text

            # Consent to profiling given again through the brand lifts the objection.
            status, _ = await _post(
                hub,
                env,
                "/privacy/consent",
                {"subject": DORA, "purposes": {"personalization": True}, "notice": "v2"},
            )
            assert status == 202
            await asyncio.sleep(hub.erasures.blocks.refresh_s + 0.2)
            fake.publish(fake.delta(2, {dora: [(now_hlc(), "coffee.segment", 4)]}))
            await fake.wait_acked({2})
            assert await eventually(lambda: bool(_profile_points(env, dora)), within=10)
        finally:
            fake.close()


async def test_objection_requests_are_checked(hub: Hub, hub_env: HubEnv) -> None:
    for body in ({}, {"subject": ""}, {"subject": 5}, ["x"]):
        status, answer = await _post(hub, hub_env, "/privacy/objection", body)
        assert (status, answer["error"]["code"]) == (400, "bad_subject"), body
    status, answer = await send_json(
        "POST",
        f"{hub.api_url}/v1/brands/nobrand/privacy/objection",
        {"subject": "x"},
        hub_env.token,
    )
    assert status == 403
