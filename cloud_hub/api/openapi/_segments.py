"""OpenAPI: segment intelligence: sizes over time, migration, profiles, share alerts (read)."""

from __future__ import annotations

from typing import Final

from cloud_hub.api._params import DEFAULT_RANGE_MS, MAX_TIME_MS
from cloud_hub.api._segments import (
    DEFAULT_BASELINE_DAYS,
    DEFAULT_STEP,
    DEFAULT_TOP,
    MAX_BASELINE_DAYS,
    MAX_MODEL_REF,
)
from cloud_hub.store import MAX_STEPS, MAX_TOP, MIN_SMD, MIN_TWINS

from ._schema import (
    MS,
    Operation,
    Param,
    Schema,
    array,
    boolean,
    integer,
    mapping,
    nullable,
    number,
    obj,
    ref,
    string,
)
from ._twins import BRAND, PRODUCT

__all__ = ["OPERATIONS", "SCHEMAS"]

_DAYS = DEFAULT_RANGE_MS // 86_400_000
_PRODUCT: Final = Param(
    name="product",
    where="query",
    schema=PRODUCT,
    description="segments are per product",
    required=True,
    example="coffee",
)


def _time(name: str, what: str) -> Param:
    return Param(
        name=name,
        where="query",
        schema=integer("Unix milliseconds", minimum=0, maximum=MAX_TIME_MS),
        description=what,
    )


_COUNT: Final = integer(minimum=0)
SCHEMAS: Final[dict[str, Schema]] = {
    "SegmentSizes": obj(
        {
            "brand": string(),
            "product": PRODUCT,
            "model": nullable(string("the model ref asked for (null: every model)")),
            "step": string("the step asked for, e.g. 1d"),
            "times_ms": array(MS, "the instants counted at: start, start + step, ... < end"),
            "totals": array(_COUNT, "twins holding a segment at each instant"),
            "series": array(ref("SegmentSizeSeries"), "by model, then segment"),
        }
    ),
    "SegmentSizeSeries": obj(
        {
            "model": nullable(string("name@version of the model that scored it")),
            "segment": integer(),
            "twins": array(_COUNT, "twins in the segment at each of times_ms"),
        }
    ),
    "SegmentMigration": obj(
        {
            "brand": string(),
            "product": PRODUCT,
            "from_ms": MS,
            "to_ms": MS,
            "cells": array(ref("SegmentMigrationCell"), "every (from, to) pair with twins"),
            "sizes_from": mapping(_COUNT, "segment -> twins at from"),
            "sizes_to": mapping(_COUNT, "segment -> twins at to"),
            "entered": integer("twins with a segment at to but none at from", minimum=0),
            "left": integer("twins with a segment at from but none at to", minimum=0),
            "moved": integer("twins in another segment at to than at from", minimum=0),
            "stayed": integer("twins in the same segment at both", minimum=0),
        }
    ),
    "SegmentMigrationCell": obj(
        {
            "from": nullable(integer("the segment at from (null: not in the population)")),
            "to": nullable(integer("the segment at to (null: left the population)")),
            "twins": integer(minimum=1),
        }
    ),
    "SegmentProfiles": obj(
        {
            "brand": string(),
            "product": PRODUCT,
            "min_smd": number("the smallest standardised mean difference listed"),
            "min_twins": integer("the smallest segment that gets a profile", minimum=1),
            "models": array(ref("SegmentModelProfile"), "one per model version"),
        }
    ),
    "SegmentModelProfile": obj(
        {
            "model": nullable(string("name@version (null: twins without a model ref)")),
            "twins": integer("twins this model put in a segment: the population", minimum=0),
            "segments": array(ref("SegmentProfile")),
        }
    ),
    "SegmentProfile": obj(
        {
            "segment": integer(),
            "twins": integer(minimum=1),
            "share": number("of the model's population", minimum=0, maximum=1),
            "features": array(ref("SegmentFeature"), "largest |smd| first"),
            "summary": string("the segment in one sentence"),
        }
    ),
    "SegmentFeature": obj(
        {
            "feature": string("the feature's name (docs/models.md)"),
            "mean": number("the segment's mean"),
            "population_mean": number("the population's mean"),
            "smd": number("(mean - population mean) / population spread (>= the floor)"),
            "ratio": nullable(number("mean / population mean (null: a signed feature)")),
            "text": string("the difference in words"),
        }
    ),
    "SegmentShareAlerts": obj(
        {
            "brand": string(),
            "product": PRODUCT,
            "model": nullable(string("the model ref asked for (null: every model)")),
            "at_ms": MS,
            "baseline_days": integer(minimum=3),
            "rule": obj(
                {
                    "k": integer("alert beyond this many sigma"),
                    "min_twins": integer("smaller segments are not judged"),
                    "min_shift": number("smaller moves of the share do not alert"),
                }
            ),
            "alerts": integer("segments that alert", minimum=0),
            "segments": array(ref("SegmentShare"), "by model, then segment"),
        }
    ),
    "SegmentShare": obj(
        {
            "model": nullable(string("name@version")),
            "segment": integer(),
            "twins": integer(minimum=0),
            "share": number("of the model's twins at `at`", minimum=0, maximum=1),
            "baseline_share": nullable(number("the mean daily share over the baseline")),
            "sigma": nullable(number("its normal variation (see the description)")),
            "z": nullable(number("(share - baseline_share) / sigma")),
            "alert": boolean(),
            "why": string("the verdict in words"),
        }
    ),
}

