"""serve: segment intelligence: sizes over time and the migration matrix.

    GET /v1/brands/{brand}/segments/sizes?product=&model=&start=&end=&step=
    GET /v1/brands/{brand}/segments/migration?product=&from=&to=
    GET /v1/brands/{brand}/segments/profile?product=&model=&top=
    GET /v1/brands/{brand}/segments/alerts?product=&model=&at=&baseline=&k=

Sizes and migration read the stored segment history (cloud_hub.store._segment_sizes),
point in time; every bound (steps, points read) is checked before anything large is
read. Profiles read the twin query index (cloud_hub.store._segment_profile): what the
twins hold now. Share alerts judge the daily sizes (cloud_hub.store._segment_alerts); a
check that finds some logs each (the scheduled check, ``_share_watch``, also sets
the gauge ``twinsync_hub_segment_share_alerts``).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from cloud_hub._errors import RequestError
from cloud_hub.store import (
    MAX_STEPS,
    MAX_TOP,
    MIN_SMD,
    MIN_TWINS,
    ShareRule,
    parse_duration_ms,
    share_alerts,
)
from protocol import PRODUCTS

from ._context import CLOCK, PROFILES, READER
from ._params import (
    DEFAULT_RANGE_MS,
    path_brand,
    query_int,
    query_text,
    query_time_ns,
    time_range_ns,
)

__all__ = [
    "DEFAULT_BASELINE_DAYS",
    "DEFAULT_STEP",
    "DEFAULT_TOP",
    "MAX_BASELINE_DAYS",
    "MAX_MODEL_REF",
    "segment_migration",
    "segment_profile",
    "segment_share_alerts",
    "segment_sizes",
]

#: features a profile lists per segment by default
DEFAULT_TOP = 5
#: days of normal variation a share alert compares with, by default and at most
DEFAULT_BASELINE_DAYS = 14
MAX_BASELINE_DAYS = 90
_DAY_MS = 86_400_000

log = logging.getLogger("cloud_hub.api")

#: the step of a sizes request that names none
DEFAULT_STEP = "1d"
#: longest model ref (``name@version``) a request may name
MAX_MODEL_REF = 100


def query_product(request: web.Request) -> str:
    """The ``product`` query parameter, one of the catalog's products (400 ``bad_product``)."""
    product = request.query.get("product", "")
    if product not in PRODUCTS:
        raise RequestError(
            f"product must be one of: {', '.join(sorted(PRODUCTS))}", reason="bad_product"
        )
    return product


async def segment_sizes(request: web.Request) -> web.Response:
    """``GET .../segments/sizes``: twins per (model, segment) at each step of the range."""
    brand = path_brand(request)
    product = query_product(request)
    model = query_text(request, "model", MAX_MODEL_REF)
    start, end = time_range_ns(request)
    step = request.query.get("step", DEFAULT_STEP)
    try:
        step_ms = parse_duration_ms(step)
    except ValueError as exc:
        raise RequestError(str(exc), reason="bad_step") from None
    steps = -(-(end - start) // (step_ms * 1_000_000))
    if steps > MAX_STEPS:
        need_ms = -(-(end - start) // MAX_STEPS) // 1_000_000 + 1
        raise RequestError(
            f"step={step} over {(end - start) // 1_000_000} ms makes {steps} steps; at most "
            f"{MAX_STEPS} per request: use step={need_ms}ms or larger, or a shorter range",
            reason="too_many_steps",
        )
    try:
        sizes = await request.app[READER].segment_sizes(
            brand, product, start, end, step_ms * 1_000_000, model
        )
    except OverflowError as exc:
        raise RequestError(str(exc), reason="too_many_points") from None
    return web.json_response(
        {
            "brand": brand,
            "product": product,
            "model": model,
            "step": step,
            "times_ms": sizes.times_ms,
            "totals": sizes.totals,
            "series": sizes.series,
        }
    )


async def segment_migration(request: web.Request) -> web.Response:
    """``GET .../segments/migration``: who moved from which segment to which."""
    brand = path_brand(request)
    product = query_product(request)
    now_ms = request.app[CLOCK].now_ms()
    to_ns = query_time_ns(request, "to", now_ms)
    from_ns = query_time_ns(request, "from", max(0, to_ns // 1_000_000 - DEFAULT_RANGE_MS))
    if from_ns >= to_ns:
        raise RequestError("from must be before to", reason="bad_range")
    body = await request.app[READER].segment_migration(brand, product, from_ns, to_ns)
    return web.json_response(
        {
            "brand": brand,
            "product": product,
            "from_ms": from_ns // 1_000_000,
            "to_ms": to_ns // 1_000_000,
            **body,
        }
    )


async def segment_profile(request: web.Request) -> web.Response:
    """``GET .../segments/profile``: per model version and segment, size and the features
    that set it apart from the population (cloud_hub.store._segment_profile)."""
    brand = path_brand(request)
    product = query_product(request)
    model = query_text(request, "model", MAX_MODEL_REF)
    top = query_int(request, "top", DEFAULT_TOP, 1, MAX_TOP)
    profiles = request.app[PROFILES]
    if profiles is None:
        raise RequestError(
            "this hub instance does not keep the twin query index (index.enabled = false): "
            "segment profiles are not served; ask an instance that keeps it",
            reason="index_disabled",
            status=503,
        )
    models = await asyncio.to_thread(profiles.profile, brand, product, model, top)
    return web.json_response(
        {
            "brand": brand,
            "product": product,
            "min_smd": MIN_SMD,
            "min_twins": MIN_TWINS,
            "models": models,
        }
    )


async def segment_share_alerts(request: web.Request) -> web.Response:
    """``GET .../segments/alerts``: segments whose share of their model's population at
    ``at`` moved beyond the normal variation of the ``baseline`` days before it."""
    brand = path_brand(request)
    product = query_product(request)
    model = query_text(request, "model", MAX_MODEL_REF)
    now_ms = request.app[CLOCK].now_ms()
    at_ns = query_time_ns(request, "at", now_ms)
    baseline = query_int(request, "baseline", DEFAULT_BASELINE_DAYS, 3, MAX_BASELINE_DAYS)
    k = query_int(request, "k", 3, 2, 10)
    day_ns = _DAY_MS * 1_000_000
    if at_ns < baseline * day_ns:
        raise RequestError(
            f"at must leave {baseline} days of baseline after 1970", reason="bad_range"
        )
    try:
        sizes = await request.app[READER].segment_sizes(
            brand, product, at_ns - baseline * day_ns, at_ns + 1, day_ns, model
        )
    except OverflowError as exc:
        raise RequestError(str(exc), reason="too_many_points") from None
    rule = ShareRule(k=k)
    segments = share_alerts(sizes, rule)
    alerts = [s for s in segments if s["alert"]]
    for s in alerts:
        log.warning(
            "segment share alert: brand %s product %s model %s segment %s: %s",
            brand, product, s["model"], s["segment"], s["why"],
        )  # fmt: skip
    return web.json_response(
        {
            "brand": brand,
            "product": product,
            "model": model,
            "at_ms": at_ns // 1_000_000,
            "baseline_days": baseline,
            "rule": {"k": rule.k, "min_twins": rule.min_twins, "min_shift": rule.min_shift},
            "alerts": len(alerts),
            "segments": segments,
        }
    )
