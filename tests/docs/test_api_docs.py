"""docs/hub.md's HTTP API table says what a real hub answers, and its curl examples work.

A hub runs in-process on the session's mosquitto and InfluxDB; a hand-driven device of
brand ``acme`` (the brand the docs' examples use) sends one delta with a counter, a
churn score and two segments. The documented shapes are read from the table rows (the
quoted names in ``{...}``) and compared with the keys of the real answers, so a field
added to or dropped from an answer without the docs following fails here. The docs'
curl commands run as written, with ``localhost:8080`` pointed at this hub and ``$KEY``
an API key of the brand, and must be answered as an authenticated client.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _fakes import FakeDevice, get_json, now_hlc
from _markdown import REPO, documented_commands

from cloud_hub import SCOPES, ApiKeys, Hub, load_hub_config, provision_devices
from twinsync.services import LocalServices

HUB_MD = REPO / "docs/hub.md"
BRAND = "acme"


def _row(route: str) -> str:
    """The API table row of ``route`` (its first cell, exactly)."""
    rows = [line for line in HUB_MD.read_text().splitlines() if line.startswith(f"| `{route}` |")]
    assert len(rows) == 1, f"docs/hub.md has {len(rows)} rows for {route}"
    return rows[0]


def _names(fragment: str) -> set[str]:
    """Quoted names in a documented shape such as ``{"a","b":{"c"}}``."""
    return set(re.findall(r'"([a-z_]+)"', fragment))


def _after(text: str, marker: str) -> str:
    """The ``{...}`` that follows ``marker`` (balanced braces)."""
    start = text.index("{", text.index(marker))
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    raise AssertionError(f"unbalanced shape after {marker!r}")


def _keys(value: Any, skip: frozenset[str] = frozenset()) -> set[str]:
    """Every key of every dict in ``value``, except the keys *of* dicts under ``skip``
    (maps keyed by data, e.g. field names), whose values are still walked."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            out.add(key)
            if key in skip and isinstance(item, dict):
                for sub in item.values():
                    out |= _keys(sub, skip)
            else:
                out |= _keys(item, skip)
    elif isinstance(value, list):
        for item in value:
            out |= _keys(item, skip)
    return out


class Env:
    def __init__(self, hub: Hub, token: str, twin: str) -> None:
        self.hub, self.token, self.twin = hub, token, twin

    async def get(self, path: str, status: int = 200) -> Any:
        return await get_json(f"{self.hub.api_url}{path}", status, self.token)


@pytest.fixture
async def env(tmp_path: Path, services: LocalServices, unique: str) -> AsyncIterator[Env]:
    config = load_hub_config(
        None,
        {
            "mqtt": {
                "brands": [BRAND],
                "port": services.mosquitto.port,
                "client_id": f"hub-docs-{unique}",
                "shared_group": f"g{unique}",
            },
            "influx": {**services.influxd.hub_settings(f"docs{unique}"), "batch_max_wait_ms": 20},
            "api": {"port": 0},
            "registry": {"path": str(tmp_path / "registry.sqlite")},
            "keys": {"secrets_dir": str(tmp_path / "secrets")},
            "models": {"dir": str(tmp_path / "models")},
        },
        environ={},
    )
    device_id = f"doc-{unique}"
    bundles = provision_devices(
        config.registry.path,
        config.keys.secrets_dir,
        BRAND,
        [(device_id, "coffee")],
        tmp_path / "bundles",
        "127.0.0.1",
        services.mosquitto.port,
    )
    _key, token = ApiKeys(config.registry.path).create(BRAND, "docs", SCOPES)
    device = FakeDevice(bundles[device_id].parent, BRAND, device_id, services.mosquitto.port)
    try:
        async with Hub(config) as hub:
            await hub.ready.wait()
            twin = device.twin("ann@example.com")
            ops = [
                (now_hlc(-3000), "coffee.brews_total", 2),
                (now_hlc(-3000), "coffee.segment", 1),
                (now_hlc(-3000), "coffee.segment_model", "segment-coffee@1"),
                (now_hlc(-2000), "coffee.segment", 3),
                (now_hlc(-2000), "coffee.segment_model", "segment-coffee@1"),
                (now_hlc(-2000), "coffee.churn_risk", 0.25),
                (now_hlc(-2000), "coffee.churn_model", "churn-coffee@1"),
            ]
            device.publish(device.delta(1, {twin: ops}))
            await device.wait_acked({1})
            yield Env(hub, token, twin)
    finally:
        device.close()


async def test_twin_answer_is_the_documented_shape(env: Env) -> None:
    """GET .../twins/{twin}: exactly the documented keys, scores included."""
    body = await env.get(f"/v1/brands/{BRAND}/twins/{env.twin}")
    route = "GET /v1/brands/{brand}/twins/{twin}"
    documented = _names(_after(_row(route), "` | "))
    assert _keys(body, frozenset({"fields"})) == documented
    assert body["scores"]["churn_risk"]["value"] == 0.25


