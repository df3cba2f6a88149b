"""What the request builders share: :data:`ROUTES` (operation id -> method and route),
the idempotent operations, the time helpers and :class:`CallsCore`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from pydantic import BaseModel

from ._errors import ClientConfigError
from ._wire import Call, Request, json_body, json_result, query, quote

__all__ = ["IDEMPOTENT", "ROUTES", "CallsCore", "M", "Time", "to_every", "to_ms"]

M = TypeVar("M", bound=BaseModel)
#: a time: Unix milliseconds, or a timezone-aware datetime
Time = int | datetime

_BRAND = "/v1/brands/{brand}"
#: operation id -> (method, route template), as the hub's OpenAPI document names them
ROUTES: Final[dict[str, tuple[str, str]]] = {
    "list_twins": ("GET", f"{_BRAND}/twins"),
    "get_twin": ("GET", f"{_BRAND}/twins/{{twin}}"),
    "get_twin_history": ("GET", f"{_BRAND}/twins/{{twin}}/history"),
    "get_twin_consent": ("GET", f"{_BRAND}/twins/{{twin}}/consent"),
    "list_devices": ("GET", f"{_BRAND}/devices"),
    "list_segment_changes": ("GET", f"{_BRAND}/segments/changes"),
    "stream_segment_changes": ("GET", f"{_BRAND}/segments/changes/stream"),
    "get_segment_sizes": ("GET", f"{_BRAND}/segments/sizes"),
    "get_segment_migration": ("GET", f"{_BRAND}/segments/migration"),
    "get_segment_profile": ("GET", f"{_BRAND}/segments/profile"),
    "get_segment_share_alerts": ("GET", f"{_BRAND}/segments/alerts"),
    "request_access": ("POST", f"{_BRAND}/privacy/access"),
    "change_consent": ("POST", f"{_BRAND}/privacy/consent"),
    "request_erasure": ("POST", f"{_BRAND}/privacy/erasure"),
    "request_objection": ("POST", f"{_BRAND}/privacy/objection"),
    "request_rectification": ("POST", f"{_BRAND}/privacy/rectification"),
    "list_privacy_requests": ("GET", f"{_BRAND}/privacy/requests"),
    "set_webhook": ("PUT", f"{_BRAND}/webhook"),
    "get_webhook": ("GET", f"{_BRAND}/webhook"),
    "upload_model": ("POST", f"{_BRAND}/models"),
    "list_models": ("GET", f"{_BRAND}/models"),
    "download_model": ("GET", f"{_BRAND}/models/{{name}}/{{version}}/model.onnx"),
    "put_cohort": ("PUT", f"{_BRAND}/cohorts/{{cohort}}"),
    "get_cohort": ("GET", f"{_BRAND}/cohorts/{{cohort}}"),
    "create_rollout": ("POST", f"{_BRAND}/rollouts"),
    "list_rollouts": ("GET", f"{_BRAND}/rollouts"),
    "get_rollout": ("GET", f"{_BRAND}/rollouts/{{id}}"),
    "create_key": ("POST", f"{_BRAND}/keys"),
    "list_keys": ("GET", f"{_BRAND}/keys"),
    "revoke_key": ("DELETE", f"{_BRAND}/keys/{{key_id}}"),
    "get_audit_log": ("GET", f"{_BRAND}/audit"),
    "create_trigger": ("POST", f"{_BRAND}/triggers"),
    "list_triggers": ("GET", f"{_BRAND}/triggers"),
    "list_trigger_events": ("GET", f"{_BRAND}/triggers/events"),
    "stream_trigger_events": ("GET", f"{_BRAND}/triggers/events/stream"),
    "get_trigger": ("GET", f"{_BRAND}/triggers/{{rule}}"),
    "delete_trigger": ("DELETE", f"{_BRAND}/triggers/{{rule}}"),
    "simulate_campaign": ("POST", f"{_BRAND}/lab/simulate"),
    "create_experiment": ("POST", f"{_BRAND}/lab/experiments"),
    "list_experiments": ("GET", f"{_BRAND}/lab/experiments"),
    "get_experiment": ("GET", f"{_BRAND}/lab/experiments/{{experiment}}"),
    "stop_experiment": ("POST", f"{_BRAND}/lab/experiments/{{experiment}}/stop"),
    "delete_experiment": ("DELETE", f"{_BRAND}/lab/experiments/{{experiment}}"),
}
#: changes that are safe to repeat (a PUT of the same members, revoking a revoked key);
#: reads are too. set_webhook is not: each call makes a new signing secret.
IDEMPOTENT: Final = frozenset({"put_cohort", "revoke_key", "simulate_campaign", "stop_experiment"})


def to_ms(value: Time | None, name: str) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if value.tzinfo is None:
        raise ClientConfigError(f"{name}: give a timezone-aware datetime (or Unix ms)")
    return int(value.timestamp() * 1000)


def to_every(value: str | timedelta) -> str:
    if isinstance(value, str):
        return value
    ms = value // timedelta(milliseconds=1)
    return f"{ms}ms"


class CallsCore:
    """What every builder uses: the brand, a request of an operation, a JSON body's
    request and the next page of a paged answer (the builders are in ``_calls_<area>.py``)."""

    def __init__(self, brand: str) -> None:
        self.brand = brand

    def _request(
        self,
        operation: str,
        *,
        values: Mapping[str, object] | None = None,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
        last_event_id: str | None = None,
    ) -> Request:
        method, template = ROUTES[operation]
        named = {k: quote(str(v)) for k, v in (values or {}).items()}
        path = template.format(brand=quote(self.brand), **named) + query(params or {})
        return Request(
            operation=operation,
            method=method,
            path=path,
            body=body,
            content_type=content_type,
            idempotent=method == "GET" or operation in IDEMPOTENT,
            accept=accept,
            last_event_id=last_event_id,
        )

    def _json(self, operation: str, model: type[M], body: object, **kw: Any) -> Call[M]:
        request = self._request(
            operation, body=json_body(body), content_type="application/json", **kw
        )
        return Call(request, json_result(model))

    def follow(self, operation: str, next_url: str, model: type[M]) -> Call[M]:
        """The next page: the ``next`` URL of a page of ``operation`` (a path on the same
        hub; anything else is refused, so the key never goes elsewhere)."""
        method, template = ROUTES[operation]
        prefix = template.split("{brand}")[0] + quote(self.brand) + "/"
        if not next_url.startswith(prefix):
            raise ClientConfigError(f"{operation}: a next page outside {prefix}... is refused")
        return Call(Request(operation, method, next_url, idempotent=True), json_result(model))