OPERATIONS: Final = (
    Operation(
        method="GET",
        path="/v1/brands/{brand}/segments/sizes",
        operation_id="get_segment_sizes",
        summary="Segment sizes over time, per model version",
        tag="segments",
        scope="read",
        description=(
            "Point in time: a twin counts in the segment it was in at each instant (its "
            "latest segment at or before it), under the model that scored it; erased twins "
            f"are gone. At most {MAX_STEPS} instants (400 `too_many_steps` says the step "
            "that fits) and the stored-point cap (400 `too_many_points`)."
        ),
        params=(
            BRAND,
            _PRODUCT,
            Param(
                name="model",
                where="query",
                schema=string(maxLength=MAX_MODEL_REF),
                description="only the segments this model (name@version) scored",
                example="segment-coffee@1",
            ),
            _time("start", f"the first instant (default: {_DAYS} days before now)"),
            _time("end", "range end, exclusive (default: now)"),
            Param(
                name="step",
                where="query",
                schema=string(pattern="^[0-9]{1,12}(ms|s|m|h|d)$", default=DEFAULT_STEP),
                description="time between instants",
                example="1d",
            ),
        ),
        answer=ref("SegmentSizes"),
        errors={
            400: (
                "bad_brand",
                "bad_product",
                "bad_model",
                "bad_start",
                "bad_end",
                "bad_range",
                "bad_step",
                "too_many_steps",
                "too_many_points",
            )
        },
        store=True,
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/segments/migration",
        operation_id="get_segment_migration",
        summary="Who moved between which segments between two instants",
        tag="segments",
        scope="read",
        description="Each twin's segment at `from` against its segment at `to` (point in "
        "time, as the sizes); `from` null in a cell is a twin that entered, `to` null one "
        "that left.",
        params=(
            BRAND,
            _PRODUCT,
            _time("from", f"the first instant (default: {_DAYS} days before to)"),
            _time("to", "the second instant (default: now)"),
        ),
        answer=ref("SegmentMigration"),
        errors={400: ("bad_brand", "bad_product", "bad_from", "bad_to", "bad_range")},
        store=True,
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/segments/profile",
        operation_id="get_segment_profile",
        summary="Each segment's size and the features that set it apart, in words",
        tag="segments",
        scope="read",
        description=(
            "From the twin query index (what the twins hold now), per model version: "
            "standardised mean difference of each feature against the model's population "
            f"(|smd| >= {MIN_SMD} listed, largest first); segments under {MIN_TWINS} twins "
            "get their size only. 503 `index_disabled` on an instance without the index."
        ),
        params=(
            BRAND,
            _PRODUCT,
            Param(
                name="model",
                where="query",
                schema=string(maxLength=MAX_MODEL_REF),
                description="only this model version's segments",
                example="segment-coffee@1",
            ),
            Param(
                name="top",
                where="query",
                schema=integer(minimum=1, maximum=MAX_TOP, default=DEFAULT_TOP),
                description="features listed per segment at most",
            ),
        ),
        answer=ref("SegmentProfiles"),
        errors={
            400: ("bad_brand", "bad_product", "bad_model", "bad_top"),
            503: ("index_disabled",),
        },
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/segments/alerts",
        operation_id="get_segment_share_alerts",
        summary="Segments whose share moved beyond normal variation",
        tag="segments",
        scope="read",
        description=(
            "Each segment's share of its model's twins at `at` against its daily shares "
            "over the `baseline` days before: z = (share - mean) / sigma, sigma = "
            "sqrt(sd of the baseline shares² + mean (1 - mean) / twins now). Alerts when "
            "|z| > k, the share moved at least `rule.min_shift` and the segment has at least "
            "`rule.min_twins` twins (docs/hub.md, 'Segment intelligence'). Logs each alert "
            "(the hub's scheduled check also sets `twinsync_hub_segment_share_alerts`)."
        ),
        params=(
            BRAND,
            _PRODUCT,
            Param(
                name="model",
                where="query",
                schema=string(maxLength=MAX_MODEL_REF),
                description="only this model version's segments",
                example="segment-coffee@1",
            ),
            _time("at", "the instant checked (default: now)"),
            Param(
                name="baseline",
                where="query",
                schema=integer(minimum=3, maximum=MAX_BASELINE_DAYS, default=DEFAULT_BASELINE_DAYS),
                description="days of normal variation before `at`",
            ),
            Param(
                name="k",
                where="query",
                schema=integer(minimum=2, maximum=10, default=3),
                description="alert beyond this many sigma",
            ),
        ),
        answer=ref("SegmentShareAlerts"),
        errors={
            400: (
                "bad_brand",
                "bad_product",
                "bad_model",
                "bad_at",
                "bad_baseline",
                "bad_k",
                "bad_range",
                "too_many_points",
            )
        },
        store=True,
    ),
)
