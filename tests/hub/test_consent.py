"""Consent per purpose, enforced on the device: off by default, given on the device,
withdrawn by the brand through the hub, given again. A sniffer on the broker and
InfluxDB itself show that nothing of a withdrawn purpose is sent or written."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from _fakes import get_json, send_json
from _poll import eventually
from hub_env import HubEnv

from cloud_hub import Hub, ensure_hub_key
from edge_agent import Agent, load_config
from protocol import (
    BodyOpener,
    Delta,
    SignalIn,
    SigningKey,
    decode_body,
    hub_box_key,
    open_envelope,
    topic,
)
from protocol import Channel as Ch
from twinsync.services import free_port

SUBJECT = "dora@example.test"


class _Sniffer:
    """Every delta op (twin, field, hlc ms) the device puts on the broker. Deltas are
    sealed to the hub (the default), so the sniffer opens them with the hub's box key:
    what is checked is what the hub would receive."""

    def __init__(self, port: int, brand: str, device: str, hub_key: SigningKey) -> None:
        self.ops: list[tuple[str, str, int, float]] = []
        self.consent: list[Any] = []
        self.sealed = 0
        self._lock = threading.Lock()
        self._opener = BodyOpener([hub_box_key(hub_key)])
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic(brand, device, Ch.DELTA), qos=1)
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        env = open_envelope(bytes(msg.payload)).envelope
        self.sealed += env.sealed
        delta = decode_body("delta", self._opener.open(env) if env.sealed else env.body)
        assert isinstance(delta, Delta)
        now = time.monotonic()
        with self._lock:
            for t in delta.twins:
                self.ops += [(t.twin, op.field, op.hlc >> 16, now) for op in t.ops]
            self.consent += list(delta.consent)

    def fields_since(self, twin: str, since: float) -> set[str]:
        with self._lock:
            return {f for t, f, _ms, seen in self.ops if t == twin and seen >= since}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def _post(hub: Hub, env: HubEnv, path: str, body: object) -> tuple[int, dict[str, Any]]:
    return await send_json("POST", f"{hub.api_url}/v1/brands/{env.brand}{path}", body, env.token)


def _signal(seq: int, name: str, value: object) -> SignalIn:
    return SignalIn(seq=seq, ts=int(time.time() * 1000), subject=SUBJECT, name=name, value=value)


async def test_consent_is_off_by_default_given_withdrawn_and_given_again(
    hub: Hub, hub_env: HubEnv, tmp_path: Path
) -> None:
    port = free_port()
    config = load_config(
        hub_env.bundles["dev-0"],
        {
            "mqtt": {"port": hub_env.services.mosquitto.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "models": {"dir": str(tmp_path / "models")},
            "ingest": {"port": port},
        },
        environ={},
    )
    hub_key = ensure_hub_key(hub_env.config.keys.secrets_dir)
    sniffer = _Sniffer(hub_env.services.mosquitto.port, hub_env.brand, "dev-0", hub_key)
    try:
        async with Agent(config) as agent:
            assert agent._book is not None
            dora = agent._book.twin_of(SUBJECT)
            # 1. Nothing agreed yet: service signals pass, personalization does not, and no
            #    features (analytics) or predictions (personalization) are kept.
            assert agent.consent_state(SUBJECT) == dict.fromkeys(
                ("analytics", "personalization", "marketing"), False
            )
            r1 = await agent.ingest(_signal(1, "coffee.brew", 1))
            r2 = await agent.ingest(_signal(2, "coffee.strength", 4))
            assert (r1.status, (r2.status, r2.reason)) == ("accepted", ("rejected", "no_consent"))
            assert await agent.drained(15)
            fields = {f for t, f, _ms, _s in sniffer.ops if t == dora}
            assert "coffee.brews_total" in fields
            assert "coffee.strength" not in fields
            assert not any(".f_" in f or "segment" in f or "churn" in f for f in fields)

            # 2. The customer agrees on the device's own app (the local interface).
            reader, writer = await asyncio.open_connection("127.0.0.1", agent.ingest_port)
            line = {
                "consent": {
                    "subject": SUBJECT,
                    "purposes": {"personalization": True, "analytics": True},
                    "notice": "v1",
                }
            }
            writer.write(json.dumps(line).encode() + b"\n")
            await writer.drain()
            reply = json.loads(await reader.readline())
            writer.close()
            assert reply == {"seq": None, "status": "accepted", "reason": "consent"}
            r3 = await agent.ingest(_signal(3, "coffee.strength", 5))
            assert r3.status == "accepted"
            assert await agent.drained(15)
            assert "coffee.strength" in {f for t, f, _ms, _s in sniffer.ops if t == dora}
            assert any(".f_" in f for t, f, _ms, _s in sniffer.ops if t == dora)

            # 3. The customer withdraws personalization by telling the brand.
            status, answer = await _post(
                hub,
                hub_env,
                "/privacy/consent",
                {"subject": SUBJECT, "purposes": {"personalization": False}, "notice": "v1"},
            )
            assert status == 202, answer
            assert answer["twins"] == [dora]
            ok = await eventually(
                lambda: not agent.consent_state(SUBJECT)["personalization"], within=10
            )
            assert ok, str({k: v for k, v in agent.stats.items() if v})
            withdrawn_at = time.monotonic()
            withdrawn_ms = int(time.time() * 1000)
            for seq in range(4, 10):
                r = await agent.ingest(_signal(seq, "coffee.strength", 2 + seq % 3))
                assert (r.status, r.reason) == ("rejected", "no_consent")
            r = await agent.ingest(_signal(10, "coffee.brew", 1))
            assert r.status == "accepted"
            assert await agent.drained(15)
            await asyncio.sleep(0.5)
            sent = sniffer.fields_since(dora, withdrawn_at)
            assert "coffee.brews_total" in sent  # the device kept syncing service data
            assert "coffee.strength" not in sent
            assert not any("segment" in f or "churn" in f for f in sent)
            points = hub_env.influx(
                f'SELECT "coffee.strength" FROM "twin" WHERE "twin" = \'{dora}\' '
                f"AND time >= {withdrawn_ms * 1_000_000}"
            )[0].get("series")
            assert not points

            # The twin carries its consent history: who, when, which notice.
            consent = await get_json(
                f"{hub.api_url}/v1/brands/{hub_env.brand}/twins/{dora}/consent",
                token=hub_env.token,
            )
            assert consent["current"]["personalization"]["granted"] is False
            assert consent["current"]["personalization"]["by"] == "hub"
            assert consent["current"]["analytics"]["granted"] is True
            assert [e["actor"] for e in consent["ledger"]] == ["device", "hub"]
            assert {e["notice"] for e in consent["ledger"]} == {"v1"}
            assert agent._outbox is not None
            assert [e.actor for e in agent._outbox.consent_ledger(dora)] == ["device", "hub"]

            # 4. Consent given again: personalization signals flow again.
            agent.set_consent(SUBJECT, {"personalization": True}, "v2")
            r = await agent.ingest(_signal(11, "coffee.strength", 3))
            assert r.status == "accepted"
            assert await agent.drained(15)
            assert await eventually(
                lambda: bool(
                    hub_env.influx(
                        f'SELECT "coffee.strength" FROM "twin" WHERE "twin" = \'{dora}\' '
                        f"AND time >= {withdrawn_ms * 1_000_000}"
                    )[0].get("series")
                ),
                within=10,
            )
        # The ledger survives a restart (the choice is not forgotten).
        async with Agent(config) as again:
            assert again.consent_state(SUBJECT) == {
                "analytics": True,
                "personalization": True,
                "marketing": False,
            }
        assert sniffer.sealed > 0  # the default: what the broker carried was sealed
    finally:
        sniffer.close()


async def test_consent_requests_are_checked(hub: Hub, hub_env: HubEnv) -> None:
    for body, code in (
        ({"subject": SUBJECT, "purposes": {"service": False}, "notice": "v1"}, "bad_consent"),
        ({"subject": SUBJECT, "purposes": {"marketing": "yes"}, "notice": "v1"}, "bad_consent"),
        ({"subject": SUBJECT, "purposes": {"marketing": True}}, "bad_consent"),
        ({"purposes": {"marketing": True}, "notice": "v1"}, "bad_subject"),
    ):
        status, answer = await _post(hub, hub_env, "/privacy/consent", body)
        assert (status, answer["error"]["code"]) == (400, code), body
