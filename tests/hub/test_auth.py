"""API keys, brands and scopes on every route; key lifecycle; the audit log.

The route list comes from the running hub's router, so a route added later is covered
without touching this file.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import aiohttp
import pytest
from _fakes import FakeDevice, get_json, now_hlc
from hub_env import HubEnv

from cloud_hub import SCOPES, ApiKeys, Hub
from cloud_hub.api import route_scopes
from cloud_hub.cli import main as hub_cli

_PARAMS = {
    "twin": "1-" + "0" * 32,
    "name": "segment-coffee",
    "version": "1",
    "cohort": "beta",
    "id": "1",
    "key_id": "0" * 12,
    "rule": "trg_" + "0" * 12,
    "experiment": "exp-0123456789ab",
}


#: the /v1 routes that take no key, on purpose: the OpenAPI document (the same for
#: everyone, no tenant's data; tests/hub/test_openapi.py)
_PUBLIC = {("GET", "/v1/openapi.json")}


def _v1_routes(hub: Hub) -> list[tuple[str, str, str]]:
    """(method, template, scope) of every /v1 route the hub serves that needs a key."""
    assert hub._runner is not None
    app = hub._runner.app
    scopes = route_scopes(app)
    out, public = [], set()
    for r in app.router.routes():
        path = r.resource.canonical if r.resource is not None else ""
        if path.startswith("/v1/") and r.method != "HEAD":
            scope = scopes[(r.method, path)]  # KeyError: registered without a scope
            if scope == "public":
                public.add((r.method, path))
            else:
                out.append((r.method, path, scope))
    assert public == _PUBLIC, "a /v1 route without a key: is that meant?"
    return out


def _url(hub: Hub, template: str, brand: str) -> str:
    return hub.api_url + template.format(brand=brand, **_PARAMS)


async def _call(
    method: str, url: str, token: str | None = None, **kw: Any
) -> tuple[int, dict[str, Any], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers, **kw) as r:
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, body, r.headers


async def _snapshot(hub: Hub, env: HubEnv) -> dict[str, Any]:
    """Everything brand A holds, as its own admin key sees it (plus the raw points)."""
    base = f"{hub.api_url}/v1/brands/{env.brand}"
    out: dict[str, Any] = {"points": env.points()}
    for path in ("twins", "models", "rollouts", "keys", "cohorts/beta"):
        out[path] = await get_json(f"{base}/{path}", token=env.token)
    return out


async def test_every_route_refuses_missing_bad_foreign_and_underscoped_keys(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    twin = device.twin("ann")
    device.publish(device.delta(1, {twin: [(now_hlc(), "coffee.brews_total", 3)]}))
    await device.wait_acked({1})
    keys = ApiKeys(hub_env.config.registry.path)
    _, foreign = keys.create("other-brand", "attacker", SCOPES)  # every scope, wrong brand
    routes = _v1_routes(hub)
    assert len(routes) >= 17
    before = await _snapshot(hub, hub_env)
    audit_before = len(keys.audit_log(hub_env.brand))
    for method, template, scope in routes:
        url = _url(hub, template, hub_env.brand)
        kw: dict[str, Any] = {"json": {}} if method in ("POST", "PUT") else {}
        status, body, headers = await _call(method, url, **kw)
        assert (status, body["error"]["code"]) == (401, "unauthenticated"), (method, template)
        assert headers["WWW-Authenticate"].startswith("Bearer")
        status, body, _ = await _call(method, url, "tsk_nope", **kw)
        assert (status, body["error"]["code"]) == (401, "bad_key"), (method, template)
        forged = f"tsk_{hub_env.token.split('_')[1]}_{'A' * 43}"  # a real id, a wrong secret
        status, body, _ = await _call(method, url, forged, **kw)
        assert (status, body["error"]["code"]) == (401, "bad_key"), (method, template)
        status, body, _ = await _call(method, url, foreign, **kw)
        assert (status, body["error"]["code"]) == (403, "wrong_brand"), (method, template)
        needed = "read" if scope == "device" else scope
        _, narrow = keys.create(hub_env.brand, "narrow", [s for s in SCOPES if s != needed])
        status, body, _ = await _call(method, url, narrow, **kw)
        assert (status, body["error"]["code"]) == (403, "missing_scope"), (method, template)
        assert needed in body["error"]["message"]
        keys.revoke(hub_env.brand, narrow.split("_")[1])
    # Nothing of brand A changed, and no refused request was audited as an action.
    after = await _snapshot(hub, hub_env)
    narrow_keys = [k for k in after.pop("keys")["keys"] if k["name"] == "narrow"]
    before.pop("keys")
    assert after == before
    assert all(k["revoked"] for k in narrow_keys)
    # Refused requests are not actions; the one new row is the snapshot's own key listing.
    assert len(keys.audit_log(hub_env.brand)) == audit_before + 1
    # Brand B's key works for brand B (so the 403s above were about the brand).
    ok = await get_json(f"{hub.api_url}/v1/brands/other-brand/twins", token=foreign)
    assert ok["twins"] == []


async def test_the_model_download_takes_a_signed_url_or_a_read_key(
    hub: Hub, hub_env: HubEnv
) -> None:
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}/models/segment-coffee/1/model.onnx"
    status, body, _ = await _call("GET", f"{base}?sha256={'0' * 64}&sig={'0' * 32}")
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    # A read key gets past the guard (and finds no such model here).
    status, body, _ = await _call("GET", base, hub_env.token)
    assert (status, body["error"]["code"]) == (404, "unknown_model")


async def test_key_lifecycle_and_audit_through_the_api(hub: Hub, hub_env: HubEnv) -> None:
    base = f"{hub.api_url}/v1/brands/{hub_env.brand}"
    status, created, _ = await _call(
        "POST", f"{base}/keys", hub_env.token, json={"name": "crm", "scopes": ["read"]}
    )
    assert status == 201
    token = created["token"]
    assert created["scopes"] == ["read"]
    listed = await get_json(f"{base}/keys", token=hub_env.token)
    assert "token" not in str(listed)
    assert token.split("_", 2)[2] not in str(listed)
    assert {k["name"] for k in listed["keys"]} == {"tests", "crm"}
    assert (await get_json(f"{base}/twins", token=token))["twins"] == []
    status, body, _ = await _call("POST", f"{base}/keys", token, json={"name": "x", "scopes": []})
    assert (status, body["error"]["code"]) == (403, "missing_scope")
    status, body, _ = await _call(
        "POST", f"{base}/keys", hub_env.token, json={"name": "x", "scopes": ["root"]}
    )
    assert (status, body["error"]["code"]) == (400, "bad_scopes")
    status, revoked, _ = await _call("DELETE", f"{base}/keys/{created['key_id']}", hub_env.token)
    assert status == 200
    assert revoked["revoked"] is True
    status, body, _ = await _call("GET", f"{base}/twins", token)
    assert (status, body["error"]["code"]) == (401, "revoked_key")
    audit = (await get_json(f"{base}/audit", token=hub_env.token))["audit"]
    actions = [(a["method"], a["route"], a["status"]) for a in audit]
    assert ("POST", "/v1/brands/{brand}/keys", 201) in actions
    assert ("POST", "/v1/brands/{brand}/keys", 400) in actions
    assert ("DELETE", "/v1/brands/{brand}/keys/{key_id}", 200) in actions
    assert all(a["key_id"] == hub_env.token.split("_")[1] for a in audit)


def test_keys_are_stored_hashed_and_managed_from_the_cli(
    hub_env: HubEnv, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "hub.toml"
    toml.write_text(f'[registry]\npath = "{hub_env.config.registry.path}"\n')
    argv = ["apikey", "create", "--config", str(toml), "--brand", hub_env.brand]
    assert hub_cli([*argv, "--name", "ops", "--scopes", "read,admin"]) == 0
    token = capsys.readouterr().out.splitlines()[-1]
    assert token.startswith("tsk_")
    key = ApiKeys(hub_env.config.registry.path).authenticate(token)
    assert key.scopes == {"read", "admin"}
    raw = sqlite3.connect(hub_env.config.registry.path).iterdump()
    dump = "\n".join(raw)
    assert token.split("_", 2)[2] not in dump  # only the hash is stored
    assert hub_cli([*argv, "--scopes", "read,root"]) == 2
    assert "scopes must be" in capsys.readouterr().err
    listing = ["apikey", "list", "--config", str(toml), "--brand", hub_env.brand]
    assert hub_cli(listing) == 0
    assert key.key_id in capsys.readouterr().out
    revoke = ["apikey", "revoke", "--config", str(toml), "--brand", hub_env.brand]
    assert hub_cli([*revoke, "--key-id", key.key_id]) == 0
    assert '"revoked": true' in capsys.readouterr().out
