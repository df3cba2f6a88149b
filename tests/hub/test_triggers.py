"""Triggers on a running hub fed by a real device: a churn risk crossing its threshold
reaches a real HTTP receiver as one signed webhook per crossing (retried after a 500, in
order per twin), the event stream resumes with Last-Event-ID, the customer's rights stop
and remove a twin's events, and every refusal (another brand, a device's credentials,
forged ids, hostile sizes, SSRF targets) leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from _fakes import FakeDevice, get_json, now_hlc, send_json
from _poll import eventually
from aiohttp import web
from hub_env import HubEnv

from cloud_hub import SCOPES, ApiKeys, Hub
from cloud_hub.privacy import verify_signature
from cloud_hub.triggers import MAX_RULES, TriggerEvents
from protocol import ManualClock
from twinsync.client import AsyncClient, StreamGap, TriggerEvent
from twinsync.services import free_port

SUBJECT = "ann@example.test"


async def _call(
    hub: Hub, env: HubEnv, method: str, path: str, body: object = None, token: str | None = ""
) -> tuple[int, Any]:
    url = f"{hub.api_url}/v1/brands/{env.brand}/triggers{path}"
    return await send_json(method, url, body, env.token if token == "" else token)


class _Receiver:
    """A brand backend's endpoint: answers 500 to the first ``fail`` attempts."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.attempts: list[bytes] = []
        self.accepted: list[tuple[bytes, str]] = []
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts.append(body)
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=500)
        self.accepted.append((body, request.headers["TwinSync-Signature"]))
        return web.Response(status=204)

    async def __aenter__(self) -> _Receiver:
        app = web.Application()
        app.router.add_post("/hooks", self._receive)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"


