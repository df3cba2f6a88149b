"""OpenAPI: API keys and the audit log (scope admin).

The key's schema is generated from :class:`cloud_hub.api.ApiKey`, whose ``summary()`` is
what these routes answer.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import TypeAdapter

from cloud_hub.api._auth import SCOPES, ApiKey

from ._schema import MS, Operation, Param, Schema, array, integer, obj, ref, string
from ._twins import BRAND

__all__ = ["OPERATIONS", "SCHEMAS"]

_SCOPE: Final = string(enum=list(SCOPES))


def _api_key() -> Schema:
    schema: dict[str, Any] = TypeAdapter(ApiKey).json_schema(mode="serialization")
    schema["properties"]["scopes"]["items"] = _SCOPE
    return schema


SCHEMAS: Final[dict[str, Schema]] = {
    "ApiKey": _api_key(),
    "NewApiKey": obj(
        {
            "name": string("who holds it (1-64 printable characters)", minLength=1, maxLength=64),
            "scopes": array(_SCOPE, minItems=1, uniqueItems=True),
        }
    ),
    "CreatedApiKey": obj(
        {
            **_api_key()["properties"],
            "token": string("the key: shown this once, never stored (tsk_<id>_<secret>)"),
        }
    ),
    "ApiKeys": obj({"brand": string(), "keys": array(ref("ApiKey"), "revoked ones too")}),
    "AuditLog": obj(
        {
            "brand": string(),
            "audit": array(
                obj(
                    {
                        "ts_ms": MS,
                        "key_id": string(),
                        "method": string(),
                        "route": string("the route template, never the concrete path"),
                        "status": integer("the status the request was answered with"),
                    }
                ),
                "newest first",
            ),
        }
    ),
}

_KEYS = "/v1/brands/{brand}/keys"
OPERATIONS: Final = (
    Operation(
        method="POST",
        path=_KEYS,
        operation_id="create_key",
        summary="Create an API key of the brand; the token is answered once",
        tag="keys",
        scope="admin",
        params=(BRAND,),
        body=ref("NewApiKey"),
        status=201,
        answer=ref("CreatedApiKey"),
        answer_text="the key and its token",
        errors={400: ("bad_json", "bad_key_request", "bad_scopes", "bad_name")},
    ),
    Operation(
        method="GET",
        path=_KEYS,
        operation_id="list_keys",
        summary="Every key of the brand (never a secret)",
        tag="keys",
        scope="admin",
        params=(BRAND,),
        answer=ref("ApiKeys"),
    ),
    Operation(
        method="DELETE",
        path=f"{_KEYS}/{{key_id}}",
        operation_id="revoke_key",
        summary="Revoke a key (every hub instance refuses it within 5 s)",
        tag="keys",
        scope="admin",
        params=(
            BRAND,
            Param(
                name="key_id",
                where="path",
                schema=string(pattern="^[0-9a-f]{12}$"),
                description="the key's id (tsk_<id>_...)",
                example="3f2a9c01b7de",
            ),
        ),
        answer=ref("ApiKey"),
        answer_text="the key, revoked",
        errors={404: ("unknown_key",)},
    ),
    Operation(
        method="GET",
        path="/v1/brands/{brand}/audit",
        operation_id="get_audit_log",
        summary="The newest audit rows: every change, every privacy or admin request",
        tag="keys",
        scope="admin",
        params=(
            BRAND,
            Param(
                name="limit",
                where="query",
                schema=integer(minimum=1, maximum=1000, default=100),
                description="rows",
            ),
        ),
        answer=ref("AuditLog"),
        errors={400: ("bad_limit",)},
    ),
)
