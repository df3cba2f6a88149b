"""The hub's OpenAPI document (``GET /v1/openapi.json``) against a real hub, broker and
InfluxDB.

- It lists exactly the routes the running hub's router serves, each with the scope the
  guard enforces, and it is a valid OpenAPI 3.1 document (openapi-spec-validator, which
  checks it against the official 3.1 schema). A route added without its entry, or an
  entry whose route went away, fails here.
- Real answers match it: every documented operation is called (data seeded through a
  device, a webhook, a cohort, an uploaded model and a rollout), and so are refusals;
  each answer must be a documented status and validate against that status's schema
  with every object closed (``additionalProperties: false``), so a member the hub answers
  but the document does not name fails, and so does an error code it does not list.
- The documented limits are the limits: each bounded number in a query, at its maximum,
  is not refused for that parameter; one past it is refused with ``bad_<name>``.
- The document is public on purpose: the same bytes for no key, another brand's key, a
  device's credentials, a replay and hostile sizes; nothing audited, nothing changed.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import io
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _fakes import FakeDevice, now_hlc
from aiohttp import web
from hub_env import HubEnv
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cloud_hub import SCOPES, ApiKeys, Hub
from cloud_hub.api import openapi_document, route, route_scopes
from protocol import Channel, ConsentEntry, Delta, Op, TwinOps, packb, sha256_hex

REPO = Path(__file__).resolve().parents[2]
_DOC_URI = "urn:twinsync:openapi"
_SUBJECT = "ann@example.com"


def _closed(node: Any) -> Any:
    """``node`` with every object schema that names its properties closed, and every
    reference made absolute (so a response's schema validates on its own)."""
    if isinstance(node, dict):
        out = {k: _closed(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            out["$ref"] = _DOC_URI + ref
        return out
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


class Spec:
    """The served document, and real answers checked against it."""

    def __init__(self, hub: Hub, doc: dict[str, Any], token: str, values: dict[str, str]) -> None:
        self.hub, self.doc, self.token, self.values = hub, doc, token, values
        self.strict = _closed(copy.deepcopy(doc))
        resource = Resource.from_contents(self.strict, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(_DOC_URI, resource)
        #: (method, template) of every documented operation answered with success
        self.succeeded: set[tuple[str, str]] = set()

    def operations(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (method.upper(), path, op)
            for path, item in self.doc["paths"].items()
            for method, op in item.items()
        ]

    def check(self, method: str, template: str, status: int, media: str, body: Any) -> None:
        """``body`` (answered ``status`` as ``media``) is what the document says."""
        op = self.strict["paths"][template][method.lower()]
        responses = op["responses"]
        assert str(status) in responses, f"{method} {template}: undocumented {status} {body}"
        content = responses[str(status)]["content"]
        assert media in content, f"{method} {template} {status}: {media} not documented"
        if media == "application/json":
            validator = Draft202012Validator(content[media]["schema"], registry=self.registry)
            problems = [
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(body)
            ]
            assert problems == [], f"{method} {template} {status}: {problems}"
        if status < 300:
            self.succeeded.add((method, template))

    async def call(
        self,
        method: str,
        template: str,
        *,
        token: str | None = "",
        expect: int | None = None,
        params: dict[str, str] | None = None,
        **kw: Any,
    ) -> tuple[int, Any]:
        """Call ``template`` (path parameters from ``values``), check the answer against
        the document; return (status, body)."""
        token = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = self.hub.api_url + template.format(**self.values)
        timeout = aiohttp.ClientTimeout(total=60)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, url, headers=headers, params=params, **kw) as resp,
        ):
            media = resp.content_type
            if media == "text/event-stream":
                body: Any = None  # a live stream: its status and type are the answer
            elif media == "application/json":
                body = await resp.json()
            else:
                body = await resp.read()
            self.check(method, template, resp.status, media, body)
            if expect is not None:
                assert resp.status == expect, (method, template, resp.status, body)
            return resp.status, body


async def _document(hub: Hub) -> tuple[bytes, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{hub.api_url}/v1/openapi.json") as resp,
    ):
        assert resp.status == 200
        assert resp.content_type == "application/json"
        raw = await resp.read()
    return raw, json.loads(raw)


def _served(hub: Hub) -> set[tuple[str, str]]:
    assert hub._runner is not None
    routes = set()
    for r in hub._runner.app.router.routes():
        path = r.resource.canonical if r.resource is not None else ""
        if r.method != "HEAD":  # aiohttp's, beside each GET of add_get; not documented
            routes.add((r.method, path))
    return routes


async def test_the_document_describes_exactly_the_routes_the_hub_serves(hub: Hub) -> None:
    """Every (method, route) the router serves is documented and nothing else is; each
    documented scope is the guard's; the document is valid OpenAPI 3.1; each operation
    id is unique (the client names its methods after them)."""
    _raw, doc = await _document(hub)
    validate(doc)  # the official OpenAPI 3.1 schema, and the spec's own rules
    assert doc["openapi"] == "3.1.0"
    assert doc == openapi_document()
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    served = _served(hub)
    assert served - documented == set(), "routes the document does not describe"
    assert documented - served == set(), "documented routes the hub does not serve"
    assert hub._runner is not None
    scopes = route_scopes(hub._runner.app)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            scope = scopes.get((method.upper(), path), "public")
            security = op["security"]
            if scope == "public":
                assert security == [], (method, path)
                assert "401" not in op["responses"]
            elif scope == "device":
                assert security == [{"brandKey": ["read"]}, {"signedUrl": []}]
            else:
                assert security == [{"brandKey": [scope]}], (method, path, scope)
                assert {"401", "403"} <= set(op["responses"])
            for param in op["parameters"]:
                if param["in"] == "path":
                    assert f"{{{param['name']}}}" in path, (path, param["name"])
    ids = [op["operationId"] for _p, item in doc["paths"].items() for op in item.values()]
    assert len(ids) == len(set(ids)) == len(served)


_READERS = {"query_int", "query_text", "query_time_ns"}


def _read_by_handlers() -> tuple[set[str], set[str]]:
    """The query parameters and headers cloud_hub/api's code reads, from its source:
    ``request.query.get("x")``, ``"x" in request.query``, ``query_int(request, "x", ...)``
    (and the other parsers), ``request.headers.get("X")``."""
    params, headers = set(), set()
    for path in sorted((REPO / "cloud_hub/api").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and node.args:
                func = ast.unparse(node.func)
                first = node.args[0]
                if func == "request.query.get" and isinstance(first, ast.Constant):
                    params.add(first.value)
                elif func == "request.headers.get" and isinstance(first, ast.Constant):
                    headers.add(first.value)
                elif (
                    func in _READERS
                    and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant)
                ):
                    params.add(node.args[1].value)
            elif (
                isinstance(node, ast.Compare)
                and ast.unparse(node.comparators[0]) == "request.query"
                and isinstance(node.left, ast.Constant)
            ):
                params.add(node.left.value)
    return params, headers


def test_every_parameter_the_handlers_read_is_documented() -> None:
    """A query parameter or header a handler reads without the document naming it fails
    here (the signed URL's ``sig`` is a security scheme; the key, ``Authorization``)."""
    doc = openapi_document()
    documented: dict[str, set[str]] = {"query": set(), "header": set()}
    for item in doc["paths"].values():
        for op in item.values():
            for param in op["parameters"]:
                documented.setdefault(param["in"], set()).add(param["name"])
    schemes = doc["components"]["securitySchemes"]
    documented["query"] |= {s["name"] for s in schemes.values() if s.get("in") == "query"}
    documented["header"].add("Authorization")  # the bearer scheme's
    params, headers = _read_by_handlers()
    assert len(params) >= 9
    assert params == documented["query"]
    assert headers == documented["header"]


def _shipped_model() -> tuple[bytes, bytes, str]:
    manifest = (REPO / "edge_agent/models/churn-coffee.manifest.json").read_bytes()
    model = (REPO / "edge_agent/models/churn-coffee.onnx").read_bytes()
    parsed = json.loads(manifest)
    return manifest, model, f"{parsed['name']}@{parsed['version']}"


def _form(manifest: bytes, model: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("manifest", manifest.decode(), content_type="application/json")
    form.add_field("model", model, filename="model.onnx", content_type="application/octet-stream")
    return form


async def _seed(device: FakeDevice) -> str:
    """One delta of the customer's twin: a counter, a segment, a churn score (with their
    models) and a consent entry; and the device's status."""
    twin = device.twin(_SUBJECT)
    ops = [
        (now_hlc(-3000), "coffee.brews_total", 2),
        (now_hlc(-3000), "coffee.segment", 1),
        (now_hlc(-3000), "coffee.segment_model", "segment-coffee@1"),
        (now_hlc(-2000), "coffee.segment", 3),
        (now_hlc(-2000), "coffee.segment_model", "segment-coffee@1"),
        (now_hlc(-2000), "coffee.churn_risk", 0.25),
        (now_hlc(-2000), "coffee.churn_model", "churn-coffee@1"),
    ]
    now_ms = time.time_ns() // 1_000_000
    consent = ConsentEntry(twin, now_ms - 1000, (("analytics", True),), "device", "v1")
    delta = Delta(
        twins=(TwinOps(twin, tuple(Op(h, f, v) for h, f, v in ops)),),  # type: ignore[arg-type]
        consent=(consent,),
    )
    device.publish(device.envelope("delta", 1, packb(delta.to_wire())))
    device.publish(device.status(), channel=Channel.STATUS)
    await device.wait_acked({1})
    return twin


@pytest.fixture
async def spec(hub: Hub, hub_env: HubEnv, device: FakeDevice) -> Spec:
    twin = await _seed(device)
    _raw, doc = await _document(hub)
    values = {
        "brand": hub_env.brand,
        "twin": twin,
        "cohort": "beta",
        "name": "churn-coffee",
        "version": "1",
        "id": "1",
        "key_id": "",
        "module": "app.js",
        "rule": "",
        "experiment": "exp-0123456789ab",
    }
    return Spec(hub, doc, hub_env.token, values)


async def test_real_answers_match_the_documented_schemas(
    spec: Spec, hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    """Every documented operation, called for real (changes first, so every read has
    something to show), answers a documented status with a body of the documented
    schema; so do refusals of each kind."""
    brand = "/v1/brands/{brand}"
    manifest, model, ref = _shipped_model()
    await spec.call("PUT", f"{brand}/webhook", json={"url": "http://127.0.0.1:9/hooks"}, expect=200)
    await spec.call("PUT", f"{brand}/cohorts/{{cohort}}", json={"devices": ["dev-0"]}, expect=200)
    _, uploaded = await spec.call(
        "POST", f"{brand}/models", data=_form(manifest, model), expect=201
    )
    spec.values["version"] = str(uploaded["version"])
    body = {"model": ref, "target": {"cohort": "beta"}}
    _, rollout = await spec.call("POST", f"{brand}/rollouts", json=body, expect=201)
    spec.values["id"] = str(rollout["id"])
    _, key = await spec.call(
        "POST", f"{brand}/keys", json={"name": "crm", "scopes": ["read"]}, expect=201
    )
    spec.values["key_id"] = key["key_id"]
    rule = {"name": "churn", "kind": "churn_risk", "threshold": 0.7}
    _, trigger = await spec.call("POST", f"{brand}/triggers", json=rule, expect=201)
    spec.values["rule"] = trigger["rule"]["rule_id"]
    consent = {"subject": _SUBJECT, "purposes": {"marketing": False}, "notice": "v2"}
    await spec.call("POST", f"{brand}/privacy/consent", json=consent, expect=202)
    await spec.call("POST", f"{brand}/privacy/access", json={"subject": _SUBJECT}, expect=200)
    rectify = {"subject": _SUBJECT, "set": {"coffee.strength": 3}}
    await spec.call("POST", f"{brand}/privacy/rectification", json=rectify, expect=200)
    # The strategy lab: a second twin, so that an experiment has both arms.
    second = device.twin("bob@example.com")
    device.publish(device.delta(2, {second: [(now_hlc(-1000), "coffee.churn_risk", 0.5)]}))
    await device.wait_acked({2})
    campaign = {"offer": {"name": "x", "cost": 1}, "effect": 0.2}
    await spec.call("POST", f"{brand}/lab/simulate", json=campaign, expect=200)
    new = {"offer": {"name": "x", "cost": 1}, "outcome": {"days": 1}}
    _, experiment = await spec.call("POST", f"{brand}/lab/experiments", json=new, expect=201)
    spec.values["experiment"] = experiment["id"]
    await spec.call("POST", f"{brand}/lab/experiments/{{experiment}}/stop", json={}, expect=200)
    # Every documented read, with the values seeded above and each required parameter's
    # documented example.
    for method, template, op in spec.operations():
        if method != "GET":
            continue
        params = {
            p["name"]: str(p["example"])
            for p in op["parameters"]
            if p["in"] == "query" and p["required"]
        }
        if template.endswith("/model.onnx"):
            params["sha256"] = json.loads(manifest)["sha256"]
        status, answer = await spec.call(method, template, params=params)
        assert status == 200, (template, answer)
    await spec.call("DELETE", f"{brand}/keys/{{key_id}}", expect=200)
    await spec.call("DELETE", f"{brand}/triggers/{{rule}}", expect=200)
    await spec.call("DELETE", f"{brand}/lab/experiments/{{experiment}}", expect=200)
    await spec.call("POST", f"{brand}/privacy/objection", json={"subject": _SUBJECT}, expect=200)
    await spec.call("POST", f"{brand}/privacy/erasure", json={"subject": _SUBJECT}, expect=200)
    assert {(m, t) for m, t, _ in spec.operations()} == spec.succeeded

    # Refusals: each a documented status and code.
    other = ApiKeys(hub_env.config.registry.path).create("other-brand", "x", SCOPES)[1]
    await spec.call("GET", f"{brand}/twins", token=None, expect=401)
    await spec.call("GET", f"{brand}/twins", token="tsk_nope", expect=401)
    await spec.call("GET", f"{brand}/twins", token=other, expect=403)
    await spec.call("GET", f"{brand}/twins", params={"limit": "0"}, expect=400)
    await spec.call("GET", f"{brand}/twins/{{twin}}", expect=404)  # erased above
    await spec.call("GET", f"{brand}/twins/{{twin}}/history", params={"field": "x"}, expect=400)
    await spec.call("GET", f"{brand}/segments/changes", expect=400)
    other_file = model + b"\0"  # the same version with another file
    changed = {**json.loads(manifest), "sha256": sha256_hex(other_file), "size": len(other_file)}
    form = _form(json.dumps(changed).encode(), other_file)
    await spec.call("POST", f"{brand}/models", data=form, expect=409)
    spec.values["id"] = "999"
    await spec.call("GET", f"{brand}/rollouts/{{id}}", expect=404)
    hostile = io.BytesIO(json.dumps({"subject": "x" * (2 * 1024 * 1024)}).encode())
    await spec.call("POST", f"{brand}/privacy/access", data=hostile, expect=413)
    await spec.call("POST", f"{brand}/privacy/erasure", json={"subject": ""}, expect=400)
    await spec.call("PUT", f"{brand}/webhook", json={"url": "ftp://x"}, expect=400)
    await spec.call("POST", f"{brand}/rollouts", json={"model": ref, "target": {}}, expect=400)


async def test_documented_limits_are_the_limits(spec: Spec) -> None:
    """Each bounded whole number of a query: its documented maximum is not refused for
    that parameter, one more is refused with ``bad_<name>`` (a documented code)."""
    checked = 0
    for method, template, op in spec.operations():
        if method != "GET" or op["responses"].get("200", {}).get("content", {}).get(
            "text/event-stream"
        ):
            continue
        required = {
            p["name"]: str(p["example"])
            for p in op["parameters"]
            if p["in"] == "query" and p["required"]
        }
        for param in op["parameters"]:
            schema = param["schema"]
            if param["in"] != "query" or schema.get("type") != "integer":
                continue
            name, top = param["name"], schema["maximum"]
            status, body = await spec.call(method, template, params={**required, name: str(top)})
            assert status == 200 or body["error"]["code"] != f"bad_{name}", (template, name)
            status, body = await spec.call(
                method, template, params={**required, name: str(top + 1)}
            )
            assert (status, body["error"]["code"]) == (400, f"bad_{name}"), (template, name)
            checked += 1
    assert checked >= 8


async def test_the_document_is_public_and_the_same_for_everyone(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    """No key, another brand's key, a device's broker password or model-URL signature,
    a replay, a 4,000-character query and a 2 MiB body all get the same document, which
    names no brand, twin or key; a POST is 405 in the API's error shape; nothing is
    audited or changed."""
    twin = await _seed(device)
    keys = ApiKeys(hub_env.config.registry.path)
    _, foreign = keys.create("other-brand", "attacker", SCOPES)
    audit_before = keys.audit_log(hub_env.brand)
    refused_before = hub.metrics.get("twinsync_hub_api_refused_total")
    raw, _doc = await _document(hub)
    password = (hub_env.bundles["dev-0"].parent / "mqtt.password").read_text().strip()
    url = f"{hub.api_url}/v1/openapi.json"
    attempts: list[dict[str, Any]] = [
        {"headers": {"Authorization": f"Bearer {foreign}"}},
        {"headers": {"Authorization": f"Bearer {password}"}},
        {"params": {"sig": "0" * 64, "sha256": "0" * 64}},
        {},  # a replay of the first request
        {"params": {"q": "x" * 4000}},
        {"data": io.BytesIO(b"x" * (2 * 1024 * 1024))},
    ]
    async with aiohttp.ClientSession() as session:
        for kw in attempts:
            async with session.get(url, **kw) as resp:
                assert resp.status == 200, kw.keys()
                assert await resp.read() == raw
        async with session.post(url, json={"x": 1}) as resp:
            assert resp.status == 405
            assert (await resp.json())["error"]["code"] == "method_not_allowed"
    text = raw.decode()
    for secret in (hub_env.brand, twin, hub_env.token.split("_")[1], foreign.split("_")[1]):
        assert secret not in text
    assert keys.audit_log(hub_env.brand) == audit_before
    assert hub.metrics.get("twinsync_hub_api_refused_total") == refused_before + 1
    await asyncio.sleep(0)  # the hub keeps serving
    status_doc = await _document(hub)
    assert status_doc[0] == raw


async def _nothing(_request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_with_an_unknown_scope_is_refused_at_start() -> None:
    """A typo in a route's scope would leave it unguarded (the guard passes what it does
    not know) or unusable: registering it fails, so the hub does not start."""
    app = web.Application()
    with pytest.raises(ValueError, match="unknown scope 'pubic'"):
        route(app, "GET", "/v1/brands/{brand}/x", _nothing, "pubic")
    assert list(app.router.routes()) == []
