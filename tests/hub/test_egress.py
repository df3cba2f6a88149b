"""Webhook egress: a brand's webhook URL cannot make the hub reach its own InfluxDB, its
broker, its API, loopback or private addresses, not through a name, another spelling of
the address, a redirect or a policy change after registration.

The attack these tests repeat: InfluxDB 1.x runs the ``q`` of ``POST /query?q=...`` from
the URL, so a webhook registered as the hub's InfluxDB URL made the hub delete another
brand's twins. The attack URLs carry the InfluxDB admin's credentials, so what stops
them is the egress policy, not InfluxDB's authentication.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _fakes import send_json
from _poll import eventually
from aiohttp import web
from hub_env import HubEnv

from cloud_hub import CloudHubError, ConfigError, Hub, Metrics, WebhookSettings, load_hub_config
from cloud_hub.privacy import EgressPolicy, Webhooks, WebhookSender, classify, parse_allow
from cloud_hub.store import state_of
from protocol import SystemClock
from twinsync.services import free_port

VICTIM = "victim"
_COUNT = f'SELECT count(*) FROM "twin" WHERE "brand" = \'{VICTIM}\''


def _plant_victim(env: HubEnv) -> int:
    """Another brand's twins in the hub's database; returns how many values they hold."""
    now = time.time_ns()
    env.write(
        [
            f"twin,brand={VICTIM},device=v-{i},twin=1-{'b' * 32} coffee.brews_total={i}i {now + i}"
            for i in range(5)
        ]
    )
    return _victim_values(env)


def _victim_values(env: HubEnv) -> int:
    series = env.influx(_COUNT)[0].get("series") or []
    return sum(v for s in series for v in s["values"][0][1:] if isinstance(v, int))


def _delete_url(env: HubEnv, host: str = "127.0.0.1") -> str:
    """The hub's InfluxDB told to delete the victim's twins (with valid credentials)."""
    influxd = env.services.influxd
    return f"http://{host}:{influxd.http_port}/query?" + urllib.parse.urlencode(
        {
            "db": env.config.influx.database,
            "u": influxd.username,
            "p": influxd.password,
            "q": f'DELETE FROM "twin" WHERE "brand" = \'{VICTIM}\'',
        }
    )


async def _put_webhook(hub: Hub, env: HubEnv, url: str) -> tuple[int, dict[str, Any]]:
    return await send_json(
        "PUT", f"{hub.api_url}/v1/brands/{env.brand}/webhook", {"url": url}, env.token
    )


async def _emit_event(hub: Hub, env: HubEnv) -> None:
    """A consent change: queues a webhook event for the brand's endpoint, if any."""
    status, _ = await send_json(
        "POST",
        f"{hub.api_url}/v1/brands/{env.brand}/privacy/consent",
        {"subject": "ann@example.test", "purposes": {"marketing": False}, "notice": "v1"},
        env.token,
    )
    assert status == 202


@pytest.fixture
async def strict_hub(hub_env: HubEnv) -> AsyncIterator[Hub]:
    """A hub with the webhook policy at its defaults (https, public addresses only)."""
    config = hub_env.config.model_copy(update={"webhooks": WebhookSettings()})
    async with Hub(config) as h:
        await h.ready.wait()
        yield h


async def test_a_webhook_at_the_hubs_own_services_is_refused_even_when_loopback_is_allowed(
    hub: Hub, hub_env: HubEnv
) -> None:
    """The test hub's operator allows 127.0.0.1 (its receivers live there); InfluxDB,
    the broker and the API on that host stay refused however the address is spelt."""
    env = hub_env
    before = _plant_victim(env)
    assert before == 5
    influx_port = env.services.influxd.http_port
    attacks = {
        _delete_url(env): "the hub's InfluxDB",
        _delete_url(env, "localhost"): "the hub's InfluxDB",
        _delete_url(env, "127.0.0.2"): "the hub's InfluxDB",  # any loopback address is us
        _delete_url(env, "[::ffff:127.0.0.1]"): "the hub's InfluxDB",
        f"http://127.0.0.1:{env.services.mosquitto.port}/": "the hub's MQTT broker",
        f"{hub.api_url}/v1/brands/{VICTIM}/keys": "the hub's own API",
    }
    for url, named in attacks.items():
        status, body = await _put_webhook(hub, env, url)
        assert status == 400, (url, body)
        assert body["error"]["code"] == "url_refused"
        message = body["error"]["message"]
        assert named in message, body
        assert "may never reach the hub's own services" in message
        if named == "the hub's InfluxDB":
            assert f":{influx_port}," in message  # names the address it refused
    status, _ = await send_json(
        "GET", f"{hub.api_url}/v1/brands/{env.brand}/webhook", None, env.token
    )
    assert status == 404  # nothing registered, so no event can go anywhere
    await _emit_event(hub, env)
    assert _victim_values(env) == before


