"""The webhook sender outlives the errors of a round: with its SQLite file unopenable
(what running out of file descriptors looks like) or its queue unreadable, it logs,
counts, backs off and delivers once the file is back, and the hub keeps serving. Before,
one such error ended the sender and with it the hub's ingest task."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest
from _fakes import get_json, send_json
from _poll import eventually
from aiohttp import web
from hub_env import HubEnv

from cloud_hub import Hub, Metrics, WebhookSettings
from cloud_hub.privacy import EgressPolicy, Webhooks, WebhookSender
from cloud_hub.store import state_of
from protocol import SystemClock
from twinsync.services import free_port

_ALLOW_LOCAL = WebhookSettings(allow=["127.0.0.1"], require_https=False)


async def _receiver() -> tuple[web.AppRunner, int, list[bytes]]:
    got: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port, got


def _errors(metrics: Metrics) -> float:
    return metrics.get("twinsync_hub_webhooks_total", result="error")


async def test_the_sender_survives_an_unopenable_file_and_delivers_when_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner, port, got = await _receiver()
    db = tmp_path / "hub.sqlite"
    hooks = Webhooks(state=state_of(db), clock=SystemClock(), egress=EgressPolicy(_ALLOW_LOCAL))
    hooks.register("acme", f"http://127.0.0.1:{port}/hooks")
    assert hooks.emit("acme", "erasure", {"receipt": {}}) is not None
    metrics = Metrics()
    # The file is replaced by a directory: every open fails, as with EMFILE.
    aside = tmp_path / "aside.sqlite"
    db.rename(aside)
    db.mkdir()
    sender = asyncio.create_task(
        WebhookSender(hooks=hooks, metrics=metrics, clock=SystemClock()).run()
    )
    try:
        assert await eventually(lambda: _errors(metrics) >= 2, within=15)
        assert not sender.done()
        assert got == []
        assert "webhook round failed" in caplog.text
        shutil.rmtree(db)
        aside.rename(db)
        assert await eventually(lambda: len(got) == 1, within=20)
        drained = {"url": f"http://127.0.0.1:{port}/hooks", "pending_events": 0}
        assert await eventually(lambda: hooks.endpoint("acme") == drained)
        errors = _errors(metrics)
        await asyncio.sleep(1.5)  # rounds go on, and succeed, after the recovery
        assert _errors(metrics) == errors
        assert metrics.get("twinsync_hub_webhooks_total", result="delivered") == 1
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await runner.cleanup()
    assert sender.cancelled()  # cancellation still ends it (never swallowed)


async def test_the_hub_keeps_serving_while_its_webhook_queue_is_unreadable(
    hub: Hub, hub_env: HubEnv
) -> None:
    env = hub_env
    runner, port, got = await _receiver()
    waiting = asyncio.create_task(hub.wait())  # ends only if a hub task dies
    try:
        status, _ = await send_json(
            "PUT",
            f"{hub.api_url}/v1/brands/{env.brand}/webhook",
            {"url": f"http://127.0.0.1:{port}/hooks"},
            env.token,
        )
        assert status == 200
        with sqlite3.connect(env.config.registry.path) as db:
            db.execute("ALTER TABLE webhook_queue RENAME TO webhook_queue_away")
        assert await eventually(lambda: _errors(hub.metrics) >= 2, within=15)
        assert not waiting.done()
        await get_json(f"{hub.api_url}/healthz")  # 200
        with sqlite3.connect(env.config.registry.path) as db:
            db.execute("ALTER TABLE webhook_queue_away RENAME TO webhook_queue")
        status, _ = await send_json(
            "POST",
            f"{hub.api_url}/v1/brands/{env.brand}/privacy/consent",
            {"subject": "ann@example.test", "purposes": {"marketing": False}, "notice": "v1"},
            env.token,
        )
        assert status == 202
        assert await eventually(lambda: len(got) == 1, within=20)
        assert not waiting.done()
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await runner.cleanup()
