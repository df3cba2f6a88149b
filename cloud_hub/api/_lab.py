"""serve: the strategy lab (docs/hub.md, "Strategy lab").

- ``POST .../lab/simulate`` (scope read: it changes nothing): a campaign's forecast
  (cloud_hub.api._campaign), with an assumed effect or one an experiment learnt;
- ``POST .../lab/experiments`` (scope write): a randomised experiment over the twins a
  rule selects, assigned and stored (cloud_hub.store._experiments); each device holding
  treated twins is sent the offer, signed by the hub (``protocol.OfferExposure`` on its
  own ``offer`` topic; the agent checks it is fresh and hands it to the application);
- ``GET .../lab/experiments`` and ``GET .../lab/experiments/{experiment}`` (scope read):
  the experiments, their arms, and the result (an interim one while running; frozen when
  the window ends);
- ``POST .../lab/experiments/{experiment}/stop`` (scope write): end it now and freeze
  the result; ``DELETE .../lab/experiments/{experiment}`` (scope write): forget it.

The result compares the churn rates of the arms (cloud_hub.api._uplift): the uplift with
Newcombe's interval and the relative effect with Katz's, which ``effect:
"learnt:<id>"`` feeds into a forecast.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cloud_hub._downlink import seal_downlink
from cloud_hub._errors import RequestError
from cloud_hub.store import Experiments, ExperimentSpec, Filter, IndexReader
from protocol import Channel, OfferExposure, SigningKey, topic

from ._campaign import Effect, forecast, parse_campaign, parse_offer, scan
from ._context import CLOCK
from ._guard import route
from ._params import path_brand
from ._twin_query import MAX_WHERE, parse_where
from ._uplift import Rates

__all__ = ["LAB", "MAX_EXPERIMENTS", "LabContext", "add_lab_routes", "send_offers"]

#: experiments one brand may hold (each holds a row per assigned twin)
MAX_EXPERIMENTS = 100
_DAY_MS = 86_400_000
_ID = re.compile(r"^exp-[0-9a-f]{12}$")


@dataclass(frozen=True)
class LabContext:
    """What the lab's routes use: the experiments, the twin query index (None: this
    instance does not keep it, and the lab answers 503 ``index_disabled``), and what
    sends the treated twins' devices their offer: the hub key that signs it and
    ``publish(topic, payload)`` (the hub's MQTT client; None: offers are not sent)."""

    experiments: Experiments
    index: IndexReader | None
    key: SigningKey | None = None
    publish: Callable[[str, bytes], None] | None = None


#: twins named in one exposure message (protocol.OfferExposure's bound)
_TWINS_PER_MESSAGE = 64


def send_offers(ctx: LabContext, brand: str, experiment: dict[str, Any], now_ms: int) -> int:
    """Send each device holding treated twins of ``experiment`` its signed exposure
    (QoS 1 on its own ``offer`` topic; blocking); return the messages sent."""
    if ctx.key is None or ctx.publish is None:
        return 0
    sent = 0
    for device, twins in ctx.experiments.treated_devices(brand, experiment["id"]).items():
        if device.startswith("_"):
            continue  # the index's pseudo-devices (``_customer``: rectified values)
        for i in range(0, len(twins), _TWINS_PER_MESSAGE):
            body = OfferExposure(
                experiment=experiment["id"],
                offer=experiment["offer"]["name"],
                twins=tuple(twins[i : i + _TWINS_PER_MESSAGE]),
                ts_ms=now_ms,
            )
            payload = seal_downlink(ctx.key, "offer", brand, device, body, sent_ms=now_ms)
            ctx.publish(topic(brand, device, Channel.OFFER), payload)
            sent += 1
    return sent


LAB = web.AppKey("lab", LabContext)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise RequestError("send a JSON object", reason="bad_json")
    return body


def _index(request: web.Request) -> IndexReader:
    index = request.app[LAB].index
    if index is None:
        raise RequestError(
            "this hub instance does not keep the twin query index (index.enabled = false): "
            "the strategy lab reads it; ask an instance that keeps it",
            reason="index_disabled",
            status=503,
        )
    return index


def _experiment_id(request: web.Request) -> str:
    raw = request.match_info.get("experiment", "")
    if not _ID.match(raw):
        raise RequestError(
            "experiment must be an experiment id (exp- and 12 hex digits)", reason="bad_experiment"
        )
    return raw


async def _experiment(request: web.Request, brand: str, experiment: str) -> dict[str, Any]:
    lab = request.app[LAB]
    found = await asyncio.to_thread(lab.experiments.get, brand, experiment)
    if found is None:
        raise RequestError(
            f"no experiment {experiment} for brand {brand}",
            reason="unknown_experiment",
            status=404,
        )
    return found


async def _learnt(request: web.Request, brand: str, source: str) -> Effect:
    experiment = source.removeprefix("learnt:")
    if not _ID.match(experiment):
        raise RequestError(
            '"effect": "learnt:<experiment id>" names an experiment (exp- and 12 hex digits)',
            reason="bad_effect",
        )
    found = await _settled(request, brand, await _experiment(request, brand, experiment))
    if found["status"] != "finished":
        raise RequestError(
            f"experiment {experiment} is still running: its effect is learnt when it ends "
            f"(or stop it: POST .../lab/experiments/{experiment}/stop)",
            reason="experiment_running",
            status=409,
        )
    effect = found["result"]["effect"]
    if effect is None:
        raise RequestError(
            f"experiment {experiment} measured no effect (its holdout had no churner): "
            "assume one instead",
            reason="no_effect_learnt",
            status=422,
        )
    return Effect(effect["value"], effect["low"], effect["high"], source)


async def simulate(request: web.Request) -> web.Response:
    """``POST .../lab/simulate``: the forecast of a campaign (cloud_hub.api._campaign)."""
    brand = path_brand(request)
    index = _index(request)
    campaign = parse_campaign(await _json_object(request), request.app[CLOCK].now_ms())
    if isinstance(campaign.effect, str):
        effect = await _learnt(request, brand, campaign.effect)
    else:
        value = float(campaign.effect)
        effect = Effect(value, value, value, "assumed")

    def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        population = list(scan(index, brand, None))
        if campaign.where is None:
            return population, population
        return population, list(scan(index, brand, campaign.where))

    population, targeted = await asyncio.to_thread(read)
    return web.json_response({"brand": brand, **forecast(campaign, effect, population, targeted)})


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(
            f'"{name}" must be a number from {low:g} to {high:g}', reason=f"bad_{name}"
        )
    return float(value)


def _spec(body: dict[str, Any], now_ms: int) -> tuple[ExperimentSpec, Filter | None]:
    unknown = sorted(set(body) - {"where", "offer", "holdout", "outcome"})
    if unknown:
        raise RequestError(
            f"unknown member {unknown[0]!r}: an experiment has where, offer, holdout and outcome",
            reason="bad_experiment_request",
        )
    raw = body.get("where")
    if raw is not None and (not isinstance(raw, str) or len(raw) > MAX_WHERE):
        raise RequestError(
            f'"where" must be a twin query of at most {MAX_WHERE} characters', reason="bad_where"
        )
    where = parse_where(raw, now_ms) if raw else None
    name, cost = parse_offer(body)
    holdout = _number(body, "holdout", 0.5, 0.05, 0.95)
    outcome = body.get("outcome", {})
    if (
        not isinstance(outcome, dict)
        or outcome.get("metric", "churned") != "churned"
        or set(outcome) - {"metric", "days", "quiet_days"}
    ):
        raise RequestError(
            '"outcome" must be {"metric": "churned", "days": the window, "quiet_days": the '
            "silence at its end that counts as churned}",
            reason="bad_outcome",
        )
    days = _number(outcome, "days", 30, 0.0001, 365)
    quiet = _number(outcome, "quiet_days", min(days, 7.0), 0.0001, days)
    spec = ExperimentSpec(
        where_text=raw or None,
        offer=name,
        cost=cost,
        holdout=holdout,
        metric="churned",
        window_ms=int(days * _DAY_MS),
        quiet_ms=int(quiet * _DAY_MS),
    )
    return spec, where


def _stratum(twin: dict[str, Any]) -> str:
    segments = twin["segments"]
    return ",".join(f"{p}={segments[p]}" for p in sorted(segments))


async def create_experiment(request: web.Request) -> web.Response:
    """``POST .../lab/experiments``: assign the twins the rule selects (module docstring)."""
    brand = path_brand(request)
    index = _index(request)
    spec, where = _spec(await _json_object(request), request.app[CLOCK].now_ms())
    lab = request.app[LAB]

    def run() -> dict[str, Any]:
        running = lab.experiments.of_brand(brand)
        if len(running) >= MAX_EXPERIMENTS:
            raise RequestError(
                f"brand {brand} holds {MAX_EXPERIMENTS} experiments, the most it may",
                reason="too_many_experiments",
                status=409,
            )
        twins = [(t["twin"], _stratum(t)) for t in scan(index, brand, where)]
        if len(twins) < 2:
            raise RequestError(
                "the rule selects fewer than 2 twins: an experiment needs both arms",
                reason="too_few_twins",
                status=422,
            )
        created = lab.experiments.create(brand, spec, twins)
        send_offers(lab, brand, created, created["created_ms"])
        return created

    created = await asyncio.to_thread(run)
    return web.json_response(created, status=201)


async def _settled(request: web.Request, brand: str, found: dict[str, Any]) -> dict[str, Any]:
    """``found`` with its result: frozen once the window ended, interim before."""
    if found["status"] == "finished":
        return found
    now = request.app[CLOCK].now_ms()
    if now >= found["ends_ms"]:
        return await _finish(request, brand, found["id"], found["ends_ms"])
    lab = request.app[LAB]
    rates = Rates(*await asyncio.to_thread(lab.experiments.outcomes, brand, found["id"], now))
    return {**found, "result": {"at_ms": now, "interim": True, **rates.summary()}}


async def _finish(request: web.Request, brand: str, experiment: str, end_ms: int) -> dict[str, Any]:
    lab = request.app[LAB]

    def run() -> dict[str, Any] | None:
        rates = Rates(*lab.experiments.outcomes(brand, experiment, end_ms))
        result = {"at_ms": end_ms, "interim": False, **rates.summary()}
        return lab.experiments.finish(brand, experiment, result)

    done = await asyncio.to_thread(run)
    if done is None:  # deleted meanwhile (another request, another instance)
        raise RequestError(
            f"no experiment {experiment} for brand {brand}",
            reason="unknown_experiment",
            status=404,
        )
    return done


async def list_experiments(request: web.Request) -> web.Response:
    """``GET .../lab/experiments``: every experiment of the brand, newest first."""
    brand = path_brand(request)
    found = await asyncio.to_thread(request.app[LAB].experiments.of_brand, brand)
    settled = [await _settled(request, brand, e) for e in found]
    return web.json_response({"brand": brand, "experiments": settled})


async def get_experiment(request: web.Request) -> web.Response:
    """``GET .../lab/experiments/{experiment}``: one experiment and its result."""
    brand, experiment = path_brand(request), _experiment_id(request)
    found = await _experiment(request, brand, experiment)
    return web.json_response(await _settled(request, brand, found))


async def stop_experiment(request: web.Request) -> web.Response:
    """``POST .../lab/experiments/{experiment}/stop``: end it now, freeze the result."""
    brand, experiment = path_brand(request), _experiment_id(request)
    found = await _experiment(request, brand, experiment)
    if found["status"] == "finished":
        return web.json_response(found)
    end = min(request.app[CLOCK].now_ms(), found["ends_ms"])
    return web.json_response(await _finish(request, brand, experiment, end))


async def delete_experiment(request: web.Request) -> web.Response:
    """``DELETE .../lab/experiments/{experiment}``: forget it and its assignment."""
    brand, experiment = path_brand(request), _experiment_id(request)
    found = await asyncio.to_thread(request.app[LAB].experiments.delete, brand, experiment)
    if found is None:
        raise RequestError(
            f"no experiment {experiment} for brand {brand}",
            reason="unknown_experiment",
            status=404,
        )
    return web.json_response(found)


def add_lab_routes(app: web.Application, ctx: LabContext) -> None:
    """Register the strategy lab's routes."""
    app[LAB] = ctx
    base = "/v1/brands/{brand}/lab"
    route(app, "POST", f"{base}/simulate", simulate, "read")
    route(app, "POST", f"{base}/experiments", create_experiment, "write")
    route(app, "GET", f"{base}/experiments", list_experiments, "read")
    route(app, "GET", f"{base}/experiments/{{experiment}}", get_experiment, "read")
    route(app, "POST", f"{base}/experiments/{{experiment}}/stop", stop_experiment, "write")
    route(app, "DELETE", f"{base}/experiments/{{experiment}}", delete_experiment, "write")
