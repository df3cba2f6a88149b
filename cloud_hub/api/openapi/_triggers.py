"""OpenAPI: trigger rules and their events (scope triggers; cloud_hub.api._triggers)."""

from __future__ import annotations

from typing import Final

from cloud_hub.triggers import MAX_RULE_BYTES, MAX_RULES, SEQ_MAX

from ._schema import (
    FIELD_VALUE,
    MS,
    Operation,
    Param,
    array,
    boolean,
    integer,
    nullable,
    number,
    obj,
    ref,
    string,
)
from ._twins import BRAND, PRODUCT

__all__ = ["OPERATIONS", "SCHEMAS"]

_BASE = "/v1/brands/{brand}/triggers"
_KINDS: Final = ["churn_risk", "segment_change", "tag", "anomaly"]
_RULE_MEMBERS: Final = {
    "product": PRODUCT,
    "threshold": number("churn_risk: the threshold crossed (0-1)", minimum=0, maximum=1),
    "direction": string("churn_risk: up (default) or down", enum=["up", "down"]),
    "tag": string("tag: the tag's name", pattern="^[a-z][a-z0-9_]{0,31}$"),
    "change": string("tag: gained (default) or lost", enum=["gained", "lost"]),
    "where": string("the twin query language: only twins matching it", maxLength=2000),
    "webhook": string("where this rule's events are POSTed, signed (optional)", maxLength=2048),
}
_SEQ: Final = integer("the event's position in the brand's log (the stream's id)", minimum=1)
_RULE_PARAM: Final = Param(
    name="rule",
    where="path",
    schema=string(pattern="^trg_[0-9a-f]{12}$"),
    description="a trigger rule's id",
    example="trg_0123456789ab",
)

SCHEMAS: Final = {
    "TriggerRuleIn": obj(
        {"name": string(minLength=1, maxLength=64), "kind": string(enum=_KINDS)},
        _RULE_MEMBERS,
        f"a trigger rule: at most {MAX_RULE_BYTES} bytes, {MAX_RULES} per brand",
    ),
    "TriggerRule": obj(
        {
            "rule_id": string(),
            "created_ms": MS,
            "name": string(),
            "kind": string(enum=_KINDS),
            "direction": string(),
            "change": string(),
            "fields": array(string(), "the twin fields it watches"),
        },
        {k: v for k, v in _RULE_MEMBERS.items() if k not in ("direction", "change")},
    ),
    "TriggerRuleCreated": obj(
        {"brand": string(), "rule": ref("TriggerRule")},
        {"secret": string("the signing secret of its webhook: shown once")},
    ),
    "TriggerRuleOne": obj({"brand": string(), "rule": ref("TriggerRule")}),
    "TriggerRules": obj(
        {
            "brand": string(),
            "rules": array(ref("TriggerRule"), "oldest first"),
            "max_rules": integer(minimum=1),
        }
    ),
    "TriggerRuleDeleted": obj({"brand": string(), "rule_id": string(), "deleted": boolean()}),
    "TriggerEvent": obj(
        {
            "event_id": string("the same change seen twice has the same id: dedupe on it"),
            "event": string(enum=["trigger"]),
            "brand": string(),
            "rule_id": string(),
            "rule_name": string(),
            "kind": string(enum=_KINDS),
            "twin": string(),
            "field": string(),
            "product": string(),
            "from": nullable(FIELD_VALUE),
            "to": FIELD_VALUE,
            "hlc": integer("the change's hybrid logical clock (ms << 16 | counter)"),
            "changed_ms": MS,
            "seq": _SEQ,
        }
    ),
    "TriggerEvents": obj(
        {
            "brand": string(),
            "events": array(ref("TriggerEvent")),
            "pending_deliveries": integer("events waiting for their webhook", minimum=0),
        }
    ),
}

OPERATIONS: Final = (
    Operation(
        method="POST",
        path=_BASE,
        operation_id="create_trigger",
        summary="Register a trigger rule; answers its webhook's signing secret once",
        tag="triggers",
        scope="triggers",
        params=(BRAND,),
        body=ref("TriggerRuleIn"),
        status=201,
        answer=ref("TriggerRuleCreated"),
        errors={
            400: ("bad_brand", "bad_rule", "bad_where", "bad_url", "url_refused"),
            409: ("too_many_rules",),
            413: ("rule_too_large",),
        },
    ),
    Operation(
        method="GET",
        path=_BASE,
        operation_id="list_triggers",
        summary="Every trigger rule of the brand",
        tag="triggers",
        scope="triggers",
        params=(BRAND,),
        answer=ref("TriggerRules"),
        errors={400: ("bad_brand",)},
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/events",
        operation_id="list_trigger_events",
        summary="Trigger events: the newest, or those after a seq",
        tag="triggers",
        scope="triggers",
        params=(
            BRAND,
            Param(
                name="limit",
                where="query",
                schema=integer(minimum=1, maximum=500),
                description="at most this many (default 50)",
            ),
            Param(
                name="after",
                where="query",
                schema=integer(minimum=0, maximum=SEQ_MAX),
                description="the events after this seq, oldest first (without: newest first)",
            ),
        ),
        answer=ref("TriggerEvents"),
        errors={400: ("bad_brand", "bad_limit", "bad_after")},
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/events/stream",
        operation_id="stream_trigger_events",
        summary="Trigger events live, as Server-Sent Events, resumable",
        tag="triggers",
        scope="triggers",
        description=(
            "`event: trigger`, `id:` = its `seq`, `data:` a TriggerEvent "
            "(#/components/schemas/TriggerEvent); a keepalive comment every 15 s. A "
            "`Last-Event-ID` header (or `after`) resumes after that seq; an `event: gap` "
            "first says when the log's retention removed events after it. A client that "
            "reads nothing for 10 s is dropped (reconnect with Last-Event-ID). At least "
            "once: dedupe on `event_id`."
        ),
        params=(
            BRAND,
            Param(
                name="after",
                where="query",
                schema=integer(minimum=0, maximum=SEQ_MAX),
                description="resume after this seq (as Last-Event-ID does)",
            ),
            Param(
                name="Last-Event-ID",
                where="header",
                schema=string(pattern="^[0-9]{1,19}$"),
                description="the last seq received: the stream resumes after it",
            ),
        ),
        answer=None,
        answer_type="text/event-stream",
        answer_text="the event stream",
        errors={400: ("bad_brand", "bad_after")},
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/{{rule}}",
        operation_id="get_trigger",
        summary="One trigger rule",
        tag="triggers",
        scope="triggers",
        params=(BRAND, _RULE_PARAM),
        answer=ref("TriggerRuleOne"),
        errors={400: ("bad_brand",), 404: ("unknown_rule",)},
    ),
    Operation(
        method="DELETE",
        path=f"{_BASE}/{{rule}}",
        operation_id="delete_trigger",
        summary="Remove a trigger rule and its undelivered events",
        tag="triggers",
        scope="triggers",
        params=(BRAND, _RULE_PARAM),
        answer=ref("TriggerRuleDeleted"),
        errors={400: ("bad_brand",), 404: ("unknown_rule",)},
    ),
)
