"""Signed webhooks to the brand backend: erasures and consent changes, retried until the
endpoint takes them, each signed so the receiver can check it came from the hub."""

from __future__ import annotations

import json
import time
from typing import Any

from _fakes import FakeDevice, get_json, now_hlc, send_json
from _poll import eventually
from aiohttp import web
from hub_env import HubEnv, both_stores

from cloud_hub import Hub, WebhookSettings
from cloud_hub.privacy import EgressPolicy, Webhooks, sign, verify_signature
from cloud_hub.store import StateStore, open_state_store
from protocol import SystemClock
from twinsync.services import free_port


async def _call(
    hub: Hub, env: HubEnv, method: str, path: str, body: object
) -> tuple[int, dict[str, Any]]:
    return await send_json(method, f"{hub.api_url}/v1/brands/{env.brand}{path}", body, env.token)


async def test_erasure_and_consent_events_reach_the_backend_signed_and_retried(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    received: list[tuple[bytes, str]] = []
    failures_left = [2]  # the backend is down for the first two attempts

    async def backend(request: web.Request) -> web.Response:
        body = await request.read()
        if failures_left[0] > 0:
            failures_left[0] -= 1
            return web.Response(status=503)
        received.append((body, request.headers["TwinSync-Signature"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", backend)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        status, reg = await _call(
            hub, hub_env, "PUT", "/webhook", {"url": f"http://127.0.0.1:{port}/hooks"}
        )
        assert status == 200
        secret = reg["secret"]
        ann = device.twin("ann@example.test")
        device.publish(device.delta(1, {ann: [(now_hlc(), "coffee.brews_total", 2)]}))
        await device.wait_acked({1})
        status, _ = await _call(
            hub,
            hub_env,
            "POST",
            "/privacy/consent",
            {"subject": "ann@example.test", "purposes": {"marketing": False}, "notice": "v2"},
        )
        assert status == 202
        status, receipt = await _call(
            hub, hub_env, "POST", "/privacy/erasure", {"subject": "ann@example.test"}
        )
        assert status == 200
        assert await eventually(lambda: len(received) == 2, within=15)  # after retries
        events = {}
        for body, header in received:
            assert verify_signature(secret, body, header)
            assert not verify_signature("another secret", body, header)
            assert not verify_signature(secret, body + b" ", header)  # altered in transit
            event = json.loads(body)
            events[event["event"]] = event
            assert "ann@example" not in body.decode()  # pseudonyms only
        assert events["erasure"]["receipt"] == receipt
        assert events["consent"]["twins"] == [ann]
        assert events["consent"]["purposes"] == {"marketing": False}
        assert hub.metrics.get("twinsync_hub_webhooks_total", result="retry") >= 2
        info = await get_json(
            f"{hub.api_url}/v1/brands/{hub_env.brand}/webhook", token=hub_env.token
        )
        assert info == {"brand": hub_env.brand, "url": reg["url"], "pending_events": 0}
    finally:
        await runner.cleanup()


def hooks_secret(state: StateStore, brand: str) -> str:
    with state.transaction(readonly=True) as tx:
        return str(tx.execute("SELECT secret FROM webhooks WHERE brand = ?", (brand,)).scalar())


def test_signatures_expire() -> None:
    body = b'{"event": "erasure"}'
    old = sign("s", body, 1_000_000_000)
    assert not verify_signature("s", body, old)
    assert not verify_signature("s", body, "garbage")


@both_stores
def test_an_event_is_claimed_by_one_sender_at_a_time(
    state: StateStore, state_url: tuple[str, str]
) -> None:
    allow_local = EgressPolicy(WebhookSettings(allow=["127.0.0.1"], require_https=False))
    hooks = Webhooks(state=state, clock=SystemClock(), egress=allow_local)
    hooks.register("acme", "http://127.0.0.1:9/hooks")
    event_id = hooks.emit("acme", "erasure", {"receipt": {}})
    assert event_id is not None
    now = int(time.time() * 1000) + 1000
    first = hooks.due(now)
    assert [json.loads(r[4])["event_id"] for r in first] == [event_id]
    assert first[0][2:4] == ("http://127.0.0.1:9/hooks", hooks_secret(state, "acme"))
    url, password = state_url
    with open_state_store(url, password=password) as other_instance:
        other = Webhooks(state=other_instance, clock=SystemClock(), egress=allow_local)
        assert other.due(now) == []  # another instance finds it claimed
        assert len(other.due(now + 61_000)) == 1  # the lease ran out: sent again
    assert hooks.emit("nobody", "erasure", {}) is None  # no endpoint, nothing queued
