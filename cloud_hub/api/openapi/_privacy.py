"""OpenAPI: data-subject requests (scope privacy) and the brand's webhook (scope admin).

The customer identifier (``subject``) travels in request bodies only, never in a URL.
"""

from __future__ import annotations

from typing import Final

from protocol import OPTIONAL_PURPOSES, PURPOSES

from ._schema import (
    FIELD_VALUE,
    MS,
    Operation,
    Schema,
    array,
    integer,
    mapping,
    nullable,
    obj,
    ref,
    string,
)
from ._twins import BRAND

__all__ = ["OPERATIONS", "SCHEMAS"]

_SUBJECT: Final = string(
    "the customer identifier the brand knows (account id, e-mail): used to compute the "
    "twin ids, then forgotten (never stored, logged or audited)",
    minLength=1,
    maxLength=256,
)
_FIELDS: Final = array(string("a twin field"), maxItems=64)
_RECEIPT_COMMON: Final = {
    "request_id": string(),
    "kind": string(),
    "brand": string(),
    "twins": array(string(), "the customer's twin ids (one per key epoch)"),
    "received_ms": MS,
    "completed_ms": MS,
    "kid": string("the id of the hub key that signed the receipt"),
    "signature": string("Ed25519 over the canonical JSON of every other member (hex)"),
}


def _receipt(kind: str, what: str, **members: Schema) -> Schema:
    return obj(
        {**_RECEIPT_COMMON, "kind": string(enum=[kind]), **members},
        description=f"the signed receipt of {what}",
    )


SCHEMAS: Final[dict[str, Schema]] = {
    "Subject": obj({"subject": _SUBJECT}),
    "ConsentChange": obj(
        {
            "subject": _SUBJECT,
            "purposes": mapping(
                {"type": "boolean"},
                "granted or withdrawn, per optional purpose",
                propertyNames={"enum": list(OPTIONAL_PURPOSES)},
                minProperties=1,
            ),
            "notice": string("the version of the notice shown", minLength=1, maxLength=32),
        }
    ),
    "ConsentAccepted": obj(
        {
            "request_id": string(),
            "twins": array(string()),
            "purposes": mapping({"type": "boolean"}),
            "notice": string(),
        }
    ),
    "Rectification": obj(
        {"subject": _SUBJECT},
        {
            "set": mapping(FIELD_VALUE, "customer-asserted values of lww usage fields"),
            "suppress": _FIELDS,
            "restore": _FIELDS,
        },
        "at least one of set, suppress, restore; at most 64 fields, each named once",
    ),
    "ErasureReceipt": _receipt(
        "erasure", "an erasure", points_found=integer(minimum=0), points_left=integer(const=0)
    ),
    "ObjectionReceipt": _receipt(
        "objection",
        "an objection to profiling",
        purposes_withdrawn=array(string()),
        field_class_removed=string(enum=["profile"]),
        points_found=integer(minimum=0),
        points_left=integer(const=0),
    ),
    "RectificationReceipt": _receipt(
        "rectification",
        "a rectification",
        set=array(string(), "fields given a value"),
        suppressed=array(string()),
        restored=array(string()),
        points_removed=integer(minimum=0),
        points_left=integer(const=0),
    ),
    "TwinExport": obj(
        {
            "twin": string(),
            "epoch": integer(minimum=0),
            "fields": array(
                obj(
                    {
                        "field": string(),
                        "value": FIELD_VALUE,
                        "updated_ms": MS,
                        "source_device": string(),
                        "purpose": string(enum=list(PURPOSES)),
                        "class": string(
                            enum=["signal", "feature", "prediction", "model_ref", "tag", "tag_ref"]
                        ),
                        "unit": string(),
                    }
                )
            ),
            "predictions": array(
                obj(
                    {
                        "field": string(),
                        "value": FIELD_VALUE,
                        "model": nullable(FIELD_VALUE),
                        "explanation": string(),
                    }
                )
            ),
            "tags": array(
                obj(
                    {
                        "field": string(),
                        "tag": string(),
                        "product": string(),
                        "value": FIELD_VALUE,
                        "updated_ms": MS,
                        "catalog": nullable(string()),
                        "rule": nullable(string()),
                        "description": nullable(string()),
                    }
                ),
                "behaviour tags, each with the rule (and catalog version) that set it",
            ),
            "devices": array(string()),
            "stored_points": integer(minimum=0),
        }
    ),
    "AccessExport": obj(
        {
            "request_id": string(),
            "brand": string(),
            "generated_ms": MS,
            "twins": array(ref("TwinExport"), "empty for a customer the hub holds nothing of"),
            "purposes": mapping(string(), "what each purpose means"),
            "recipients": obj({"brand_backends": array(string()), "note": string()}),
            "retention": mapping(string(), "how long each kind of data is kept"),
            "restrictions": array(
                obj(
                    {
                        "twin": string(),
                        "kind": string(enum=["objection", "suppression"]),
                        "field": nullable(string()),
                        "since_ms": MS,
                        "request_id": string(),
                    }
                ),
                "objections and suppressions in force",
            ),
            "pseudonymization": string(),
        }
    ),
    "PrivacyRequest": obj(
        {
            "request_id": string(),
            "kind": string(enum=["access", "consent", "erasure", "objection", "rectification"]),
            "received_ms": MS,
            "deadline_ms": MS,
            "completed_ms": nullable(MS),
            "state": string(enum=["open", "done", "overdue"]),
            "receipt": nullable(
                mapping({}, "the signed receipt, or a summary of an access or consent request")
            ),
        }
    ),
    "PrivacyRequests": obj(
        {"brand": string(), "requests": array(ref("PrivacyRequest"), "newest first")}
    ),
    "WebhookUrl": obj({"url": string("where events are POSTed (https)", maxLength=2048)}),
    "WebhookRegistered": obj(
        {
            "brand": string(),
            "url": string(),
            "secret": string("the signing secret of the events: shown once"),
        }
    ),
    "Webhook": obj(
        {
            "brand": string(),
            "url": string(),
            "pending_events": integer("events waiting to be delivered", minimum=0),
        }
    ),
}

