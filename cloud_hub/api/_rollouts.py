"""serve: the model-rollout routes of the HTTP API (see docs/hub.md, "Model rollout").

    POST /v1/brands/{brand}/models                          multipart: manifest, model
    GET  /v1/brands/{brand}/models
    GET  /v1/brands/{brand}/models/{name}/{version}/model.onnx     (devices fetch here)
    PUT  /v1/brands/{brand}/cohorts/{cohort}                {"devices": [...]}
    GET  /v1/brands/{brand}/cohorts/{cohort}
    POST /v1/brands/{brand}/rollouts                        {"model": "n@v", "target": ...}
    GET  /v1/brands/{brand}/rollouts
    GET  /v1/brands/{brand}/rollouts/{id}                   progress per device

Refusals are raised as :class:`~cloud_hub.RolloutError` (which carries its status) and
answered by the API's one error path (cloud_hub.api._errors). Progress comes from what
devices report in their status: a device *runs* the model when
its status lists ``name@version``, has *refused* it when its last refusal for that name
names the version (with the device's reason), and is *pending* otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import BodyPartReader, web
from aiohttp.http import HttpProcessingError

from cloud_hub._errors import RolloutError
from cloud_hub.models import ModelPublisher, ModelRepo, Rollout, RolloutStore, Target
from cloud_hub.store import TwinReader
from protocol import MAX_MODEL_BYTES, TwinSyncError, VerifyKey, check_brand

from ._guard import route
from ._params import ascii_int

__all__ = ["ROLLOUTS", "RolloutContext", "add_rollout_routes"]

log = logging.getLogger("cloud_hub.api")

_MANIFEST_MAX = 64 * 1024
_JSON_MAX = 4 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class RolloutContext:
    """What the rollout routes need from the hub."""

    repo: ModelRepo
    store: RolloutStore
    publisher: ModelPublisher | None
    reader: TwinReader
    hub_keys: dict[str, VerifyKey]


ROLLOUTS = web.AppKey("rollouts", RolloutContext)


def _ctx(request: web.Request) -> tuple[RolloutContext, str]:
    try:
        brand = check_brand(request.match_info["brand"])
    except TwinSyncError as exc:
        raise RolloutError(str(exc), reason="bad_brand") from None
    return request.app[ROLLOUTS], brand


async def _read_part(part: BodyPartReader, limit: int, what: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise RolloutError(
                f"{what} is larger than {limit} bytes", reason="too_large", status=413
            )
    return bytes(data)


async def upload_model(request: web.Request) -> web.Response:
    """``POST .../models``: multipart with parts ``manifest`` (JSON) and ``model`` (ONNX)."""
    ctx, brand = _ctx(request)
    if not request.content_type.startswith("multipart/"):
        raise RolloutError(
            "send multipart/form-data with parts 'manifest' and 'model'", reason="bad_upload"
        )
    parts: dict[str, bytes] = {}
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name not in ("manifest", "model"):
                raise RolloutError("unexpected multipart part", reason="bad_upload")
            limit = _MANIFEST_MAX if part.name == "manifest" else MAX_MODEL_BYTES
            parts[part.name] = await _read_part(part, limit, part.name)
    except (ValueError, aiohttp.ClientPayloadError, HttpProcessingError) as exc:
        # A body that is not the multipart it claims to be: aiohttp's reader raises
        # ValueError (no boundary, truncated), LineTooLong or InvalidHeader (both
        # HttpProcessingError). Its text is logged, the client is told what to send.
        log.info("model upload refused, malformed multipart body: %r", exc)
        raise RolloutError(
            "the body is not well-formed multipart/form-data (a line over 8190 bytes, a "
            "bad part header or a truncated body): send the parts 'manifest' and 'model'",
            reason="bad_upload",
        ) from None
    if set(parts) != {"manifest", "model"}:
        raise RolloutError("both parts 'manifest' and 'model' are required", reason="bad_upload")
    model, warnings = await asyncio.to_thread(
        ctx.repo.add, brand, parts["manifest"], parts["model"], ctx.hub_keys
    )
    return web.json_response({**model.summary(), "warnings": warnings}, status=201)


async def list_models(request: web.Request) -> web.Response:
    """``GET .../models``."""
    ctx, brand = _ctx(request)
    models = await asyncio.to_thread(ctx.repo.models, brand)
    return web.json_response({"brand": brand, "models": [m.summary() for m in models]})


async def model_file(request: web.Request) -> web.StreamResponse:
    """``GET .../models/{name}/{version}/model.onnx``: the bytes devices verify and run."""
    ctx, brand = _ctx(request)
    version = ascii_int(request.match_info["version"], 0, 10**9 - 1)
    model = None
    if version is not None:
        model = await asyncio.to_thread(ctx.repo.model, brand, request.match_info["name"], version)
    wanted = request.query.get("sha256")
    if model is None or not model.path.is_file() or wanted not in (None, model.manifest.sha256):
        raise RolloutError("no such model file", reason="unknown_model", status=404)
    return web.FileResponse(model.path, headers={"Content-Type": "application/octet-stream"})


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > _JSON_MAX:
        raise RolloutError("request body too large", reason="too_large", status=413)
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise RolloutError("body must be a JSON object", reason="bad_json") from None
    if not isinstance(body, dict):
        raise RolloutError("body must be a JSON object", reason="bad_json")
    return body


async def put_cohort(request: web.Request) -> web.Response:
    """``PUT .../cohorts/{cohort}`` with ``{"devices": [...]}``: replace its members."""
    ctx, brand = _ctx(request)
    body = await _json_body(request)
    devices = body.get("devices")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise RolloutError('"devices" must be a list of device ids', reason="bad_cohort")
    cohort = request.match_info["cohort"]
    members = await asyncio.to_thread(ctx.store.put_cohort, brand, cohort, devices)
    if ctx.publisher is not None:
        ctx.publisher.wake.set()
    return web.json_response({"brand": brand, "cohort": cohort, "devices": members})


async def get_cohort(request: web.Request) -> web.Response:
    """``GET .../cohorts/{cohort}``."""
    ctx, brand = _ctx(request)
    cohort = request.match_info["cohort"]
    members = await asyncio.to_thread(ctx.store.cohort, brand, cohort)
    return web.json_response({"brand": brand, "cohort": cohort, "devices": members})


async def create_rollout(request: web.Request) -> web.Response:
    """``POST .../rollouts`` with ``{"model": "name@version", "target": {...}}``."""
    ctx, brand = _ctx(request)
    body = await _json_body(request)
    ref = body.get("model")
    if not isinstance(ref, str):
        raise RolloutError('"model" must be "name@version"', reason="bad_model")
    target = Target.parse(body.get("target"))
    rollout = await asyncio.to_thread(ctx.store.create, brand, ref, target)
    if ctx.publisher is not None:
        ctx.publisher.wake.set()
    return web.json_response(rollout.summary(), status=201)


async def list_rollouts(request: web.Request) -> web.Response:
    """``GET .../rollouts``: every rollout with its progress counts."""
    ctx, brand = _ctx(request)
    rollouts = await asyncio.to_thread(ctx.store.rollouts, brand)
    devices = await ctx.reader.devices(brand)
    return web.json_response(
        {"brand": brand, "rollouts": [_progress(r, devices, detail=False) for r in rollouts]}
    )


async def get_rollout(request: web.Request) -> web.Response:
    """``GET .../rollouts/{id}``: the rollout and the state of each device it targets."""
    ctx, brand = _ctx(request)
    raw = request.match_info["id"]
    number = ascii_int(raw, 0, 10**18 - 1)
    rollout = None
    if number is not None:
        rollout = await asyncio.to_thread(ctx.store.rollout, brand, number)
    if rollout is None:
        raise RolloutError(f"no rollout {raw[:40]!r}", reason="unknown_rollout", status=404)
    devices = await ctx.reader.devices(brand)
    return web.json_response(_progress(rollout, devices, detail=True))


def _progress(rollout: Rollout, devices: list[dict[str, Any]], *, detail: bool) -> dict[str, Any]:
    by_id = {d["device"]: d for d in devices}
    states: dict[str, dict[str, str]] = {}
    counts = {"running": 0, "refused": 0, "pending": 0}
    refusals: dict[str, int] = {}
    for device in rollout.members:
        status = by_id.get(device, {})
        failure = status.get("model_failures", {}).get(rollout.name, "")
        if rollout.model.ref in status.get("models", []):
            state = {"state": "running"}
        elif failure.endswith(f" {rollout.model.ref}"):
            reason = failure.split(" ", 1)[0]
            state = {"state": "refused", "reason": reason}
            refusals[reason] = refusals.get(reason, 0) + 1
        else:
            state = {"state": "pending"}
        counts[state["state"]] += 1
        states[device] = state
    out = {**rollout.summary(), **counts, "refusals": refusals}
    if detail:
        out["members"] = states
    return out


def add_rollout_routes(app: web.Application, ctx: RolloutContext) -> None:
    """Register the rollout routes and their context on ``app``."""
    app[ROLLOUTS] = ctx
    base = "/v1/brands/{brand}"
    route(app, "POST", f"{base}/models", upload_model, "admin")
    route(app, "GET", f"{base}/models", list_models, "read")
    route(app, "GET", f"{base}/models/{{name}}/{{version}}/model.onnx", model_file, "device")
    route(app, "PUT", f"{base}/cohorts/{{cohort}}", put_cohort, "admin")
    route(app, "GET", f"{base}/cohorts/{{cohort}}", get_cohort, "read")
    route(app, "POST", f"{base}/rollouts", create_rollout, "admin")
    route(app, "GET", f"{base}/rollouts", list_rollouts, "read")
    route(app, "GET", f"{base}/rollouts/{{id}}", get_rollout, "read")
