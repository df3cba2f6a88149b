"""OpenAPI: twins, their history and consent, devices and segment changes (scope read)."""

from __future__ import annotations

from typing import Final

from cloud_hub.api._params import DEFAULT_RANGE_MS, MAX_TIME_MS
from cloud_hub.api._twin_query import MAX_WHERE
from cloud_hub.api._twins import COUNT_CAP, MAX_FIELDS
from cloud_hub.store import DEFAULT_PAGE, MAX_BUCKETS, MAX_CHANGES, MAX_PAGE
from protocol import FIELDS, OPTIONAL_PURPOSES, PRODUCTS

from ._schema import (
    FIELD_VALUE,
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

__all__ = ["BRAND", "OPERATIONS", "PRODUCT", "SCHEMAS", "TWIN"]

_DAYS = DEFAULT_RANGE_MS // 86_400_000
BRAND: Final = Param(
    name="brand",
    where="path",
    schema=string(pattern="^[a-z][a-z0-9-]{0,31}$"),
    description="the brand (tenant); the API key must be this brand's",
    example="acme",
)
TWIN: Final = Param(
    name="twin",
    where="path",
    schema=string(pattern="^[0-9]{1,6}-[0-9a-f]{32}$"),
    description="a twin id: <key epoch>-<32 hex>, the pseudonym devices compute",
    example="1-0123456789abcdef0123456789abcdef",
)
PRODUCT: Final = string(enum=sorted(PRODUCTS))


def _time(name: str, what: str) -> Param:
    return Param(
        name=name,
        where="query",
        schema=integer("Unix milliseconds", minimum=0, maximum=MAX_TIME_MS),
        description=what,
    )


_START = _time("start", f"range start, inclusive (default: {_DAYS} days before now)")
_END = _time("end", "range end, exclusive (default: now)")

SCHEMAS: Final[dict[str, Schema]] = {
    "TwinPage": obj(
        {
            "brand": string(),
            "twins": array(string(), "the twin ids of this page, in the page's order"),
        },
        {
            "items": array(
                ref("TwinRow"), "the same twins with what the index holds (with the index)"
            ),
            "count": integer(
                f"twins matching `where` over all pages, at most {COUNT_CAP:,}", minimum=0
            ),
            "count_exact": boolean("false: more than `count` twins match"),
            "next": string("the URL of the next page; absent on the last one"),
        },
    ),
    "TwinRow": obj(
        {
            "twin": string(),
            "first_seen_ms": MS,
            "last_seen_ms": MS,
            "churn_risk": nullable(number("the highest of its products' churn risks")),
            "products": array(string(enum=list(PRODUCTS))),
            "devices": array(string(), "devices whose values make up its current state"),
            "segments": mapping(integer(), "product -> segment number"),
            "tags": array(string(), "behaviour tags that are true for it"),
            "fields": mapping(FIELD_VALUE, "the values of the fields asked in `fields`"),
        }
    ),
    "FieldValue": obj(
        {
            "value": FIELD_VALUE,
            "updated_ms": MS,
            "device": string("the device whose value won the merge"),
        }
    ),
    "Twin": obj(
        {
            "brand": string(),
            "twin": string(),
            "fields": mapping(ref("FieldValue"), "merged current value per field"),
            "devices": array(string(), "devices that contributed a field"),
            "scores": obj(
                {},
                {
                    "churn_risk": obj(
                        {
                            "value": number(minimum=0, maximum=1),
                            "product": PRODUCT,
                            "model": nullable(string("name@version")),
                            "updated_ms": MS,
                        },
                        description="the highest of the products' own churn risks",
                    )
                },
                "customer-level scores ({} until a device has scored the customer)",
            ),
        }
    ),
    "HistoryPoint": obj(
        {
            "time_ms": MS,
            "hlc": integer("the packed hybrid logical clock (orders ops in one ms)"),
            "device": string(),
            "value": FIELD_VALUE,
        },
        description="one stored op (raw points, without every=)",
    ),
    "HistoryBucket": obj(
        {
            "time_ms": MS,
            "value": FIELD_VALUE,
            "devices": integer("how many devices' values the bucket holds", minimum=0),
        },
        description="one bucket (with every=)",
    ),
    "HistoryPage": obj(
        {
            "brand": string(),
            "twin": string(),
            "field": string(),
            "every": {"type": "null"},
            "points": array(ref("HistoryPoint")),
        },
        {"next": string("the URL of the next page; absent on the last one")},
        "raw points, a page at a time (without every=)",
    ),
    "HistoryBuckets": obj(
        {
            "brand": string(),
            "twin": string(),
            "field": string(),
            "every": string(),
            "points": array(ref("HistoryBucket")),
        },
        description="one point per bucket (with every=)",
    ),
    "Consent": obj(
        {
            "brand": string(),
            "twin": string(),
            "current": mapping(
                obj(
                    {
                        "granted": boolean(),
                        "since_ms": MS,
                        "by": string("device or hub"),
                        "notice": string(),
                    }
                ),
                "the current choice per optional purpose",
                propertyNames={"enum": list(OPTIONAL_PURPOSES)},
            ),
            "default": string(),
            "ledger": array(
                # Entries as devices reported them: a column per purpose they named.
                mapping(
                    {"type": ["string", "number", "boolean", "null"]},
                    required=["time_ms", "actor", "notice"],
                ),
                "consent changes, oldest first",
            ),
        }
    ),
    "Device": obj(
        {
            "device": string(),
            "product": PRODUCT,
            "revoked": boolean(),
            "online": boolean(),
            "last_seen_ms": nullable(MS),
            "last_seq": nullable(integer()),
            "skew_ms": nullable(integer()),
            "outbox_depth": nullable(integer()),
            "models": array(string("name@version"), "models serving on the device"),
            "model_failures": mapping(string(), "last refusal per model name"),
        }
    ),
    "Devices": obj({"brand": string(), "devices": array(ref("Device"))}),
    "SegmentChange": obj(
        {
            "twin": string(),
            "time_ms": MS,
            "device": string(),
            "from": nullable(integer("the segment before (null for a first one)")),
            "to": integer(),
            "model": nullable(string("name@version")),
        }
    ),
    "SegmentChanges": obj(
        {
            "brand": string(),
            "product": PRODUCT,
            "changes": array(ref("SegmentChange"), "oldest first"),
        }
    ),
}

_PAGE_LIMIT = "points per page (raw points only)"
OPERATIONS: Final = (
    Operation(
        method="GET",
        path="/v1/brands/{brand}/twins",
        operation_id="list_twins",
        summary="Find twins by what they hold now, sorted, a page at a time",
        tag="twins",
        scope="read",
        description="docs/brand-api.md, 'Finding twins': the filter language and the "
        "order; `where`, `sort` and `fields` need the twin query index (503 "
        "`index_disabled` on an instance without it).",
        params=(
            BRAND,
            Param(
                name="where",
                where="query",
                schema=string(maxLength=MAX_WHERE),
                description="a filter: conditions joined with and/or/not and parentheses",
            ),
            Param(
                name="sort",
                where="query",
                schema=string(maxLength=100),
                description="twin, last_seen, first_seen, churn_risk or a twin field; "
                "'-' in front for descending",
            ),
            Param(
                name="fields",
                where="query",
                schema=string(maxLength=4000),
                description=f"up to {MAX_FIELDS} twin fields, comma-separated, whose "
                "values each item carries",
            ),
            Param(
                name="limit",
                where="query",
                schema=integer(minimum=1, maximum=10_000, default=100),
                description="twins per page",
            ),
            Param(
                name="after",
                where="query",
                schema=string(maxLength=1000),
                description="where the page starts: from the previous answer's `next` "
                "(a twin id without `sort`, an opaque cursor with one)",
            ),
        ),
        answer=ref("TwinPage"),
        answer_text="the matching twins; `next` when more follow",
        errors={
            400: ("bad_brand", "bad_where", "bad_sort", "bad_fields", "bad_limit", "bad_after"),
            503: ("index_disabled",),
        },
        store=True,
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/twins/{twin}",
        operation_id="get_twin",
        summary="A twin's merged current state and scores",
        tag="twins",
        scope="read",
        params=(BRAND, TWIN),
        answer=ref("Twin"),
        errors={400: ("bad_brand", "bad_twin"), 404: ("twin_not_found",)},
        store=True,
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/twins/{twin}/history",
        operation_id="get_twin_history",
        summary="A field's history: raw points in pages, or buckets with every=",
        tag="twins",
        scope="read",
        description=(
            f"Without `every`: raw points, `limit` (default {DEFAULT_PAGE}, at most "
            f"{MAX_PAGE}) a page, `next` while more remain. With `every`: one point per "
            f"bucket, at most {MAX_BUCKETS} buckets (LWW for lww fields, the sum over "
            "devices of their last cumulative value for counters)."
        ),
        params=(
            BRAND,
            TWIN,
            Param(
                name="field",
                where="query",
                schema=string(enum=sorted(FIELDS)),
                description="the twin field",
                required=True,
                example="coffee.brews_total",
            ),
            _START,
            _END,
            Param(
                name="every",
                where="query",
                schema=string(pattern="^[0-9]{1,12}(ms|s|m|h|d)$"),
                description="bucket length: 500ms, 30s, 15m, 1h, 7d (at most 3650d)",
            ),
            Param(
                name="limit",
                where="query",
                schema=integer(minimum=1, maximum=MAX_PAGE, default=DEFAULT_PAGE),
                description=_PAGE_LIMIT,
            ),
            Param(
                name="after",
                where="query",
                schema=string(maxLength=100),
                description="the cursor of the previous page (follow `next`)",
            ),
        ),
        answer={"oneOf": [ref("HistoryPage"), ref("HistoryBuckets")]},
        errors={
            400: (
                "bad_brand",
                "bad_twin",
                "bad_field",
                "bad_start",
                "bad_end",
                "bad_range",
                "bad_every",
                "bad_limit",
                "bad_after",
                "too_many_buckets",
                "too_many_points",
            )
        },
        store=True,
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/twins/{twin}/consent",
        operation_id="get_twin_consent",
        summary="A twin's consent: the current choice per purpose and the ledger",
        tag="twins",
        scope="read",
        params=(BRAND, TWIN),
        answer=ref("Consent"),
        errors={400: ("bad_twin",)},
        store=True,
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/devices",
        operation_id="list_devices",
        summary="The brand's devices: online, last seen, seq, skew, models",
        tag="fleet",
        scope="read",
        params=(BRAND,),
        answer=ref("Devices"),
        errors={400: ("bad_brand",)},
        store=True,
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/segments/changes",
        operation_id="list_segment_changes",
        summary="Segment changes of a product's twins in a time range",
        tag="segments",
        scope="read",
        params=(
            BRAND,
            Param(
                name="product",
                where="query",
                schema=PRODUCT,
                description="segments are per product",
                required=True,
                example="coffee",
            ),
            _START,
            _END,
            Param(
                name="limit",
                where="query",
                schema=integer(minimum=1, maximum=MAX_CHANGES, default=MAX_CHANGES),
                description="more changes than this in the range: 400 too_many_changes",
            ),
        ),
        answer=ref("SegmentChanges"),
        errors={
            400: (
                "bad_brand",
                "bad_product",
                "bad_start",
                "bad_end",
                "bad_range",
                "bad_limit",
                "too_many_changes",
            )
        },
        store=True,
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/segments/changes/stream",
        operation_id="stream_segment_changes",
        summary="Segment changes live, as Server-Sent Events",
        tag="segments",
        scope="read",
        description=(
            "`event: segment_change`, `id:` = its `time_ms`, `data:` a SegmentChange "
            "(#/components/schemas/SegmentChange); a keepalive comment every 15 s; "
            '`event: overflow` with `{"dropped": n}` when the client was too slow (re-query '
            "the range). `since` or a `Last-Event-ID` header replays the changes from then "
            "first. At least once: dedupe on (twin, time_ms)."
        ),
        params=(
            BRAND,
            Param(
                name="product",
                where="query",
                schema=PRODUCT,
                description="segments are per product",
                required=True,
                example="coffee",
            ),
            _time("since", "replay the changes from this time first"),
            Param(
                name="Last-Event-ID",
                where="header",
                schema=string(pattern="^[0-9]{1,19}$"),
                description="the id of the last event received (as `since`)",
            ),
        ),
        answer=None,
        answer_type="text/event-stream",
        answer_text="the event stream",
        errors={400: ("bad_brand", "bad_product", "bad_since", "too_many_changes")},
        store=True,
    ),
)