_SUBJECT_ERRORS: Final = ("bad_subject",)
_BASE = "/v1/brands/{brand}/privacy"


def _subject_op(
    suffix: str,
    operation_id: str,
    summary: str,
    answer: str,
    errors: dict[int, tuple[str, ...]],
    body: str = "Subject",
) -> Operation:
    return Operation(
        method="POST",
        path=f"{_BASE}/{suffix}",
        operation_id=operation_id,
        summary=summary,
        tag="privacy",
        scope="privacy",
        params=(BRAND,),
        body=ref(body),
        answer=ref(answer),
        errors=errors,
        store=True,
    )


OPERATIONS: Final = (
    _subject_op(
        "access",
        "request_access",
        "Access: everything held about one customer (Art. 15, 20)",
        "AccessExport",
        {400: _SUBJECT_ERRORS, 404: ("unknown_brand",)},
    ),
    Operation(
        method="POST",
        path=f"{_BASE}/consent",
        operation_id="change_consent",
        summary="Change a customer's consent on every device that knows them",
        tag="privacy",
        scope="privacy",
        params=(BRAND,),
        body=ref("ConsentChange"),
        status=202,
        answer=ref("ConsentAccepted"),
        answer_text="accepted: the devices apply it within seconds",
        errors={400: (*_SUBJECT_ERRORS, "bad_consent"), 404: ("unknown_brand",)},
    ),
    _subject_op(
        "erasure",
        "request_erasure",
        "Erasure: delete a customer's twins for good, with a signed receipt (Art. 17)",
        "ErasureReceipt",
        {400: _SUBJECT_ERRORS, 404: ("unknown_brand",), 503: ("erasure_incomplete",)},
    ),
    _subject_op(
        "objection",
        "request_objection",
        "Objection to profiling: profile fields deleted and no longer computed (Art. 21)",
        "ObjectionReceipt",
        {400: _SUBJECT_ERRORS, 404: ("unknown_brand",), 503: ("objection_incomplete",)},
    ),
    _subject_op(
        "rectification",
        "request_rectification",
        "Rectification: set, suppress or restore twin fields (Art. 16, 18)",
        "RectificationReceipt",
        {
            400: (*_SUBJECT_ERRORS, "bad_rectification"),
            404: ("unknown_brand",),
            409: ("field_suppressed",),
            503: ("rectification_incomplete",),
        },
        body="Rectification",
    ),
    Operation(
        method="GET",
        path=f"{_BASE}/requests",
        operation_id="list_privacy_requests",
        summary="Every data-subject request, its deadline, state and receipt",
        tag="privacy",
        scope="privacy",
        params=(BRAND,),
        answer=ref("PrivacyRequests"),
    ),
    Operation(
        method="PUT",
        path="/v1/brands/{brand}/webhook",
        operation_id="set_webhook",
        summary="Set where privacy events are POSTed; answers the signing secret once",
        tag="webhooks",
        scope="admin",
        params=(BRAND,),
        body=ref("WebhookUrl"),
        answer=ref("WebhookRegistered"),
        errors={400: ("bad_url", "url_refused")},
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/webhook",
        operation_id="get_webhook",
        summary="The webhook endpoint and how many events wait for it",
        tag="webhooks",
        scope="admin",
        params=(BRAND,),
        answer=ref("Webhook"),
        errors={404: ("no_webhook",)},
    ),
)