async def test_a_threshold_crossing_is_one_signed_webhook_retried_and_in_order(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    async with _Receiver(fail=1) as receiver:
        rule = {
            "name": "churn alert",
            "kind": "churn_risk",
            "threshold": 0.7,
            "product": "coffee",
            "webhook": receiver.url,
        }
        status, created = await _call(hub, hub_env, "POST", "", rule)
        assert status == 201, created
        secret = created["secret"]
        assert created["rule"]["fields"] == ["coffee.churn_risk"]
        twin = device.twin(SUBJECT)
        # 0.5 (below), 0.8 (crossing up), 0.9 (still above), 0.6 (down), 0.75 (up again)
        for seq, risk in enumerate((0.5, 0.8, 0.9, 0.6, 0.75), start=1):
            device.publish(device.delta(seq, {twin: [(now_hlc(), "coffee.churn_risk", risk)]}))
            await device.wait_acked({seq})
        device.publish(device.delta(2, {twin: [(now_hlc(-5000), "coffee.churn_risk", 0.8)]}))
        await device.wait_acked({2})  # a replayed seq: acked, nothing new
        assert await eventually(lambda: len(receiver.accepted) == 2, within=20)
        events = []
        for body, header in receiver.accepted:
            assert verify_signature(secret, body, header)
            assert not verify_signature(secret, body + b" ", header)  # altered in transit
            # replayed ten minutes later: the receiver's check refuses it
            later = ManualClock(hub.clock.now_ms() + 600_000)
            assert not verify_signature(secret, body, header, clock=later)
            assert SUBJECT not in body.decode()  # pseudonyms only
            events.append(json.loads(body))
        # in order of the twin's changes; each crossing once (the first after a 500)
        assert [(e["from"], e["to"]) for e in events] == [(0.5, 0.8), (0.6, 0.75)]
        assert len({e["event_id"] for e in events}) == 2
        assert receiver.attempts[0] == receiver.accepted[0][0]  # the retry is the same event
        assert hub.metrics.get("twinsync_hub_trigger_webhooks_total", result="retry") == 1
        assert hub.metrics.get("twinsync_hub_trigger_webhooks_total", result="delivered") == 2
        listed = await get_json(
            f"{hub.api_url}/v1/brands/{hub_env.brand}/triggers/events", token=hub_env.token
        )
        assert [e["event_id"] for e in listed["events"]] == [
            e["event_id"] for e in reversed(events)
        ]
        assert listed["pending_deliveries"] == 0


async def test_the_event_stream_resumes_after_last_event_id(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    status, _ = await _call(hub, hub_env, "POST", "", {"name": "seg", "kind": "segment_change"})
    assert status == 201
    twin = device.twin(SUBJECT)
    async with AsyncClient(hub.api_url, hub_env.brand, api_key=hub_env.token) as client:
        stream = client.stream_trigger_events()
        async with stream:
            device.publish(device.delta(1, {twin: [(now_hlc(), "coffee.segment", 1)]}))
            await device.wait_acked({1})
            first = await anext(aiter(stream))
        assert isinstance(first, TriggerEvent)
        assert (first.twin, first.from_, first.to) == (twin, None, 1)
        assert stream.last_event_id == str(first.seq)
        # Offline: two more changes; reconnecting with Last-Event-ID gets exactly those.
        for seq, segment in ((2, 2), (3, 3)):
            device.publish(device.delta(seq, {twin: [(now_hlc(), "coffee.segment", segment)]}))
            await device.wait_acked({seq})
        missed = []
        async with client.stream_trigger_events(last_event_id=stream.last_event_id) as again:
            async for item in again:
                missed.append(item)
                if len(missed) == 2:
                    break
        assert [(e.from_, e.to) for e in missed if isinstance(e, TriggerEvent)] == [(1, 2), (2, 3)]
        # A position the log no longer holds (retention) says so first.
        with hub_env.state() as state, state.transaction() as tx:
            tx.execute("DELETE FROM trigger_events WHERE id = ?", (first.seq,))
        async with client.stream_trigger_events(after=0) as resumed:
            gap = await anext(aiter(resumed))
        assert isinstance(gap, StreamGap)
        assert gap.oldest > first.seq
        assert "retention" in gap.reason


async def test_objection_consent_withdrawal_and_erasure_stop_a_twins_triggers(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    # anomalies_total is a usage field: an objection does not remove it, the hold does
    status, _ = await _call(hub, hub_env, "POST", "", {"name": "anomaly", "kind": "anomaly"})
    assert status == 201
    ann, bob = device.twin(SUBJECT), device.twin("bob@example.test")
    events_url = f"{hub.api_url}/v1/brands/{hub_env.brand}/triggers/events?after=0"

    async def grow(seq: int, value: int) -> None:
        ops = {t: [(now_hlc(), "coffee.anomalies_total", value)] for t in (ann, bob)}
        device.publish(device.delta(seq, ops))
        await device.wait_acked({seq})

    async def twins() -> list[str]:
        return [e["twin"] for e in (await get_json(events_url, token=hub_env.token))["events"]]

    await grow(1, 1)
    assert sorted(await twins()) == sorted([ann, bob])
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/privacy"
    status, _ = await send_json("POST", f"{base}/objection", {"subject": SUBJECT}, hub_env.token)
    assert status == 200
    await grow(2, 2)
    assert sorted(await twins()) == sorted([ann, bob, bob])  # nothing for ann after it
    consent = {"subject": "bob@example.test", "purposes": {"analytics": False}, "notice": "v2"}
    status, _ = await send_json("POST", f"{base}/consent", consent, hub_env.token)
    assert status == 202
    await grow(3, 3)
    assert sorted(await twins()) == sorted([ann, bob, bob])  # nor for bob after his
    status, _ = await send_json("POST", f"{base}/erasure", {"subject": SUBJECT}, hub_env.token)
    assert status == 200
    assert await twins() == [bob, bob]  # ann's entries are gone from the log


async def test_refusals_change_nothing(hub: Hub, hub_env: HubEnv, device: FakeDevice) -> None:
    good = {"name": "churn", "kind": "churn_risk", "threshold": 0.7}
    status, created = await _call(hub, hub_env, "POST", "", good)
    assert status == 201
    rule_id = created["rule"]["rule_id"]
    brand = hub_env.brand
    keys = ApiKeys(hub_env.config.registry.path)
    other = keys.create("other-brand", "x", SCOPES)[1]
    read_only = keys.create(brand, "reader", ["read"])[1]
    # another brand's key, a key without the scope, a device's MQTT password, a forged key
    device_password = (hub_env.bundles["dev-0"].parent / "mqtt.password").read_text().strip()
    forged = hub_env.token[:-4] + "AAAA"
    for token, expected in (
        (other, 403),
        (read_only, 403),
        (device_password, 401),
        (f"tsk_{'0' * 12}_{'A' * 43}", 401),
        (forged, 401),
        (None, 401),
    ):
        for method, path, body in (
            ("GET", "", None),
            ("POST", "", good),
            ("GET", f"/{rule_id}", None),
            ("DELETE", f"/{rule_id}", None),
            ("GET", "/events", None),
            ("GET", "/events/stream", None),
        ):
            status, answer = await _call(hub, hub_env, method, path, body, token=token)
            assert status == expected, (token, method, path, answer)
    # another brand's key on its own brand's path sees none of this brand's rules
    status, theirs = await send_json(
        "GET", f"{hub.api_url}/v1/brands/other-brand/triggers/{rule_id}", None, other
    )
    assert status == 404
    assert theirs["error"]["code"] == "unknown_rule"
    # forged stream positions and hostile sizes
    for path, code in (("/events/stream?after=-1", "bad_after"), ("/events?limit=0", "bad_limit")):
        status, answer = await _call(hub, hub_env, "GET", path)
        assert (status, answer["error"]["code"]) == (400, code)
    hostile: list[tuple[dict[str, Any], int, str]] = [
        ({**good, "name": "x" * 5000}, 413, "rule_too_large"),
        ({**good, "where": "coffee.strength > 1 and " * 100 + "true"}, 400, "bad_rule"),
        ({**good, "where": "(" * 40 + "coffee.strength > 1" + ")" * 40}, 400, "bad_where"),
        ({**good, "where": "nonsense >"}, 400, "bad_where"),
        ({**good, "threshold": 7}, 400, "bad_rule"),
        ({**good, "kind": "everything"}, 400, "bad_rule"),
        ({**good, "extra": 1}, 400, "bad_rule"),
        ({"name": "t", "kind": "tag"}, 400, "bad_rule"),
    ]
    # SSRF: loopback (other than the allowed test receiver), link-local, the metadata
    # address, private networks, the hub's own API
    for url in (
        "http://127.0.0.2/hooks",
        "http://[::1]/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hooks",
        "http://192.168.1.1/hooks",
        f"http://127.0.0.1:{hub.api_port}/v1/openapi.json",
        "file:///etc/passwd",
    ):
        hostile.append(({**good, "webhook": url}, 400, ""))
    for body, expected, code in hostile:
        status, answer = await _call(hub, hub_env, "POST", "", body)
        assert status == expected, (body, answer)
        assert code in answer["error"]["code"], (body, answer)
        assert answer["error"]["message"]
    # too many rules: the limit holds and says so
    for i in range(MAX_RULES - 1):
        status, _ = await _call(hub, hub_env, "POST", "", {**good, "name": f"r{i}"})
        assert status == 201
    status, answer = await _call(hub, hub_env, "POST", "", good)
    assert (status, answer["error"]["code"]) == (409, "too_many_rules")
    status, listed = await _call(hub, hub_env, "GET", "")
    assert len(listed["rules"]) == MAX_RULES
    assert rule_id in {r["rule_id"] for r in listed["rules"]}
    assert all("secret" not in r for r in listed["rules"])


async def test_a_stream_client_that_stops_reading_is_dropped_with_its_reason(
    hub_env: HubEnv, caplog: pytest.LogCaptureFixture
) -> None:
    triggers = hub_env.config.triggers.model_copy(update={"stream_write_timeout_s": 1.0})
    config = hub_env.config.model_copy(update={"triggers": triggers})
    # Far more events than the socket buffers between the hub and the client hold.
    with hub_env.state() as state, state.transaction() as tx:
        bodies = [
            {"event_id": f"{i:032x}", "rule_id": "trg_000000000000", "twin": "1-" + "0" * 32,
             "event": "trigger", "padding": "x" * 300}
            for i in range(30_000)
        ]  # fmt: skip
        TriggerEvents.record_in(tx, hub_env.brand, [(b, False) for b in bodies], tx.now_ms())
    async with Hub(config) as hub:
        await hub.ready.wait()
        path = f"/v1/brands/{hub_env.brand}/triggers/events/stream?after=0"
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.api_port, limit=1024)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        auth = f"Authorization: Bearer {hub_env.token}"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")  # the answer starts; then it reads nothing
        assert b" 200 " in head.split(b"\r\n")[0]
        reader._transport.pause_reading()  # type: ignore[attr-defined]

        def dropped() -> bool:
            return (
                hub.metrics.get("twinsync_hub_trigger_streams_dropped_total", reason="slow_client")
                == 1
            )

        assert await eventually(dropped, within=60)
        assert "dropped: the client read nothing" in caplog.text
        writer.close()
        # the hub serves on: a client that reads gets the log from where it asks
        listed = await get_json(
            f"{hub.api_url}/v1/brands/{hub_env.brand}/triggers/events?after=29990",
            token=hub_env.token,
        )
        assert [e["seq"] for e in listed["events"]] == list(range(29_991, 30_001))
