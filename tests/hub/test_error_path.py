"""The API's one error path: whatever layer refuses a request (the guard, a parameter
parser, a handler, a privacy procedure, the rollout store, the egress policy, aiohttp
itself), the client gets ``{"error": {"code", "message"}}`` with the status the exception
tree (cloud_hub._errors) gives it, the refusal is counted once, and an audited request is
audited with the status the client got."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from hub_env import HubEnv, make_config

from cloud_hub import SCOPES, ApiKeys, Hub, provision_devices
from twinsync.services import LocalServices

_TWIN = "1-" + "ab" * 16


async def _request(
    session: aiohttp.ClientSession, method: str, url: str, token: str | None, body: object
) -> tuple[int, Any, str, str | None]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kw: dict[str, Any] = {} if body is None else {"json": body}
    async with session.request(method, url, headers=headers, **kw) as resp:
        answer = await resp.json(content_type=None)
        return resp.status, answer, resp.content_type, resp.headers.get("WWW-Authenticate")


async def test_every_layer_refuses_through_the_one_error_path(hub: Hub, hub_env: HubEnv) -> None:
    base = f"/v1/brands/{hub_env.brand}"
    token = hub_env.token
    # (method, path, token, body, status, code, audited)
    cases: list[tuple[str, str, str | None, object, int, str, bool]] = [
        ("GET", f"{base}/twins", None, None, 401, "unauthenticated", False),
        ("GET", f"{base}/twins?limit=0", token, None, 400, "bad_limit", False),
        ("GET", f"{base}/twins/not-a-twin", token, None, 400, "bad_twin", False),
        ("GET", f"{base}/twins/{_TWIN}", token, None, 404, "twin_not_found", False),
        ("GET", f"{base}/twins/{_TWIN}/history?field=nope", token, None, 400, "bad_field", False),
        ("GET", f"{base}/segments/changes/stream", token, None, 400, "bad_product", False),
        ("POST", f"{base}/privacy/erasure", token, {}, 400, "bad_subject", True),
        ("POST", f"{base}/privacy/rectification", token, {"subject": "a"}, 400,
         "bad_rectification", True),
        ("POST", f"{base}/privacy/consent", token, {"subject": "a", "purposes": 1}, 400,
         "bad_consent", True),
        ("GET", f"{base}/webhook", token, None, 404, "no_webhook", True),
        ("PUT", f"{base}/webhook", token, {"url": "http://10.0.0.1/hooks"}, 400, "url_refused",
         True),
        ("POST", f"{base}/keys", token, {"name": "x", "scopes": ["root"]}, 400, "bad_scopes",
         True),
        ("DELETE", f"{base}/keys/{'0' * 12}", token, None, 404, "unknown_key", True),
        ("GET", f"{base}/rollouts/999", token, None, 404, "unknown_rollout", False),
        ("POST", f"{base}/rollouts", token, {"model": 1}, 400, "bad_model", True),
        ("PUT", f"{base}/cohorts/beta", token, [], 400, "bad_json", True),
        ("GET", "/v1/nothing-here", token, None, 404, "not_found", False),
    ]  # fmt: skip
    keys = ApiKeys(hub_env.config.registry.path)
    async with aiohttp.ClientSession() as session:
        for method, path, key, body, status, code, audited in cases:
            case = (method, path, body)
            counted = hub.metrics.get("twinsync_hub_api_refused_total", status=str(status))
            audit_before = keys.audit_log(hub_env.brand)
            got, answer, content_type, challenge = await _request(
                session, method, hub.api_url + path, key, body
            )
            assert (got, content_type) == (status, "application/json"), (case, answer)
            assert set(answer) == {"error"}, (case, answer)
            assert set(answer["error"]) == {"code", "message"}, (case, answer)
            assert answer["error"]["code"] == code, (case, answer)
            assert answer["error"]["message"], case
            assert (challenge is not None) == (status == 401), case
            now = hub.metrics.get("twinsync_hub_api_refused_total", status=str(status))
            assert now == counted + 1, case  # counted once, whichever layer refused
            audit = keys.audit_log(hub_env.brand)
            if audited:
                assert len(audit) == len(audit_before) + 1, case
                assert (audit[0]["method"], audit[0]["status"]) == (method, status), case
            else:
                assert audit == audit_before, case


async def test_a_store_outage_is_audited_with_the_answer_the_client_got(
    tmp_path: Path, own_services: LocalServices, unique: str
) -> None:
    """A privacy request that InfluxDB's outage ends is answered 503 and audited as 503
    (it was audited as 500 while the guard saw only the exception, not the answer)."""
    brand = f"b{unique}"
    config = make_config(tmp_path, own_services, f"db{unique}", brand)
    keys = ApiKeys(config.registry.path)
    _key, token = keys.create(brand, "tests", SCOPES)
    provision_devices(
        config.registry.path, config.keys.secrets_dir, brand, [("d-1", "coffee")], tmp_path / "b"
    )
    async with Hub(config) as hub, aiohttp.ClientSession() as session:
        await hub.ready.wait()
        own_services.influxd.stop()
        url = f"{hub.api_url}/v1/brands/{brand}/privacy/access"
        status, answer, _type, _challenge = await _request(
            session, "POST", url, token, {"subject": "ann@example.test"}
        )
    assert status == 503, answer
    assert answer["error"]["code"] == "store_unavailable"
    audit = keys.audit_log(brand)
    assert [(a["route"], a["status"]) for a in audit] == [
        ("/v1/brands/{brand}/privacy/access", 503)
    ]