async def test_at_the_defaults_loopback_private_and_plain_http_are_refused_with_reasons(
    strict_hub: Hub, hub_env: HubEnv
) -> None:
    env, hub = hub_env, strict_hub
    before = _plant_victim(env)
    refused = {
        # the attack, as sent: plain http to the hub's InfluxDB
        _delete_url(env): "https",
        "https://localhost:8443/hooks": "resolves to 127.0.0.1, a loopback address",
        "https://2130706433/hooks": "127.0.0.1, a loopback address",  # 127.0.0.1 as a number
        "https://127.1/hooks": "127.0.0.1, a loopback address",
        "https://[::1]/hooks": "a loopback address",
        "https://[::ffff:10.0.0.1]/hooks": "10.0.0.1, a private address",
        "https://169.254.169.254/latest/meta-data": "a link-local address",
        "https://10.1.2.3/hooks": "a private address",
        "https://192.168.0.10/hooks": "a private address",
        "https://100.64.0.1/hooks": "CGNAT",
        "https://[fd00::1]/hooks": "unique local",
        "https://0.0.0.0/hooks": "unspecified",
        "https://224.0.0.1/hooks": "multicast",
        "ftp://hooks.example.com/": "http(s)",
    }
    for url, why in refused.items():
        status, body = await _put_webhook(hub, env, url)
        assert status == 400, (url, body)
        assert why in body["error"]["message"], (url, body)
        if "resolves to" in body["error"]["message"]:
            assert "webhooks.allow" in body["error"]["message"]  # says what to change
    # a public https endpoint is fine (registering contacts nobody)
    status, body = await _put_webhook(hub, env, "https://93.184.216.34/twinsync")
    assert status == 200, body
    assert _victim_values(env) == before


async def test_a_redirect_to_influxdb_is_not_followed_and_the_delivery_is_retried(
    hub: Hub, hub_env: HubEnv, caplog: pytest.LogCaptureFixture
) -> None:
    env = hub_env
    before = _plant_victim(env)
    hits: list[str] = []
    answer = {"redirect": True}

    async def receiver(request: web.Request) -> web.Response:
        hits.append(request.method)
        if answer["redirect"]:
            # 302 turns into a GET, 307 keeps the POST: both ran the DELETE before
            status = 302 if len(hits) % 2 else 307
            return web.Response(status=status, headers={"Location": _delete_url(env)})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", receiver)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        status, _ = await _put_webhook(hub, env, f"http://127.0.0.1:{port}/hooks")
        assert status == 200
        await _emit_event(hub, env)
        # tried, failed, retried (302 then 307)
        assert await eventually(
            lambda: hub.metrics.get("twinsync_hub_webhooks_total", result="retry") >= 2,
            within=20,
        )
        assert _victim_values(env) == before
        assert len(hits) >= 2
        assert hits == ["POST"] * len(hits)  # nothing but the receiver was asked
        assert hub.metrics.get("twinsync_hub_webhooks_total", result="delivered") == 0
        assert "redirects are not followed" in caplog.text
        answer["redirect"] = False  # the brand fixes its endpoint: the event arrives
        assert await eventually(
            lambda: hub.metrics.get("twinsync_hub_webhooks_total", result="delivered") == 1,
            within=20,
        )
        assert _victim_values(env) == before
    finally:
        await runner.cleanup()


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