async def test_twin_list_answer_is_the_documented_shape(env: Env) -> None:
    """GET .../twins with where, sort and fields: the answer and its items have exactly
    the keys docs/hub.md's row and docs/brand-api.md's answer table document."""
    route = "GET /v1/brands/{brand}/twins?where=&sort=&limit=&after=&fields="
    row = _row(route)
    query = "where=coffee.churn_risk%20%3E%200.1&sort=-coffee.churn_risk&fields=coffee.segment"
    body = await env.get(f"/v1/brands/{BRAND}/twins?{query}&limit=1")
    body["next"] = body.get("next", "")  # one twin: no next page, documented all the same
    assert set(body) == _names(_after(row, "` | ")) - _names(_after(row, '"items":[')) | {"items"}
    assert _keys(body["items"], frozenset({"fields", "segments"})) == _names(
        _after(row, '"items":[')
    )
    assert body["items"][0]["fields"] == {"coffee.churn_risk": 0.25, "coffee.segment": 3}
    documented = (REPO / "docs/brand-api.md").read_text()
    for name in {*body, *(f"items[].{k}" for k in body["items"][0])} - {"brand"}:
        assert f"| `{name}` |" in documented, name


async def test_history_points_are_the_documented_shape(env: Env) -> None:
    """GET .../history: the answer, its raw points and its buckets have exactly the
    documented keys."""
    route = "GET /v1/brands/{brand}/twins/{twin}/history?field=&start=&end=&every="
    row = _row(route)
    base = f"/v1/brands/{BRAND}/twins/{env.twin}/history?field=coffee.brews_total"
    raw = await env.get(base)
    buckets = await env.get(f"{base}&every=1h")
    assert set(raw) == set(buckets) == _names(_after(row, "` | "))
    assert raw["points"]
    assert buckets["points"]
    assert _keys(raw["points"]) == _names(_after(row, "raw points"))
    assert _keys(buckets["points"]) == _names(_after(row, "per bucket"))


async def test_segment_changes_need_the_product_as_documented(env: Env) -> None:
    """GET .../segments/changes: without ``product`` 400 bad_product, as the docs say it is
    required; with it, events of exactly the documented shape."""
    route = "GET /v1/brands/{brand}/segments/changes?product=&start=&end=&limit="
    row = _row(route)
    assert "`product` (required" in row
    assert "`bad_product` (missing" in row
    missing = await env.get(f"/v1/brands/{BRAND}/segments/changes", status=400)
    assert missing["error"]["code"] == "bad_product"
    body = await env.get(f"/v1/brands/{BRAND}/segments/changes?product=coffee")
    assert set(body) == _names(_after(row, "` | "))
    assert [(c["from"], c["to"]) for c in body["changes"]] == [(None, 1), (1, 3)]
    assert _keys(body["changes"]) == _names(_after(row, "oldest first:"))
    stream_row = _row("GET /v1/brands/{brand}/segments/changes/stream?product=&since=")
    assert "`product` required" in stream_row
    missing = await env.get(f"/v1/brands/{BRAND}/segments/changes/stream", status=400)
    assert missing["error"]["code"] == "bad_product"


async def test_documented_curl_commands_are_answered_as_an_authenticated_client(
    env: Env,
) -> None:
    """Every curl of docs/*.md that calls the API sends the key as the hub expects
    (``Authorization: Bearer``); run as written against this hub, none is refused as
    unauthenticated or forbidden."""
    port = env.hub.api_url.rsplit(":", 1)[1]
    calls = [
        c
        for c in documented_commands()
        if c.words[:1] == ["curl"] and any("/v1/" in w for w in c.words)
    ]
    assert calls
    for command in calls:
        assert "Authorization: Bearer $KEY" in command.text, f"{command.file}:{command.line}"
        if not command.file.startswith("docs/"):
            continue  # README.md and deploy/README.md: tests/deploy runs them
        text = re.sub(
            r"(http://)?(localhost|127\.0\.0\.1):8080", f"http://127.0.0.1:{port}", command.text
        )
        text = text.replace("curl ", "curl -s -o /dev/null -w '%{http_code}' ", 1)
        done = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-c", text],
            env={"KEY": env.token, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (command.text, done.stderr)
        status = int(done.stdout.strip()[-3:])
        assert status not in (401, 403), (command.text, status)
        assert status < 500, (command.text, status)
    # The same without the key is refused: the header is what let them in.
    bare = await get_json(f"{env.hub.api_url}/v1/brands/{BRAND}/twins", status=401)
    assert bare["error"]["code"] == "unauthenticated"