async def test_the_policy_is_checked_again_at_every_send(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A URL registered while the operator allowed it is refused once the allow-list no
    longer permits it (the same holds when a name's DNS answer changes): refused, counted,
    logged, kept for a retry, and nothing reaches the address."""
    runner, port, got = await _receiver()
    db = state_of(tmp_path / "hub.sqlite")
    allowing = EgressPolicy(WebhookSettings(allow=["127.0.0.1"], require_https=False))
    clock = SystemClock()
    hooks = Webhooks(state=db, clock=clock, egress=allowing)
    hooks.register("acme", f"http://127.0.0.1:{port}/hooks")
    strict_policy = EgressPolicy(WebhookSettings(require_https=False))
    strict = Webhooks(state=db, clock=clock, egress=strict_policy)
    assert strict.emit("acme", "erasure", {"receipt": {}}) is not None
    metrics = Metrics()
    sender = asyncio.create_task(WebhookSender(hooks=strict, metrics=metrics, clock=clock).run())
    try:
        assert await eventually(
            lambda: metrics.get("twinsync_hub_webhooks_total", result="refused") >= 1, within=10
        )
        assert got == []
        assert "127.0.0.1, a loopback address" in caplog.text
        assert strict.endpoint("acme") == {
            "url": f"http://127.0.0.1:{port}/hooks",
            "pending_events": 1,  # kept: the operator may allow it again
        }
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await runner.cleanup()


async def test_the_connection_itself_resolves_through_the_policy() -> None:
    """The sender's connector checks every address a name resolves to when it connects
    and connects to exactly those, so a name cannot pass a check and then resolve
    elsewhere (DNS rebinding): here no URL check ran before, and the connection to a
    name resolving to loopback is still refused."""
    runner, port, got = await _receiver()
    strict = EgressPolicy(WebhookSettings(require_https=False))
    allowing = EgressPolicy(WebhookSettings(allow=["localhost"], require_https=False))
    try:
        async with aiohttp.ClientSession(connector=strict.connector()) as session:
            with pytest.raises(CloudHubError, match="a loopback address"):
                await session.post(f"http://localhost:{port}/hooks", data=b"x")
        assert got == []
        async with (
            aiohttp.ClientSession(connector=allowing.connector()) as session,
            session.post(f"http://localhost:{port}/hooks", data=b"x") as resp,
        ):
            assert resp.status == 204
        assert got == [b"x"]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "unique local"),
        ("100.64.0.1", "CGNAT"),
        ("224.0.0.251", "multicast"),
        ("ff0e::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "private"),  # documentation range
        ("::ffff:127.0.0.1", "IPv6 form of 127.0.0.1"),
        ("::ffff:192.168.1.1", "IPv6 form of 192.168.1.1"),
        ("64:ff9b::a00:1", "IPv6 form of 10.0.0.1"),  # NAT64
        ("2002:7f00:1::", "IPv6 form of 127.0.0.1"),  # 6to4
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
        ("::ffff:93.184.216.34", None),
    ],
)
def test_addresses_are_classified(address: str, why: str | None) -> None:
    verdict = classify(ipaddress.ip_address(address))
    if why is None:
        assert verdict is None
    else:
        assert verdict is not None
        assert why in verdict


def test_allow_entries_are_checked_when_the_config_loads() -> None:
    assert parse_allow("hooks.internal").host == "hooks.internal"
    assert parse_allow("10.0.0.0/8:8443").port == 8443
    assert parse_allow("[fd00::/8]:443").network == ipaddress.ip_network("fd00::/8")
    for bad in ("not a host", "10.0.0.1:0", "[::1]x", "hooks.internal:http", "a/b"):
        with pytest.raises(ValueError, match=r"webhooks\.allow entry"):
            parse_allow(bad)
        with pytest.raises(ConfigError, match=r"webhooks\.allow"):
            load_hub_config(None, {"webhooks": {"allow": [bad]}}, environ={})
    config = load_hub_config(None, {"webhooks": {"allow": ["10.0.0.0/8"]}}, environ={})
    assert config.webhooks.require_https  # on unless the operator turns it off
