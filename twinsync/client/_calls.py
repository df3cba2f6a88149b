"""Every call the client makes, built as data: :data:`ROUTES` and :class:`Calls`.

One builder per client method (the OpenAPI operation id, except
``get_twin_history_buckets``, the bucketed form of ``get_twin_history``), shared by
:class:`~twinsync.client.Client` and :class:`~twinsync.client.AsyncClient`: a method
there only sends what its builder here made. Adding a route to the client is a line in
:data:`ROUTES`, a builder here and a one-line method in each client;
tests/client/test_coverage.py fails until all three exist and match the hub's document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from pydantic import BaseModel

from ._errors import ClientConfigError
from ._lab_results import CampaignForecast, Experiment, ExperimentList
from ._privacy_results import (
    AccessExport,
    ConsentAccepted,
    ErasureReceipt,
    ObjectionReceipt,
    PrivacyRequests,
    RectificationReceipt,
    Webhook,
    WebhookRegistration,
)
from ._results import (
    ApiKeyInfo,
    ApiKeyList,
    AuditLog,
    Cohort,
    CreatedApiKey,
    DeviceList,
    HistoryBuckets,
    HistoryPage,
    ModelList,
    Rollout,
    RolloutDetail,
    RolloutList,
    Scalar,
    SegmentChanges,
    Twin,
    TwinConsent,
    TwinPage,
    UploadedModel,
)
from ._segment_results import (
    SegmentMigration,
    SegmentProfiles,
    SegmentShareAlerts,
    SegmentSizes,
)
from ._trigger_results import (
    TriggerEvents,
    TriggerRuleCreated,
    TriggerRuleDeleted,
    TriggerRuleOne,
    TriggerRules,
)
from ._wire import Call, Request, bytes_result, json_body, json_result, multipart, query, quote

__all__ = ["ROUTES", "Calls", "Time"]

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
_IDEMPOTENT: Final = frozenset({"put_cohort", "revoke_key", "simulate_campaign", "stop_experiment"})


def _ms(value: Time | None, name: str) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if value.tzinfo is None:
        raise ClientConfigError(f"{name}: give a timezone-aware datetime (or Unix ms)")
    return int(value.timestamp() * 1000)


def _every(value: str | timedelta) -> str:
    if isinstance(value, str):
        return value
    ms = value // timedelta(milliseconds=1)
    return f"{ms}ms"


class Calls:
    """The requests of one brand's client."""

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
            idempotent=method == "GET" or operation in _IDEMPOTENT,
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

    # -- twins ------------------------------------------------------------------------------
    def list_twins(
        self,
        *,
        where: str | None = None,
        sort: str | None = None,
        fields: Iterable[str] | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> Call[TwinPage]:
        """A page of twins matching ``where``, in ``sort`` order (docs/brand-api.md,
        "Finding twins"), with the values of ``fields``."""
        params = {
            "where": where,
            "sort": sort,
            "fields": None if fields is None else ",".join(fields),
            "limit": limit,
            "after": after,
        }
        return Call(self._request("list_twins", params=params), json_result(TwinPage))

    def get_twin(self, twin: str) -> Call[Twin]:
        """A twin's merged state."""
        return Call(self._request("get_twin", values={"twin": twin}), json_result(Twin))

    def get_twin_history(
        self,
        twin: str,
        field: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> Call[HistoryPage]:
        """A page of a field's raw points."""
        params = {
            "field": field,
            "start": _ms(start, "start"),
            "end": _ms(end, "end"),
            "limit": limit,
            "after": after,
        }
        request = self._request("get_twin_history", values={"twin": twin}, params=params)
        return Call(request, json_result(HistoryPage))

    def get_twin_history_buckets(
        self,
        twin: str,
        field: str,
        every: str | timedelta,
        *,
        start: Time | None = None,
        end: Time | None = None,
    ) -> Call[HistoryBuckets]:
        """A field's history in buckets of ``every``."""
        params = {
            "field": field,
            "every": _every(every),
            "start": _ms(start, "start"),
            "end": _ms(end, "end"),
        }
        request = self._request("get_twin_history", values={"twin": twin}, params=params)
        return Call(request, json_result(HistoryBuckets))

    def get_twin_consent(self, twin: str) -> Call[TwinConsent]:
        """A twin's consent."""
        request = self._request("get_twin_consent", values={"twin": twin})
        return Call(request, json_result(TwinConsent))

    # -- fleet and segments ---------------------------------------------------------------
    def list_devices(self) -> Call[DeviceList]:
        """The brand's devices."""
        return Call(self._request("list_devices"), json_result(DeviceList))

    def list_segment_changes(
        self,
        product: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
    ) -> Call[SegmentChanges]:
        """Segment changes of ``product`` in a range."""
        params = {
            "product": product,
            "start": _ms(start, "start"),
            "end": _ms(end, "end"),
            "limit": limit,
        }
        request = self._request("list_segment_changes", params=params)
        return Call(request, json_result(SegmentChanges))

    def get_segment_sizes(
        self,
        product: str,
        *,
        model: str | None = None,
        start: Time | None = None,
        end: Time | None = None,
        step: str | timedelta | None = None,
    ) -> Call[SegmentSizes]:
        """Segment sizes of ``product`` over time."""
        params = {
            "product": product,
            "model": model,
            "start": _ms(start, "start"),
            "end": _ms(end, "end"),
            "step": None if step is None else _every(step),
        }
        return Call(self._request("get_segment_sizes", params=params), json_result(SegmentSizes))

    def get_segment_migration(
        self, product: str, *, from_: Time | None = None, to: Time | None = None
    ) -> Call[SegmentMigration]:
        """The migration matrix of ``product`` between two instants."""
        params = {"product": product, "from": _ms(from_, "from_"), "to": _ms(to, "to")}
        request = self._request("get_segment_migration", params=params)
        return Call(request, json_result(SegmentMigration))

    def get_segment_profile(
        self, product: str, *, model: str | None = None, top: int | None = None
    ) -> Call[SegmentProfiles]:
        """Segment profiles of ``product``."""
        params = {"product": product, "model": model, "top": top}
        request = self._request("get_segment_profile", params=params)
        return Call(request, json_result(SegmentProfiles))

    def get_segment_share_alerts(
        self,
        product: str,
        *,
        model: str | None = None,
        at: Time | None = None,
        baseline: int | None = None,
        k: int | None = None,
    ) -> Call[SegmentShareAlerts]:
        """Share alerts of ``product``'s segments."""
        params = {
            "product": product,
            "model": model,
            "at": _ms(at, "at"),
            "baseline": baseline,
            "k": k,
        }
        request = self._request("get_segment_share_alerts", params=params)
        return Call(request, json_result(SegmentShareAlerts))

    def stream_segment_changes(
        self, product: str, *, since: Time | None = None, last_event_id: str | None = None
    ) -> Request:
        """The live stream's request (the transports read its events)."""
        params = {"product": product, "since": _ms(since, "since")}
        return self._request(
            "stream_segment_changes",
            params=params,
            accept="text/event-stream",
            last_event_id=last_event_id,
        )

    # -- privacy ----------------------------------------------------------------------------
    def request_access(self, subject: str) -> Call[AccessExport]:
        """Everything held about one customer."""
        return self._json("request_access", AccessExport, {"subject": subject})

    def change_consent(
        self, subject: str, purposes: Mapping[str, bool], notice: str
    ) -> Call[ConsentAccepted]:
        """Change a customer's consent on their devices."""
        body = {"subject": subject, "purposes": dict(purposes), "notice": notice}
        return self._json("change_consent", ConsentAccepted, body)

    def request_erasure(self, subject: str) -> Call[ErasureReceipt]:
        """Erase a customer's twins."""
        return self._json("request_erasure", ErasureReceipt, {"subject": subject})

    def request_objection(self, subject: str) -> Call[ObjectionReceipt]:
        """A customer objects to profiling."""
        return self._json("request_objection", ObjectionReceipt, {"subject": subject})

    def request_rectification(
        self,
        subject: str,
        *,
        values: Mapping[str, Scalar] | None = None,
        suppress: Iterable[str] = (),
        restore: Iterable[str] = (),
    ) -> Call[RectificationReceipt]:
        """Set (``values``), suppress or restore a customer's twin fields."""
        body: dict[str, Any] = {"subject": subject}
        if values:
            body["set"] = dict(values)
        if suppress := list(suppress):
            body["suppress"] = suppress
        if restore := list(restore):
            body["restore"] = restore
        return self._json("request_rectification", RectificationReceipt, body)

    def list_privacy_requests(self) -> Call[PrivacyRequests]:
        """Every data-subject request of the brand."""
        return Call(self._request("list_privacy_requests"), json_result(PrivacyRequests))

    def set_webhook(self, url: str) -> Call[WebhookRegistration]:
        """Where privacy events go; the answer holds the signing secret, once."""
        return self._json("set_webhook", WebhookRegistration, {"url": url})

    def get_webhook(self) -> Call[Webhook]:
        """The webhook endpoint and its backlog."""
        return Call(self._request("get_webhook"), json_result(Webhook))

    # -- models and rollouts --------------------------------------------------------------
    def upload_model(self, manifest: bytes, model: bytes) -> Call[UploadedModel]:
        """Upload a manifest (JSON) and its ONNX file."""
        body, content_type = multipart(
            [
                ("manifest", None, "application/json", manifest),
                ("model", "model.onnx", "application/octet-stream", model),
            ]
        )
        request = self._request("upload_model", body=body, content_type=content_type)
        return Call(request, json_result(UploadedModel))

    def list_models(self) -> Call[ModelList]:
        """The brand's uploaded models."""
        return Call(self._request("list_models"), json_result(ModelList))

    def download_model(self, name: str, version: int, *, sha256: str | None = None) -> Call[bytes]:
        """A model's ONNX file (only if its hash is ``sha256``, when given)."""
        request = self._request(
            "download_model",
            values={"name": name, "version": version},
            params={"sha256": sha256},
            accept="application/octet-stream",
        )
        return Call(request, bytes_result)

    def put_cohort(self, cohort: str, devices: Iterable[str]) -> Call[Cohort]:
        """Replace a cohort's devices."""
        body = {"devices": list(devices)}
        return self._json("put_cohort", Cohort, body, values={"cohort": cohort})

    def get_cohort(self, cohort: str) -> Call[Cohort]:
        """A cohort's devices."""
        return Call(self._request("get_cohort", values={"cohort": cohort}), json_result(Cohort))

    def create_rollout(
        self,
        model: str,
        *,
        all_devices: bool = False,
        percent: float | None = None,
        cohort: str | None = None,
    ) -> Call[Rollout]:
        """Roll ``model`` (``name@version``) out to one target: every device, a share or
        a cohort (the hub refuses none or several)."""
        target: dict[str, Any] = {}
        if all_devices:
            target["all"] = True
        if percent is not None:
            target["percent"] = percent
        if cohort is not None:
            target["cohort"] = cohort
        return self._json("create_rollout", Rollout, {"model": model, "target": target})

    def list_rollouts(self) -> Call[RolloutList]:
        """Every rollout with its progress."""
        return Call(self._request("list_rollouts"), json_result(RolloutList))

    def get_rollout(self, rollout_id: int) -> Call[RolloutDetail]:
        """A rollout and each device's state."""
        request = self._request("get_rollout", values={"id": rollout_id})
        return Call(request, json_result(RolloutDetail))

    # -- keys and audit ---------------------------------------------------------------------
    def create_key(self, name: str, scopes: Iterable[str]) -> Call[CreatedApiKey]:
        """A new key of the brand (its token is in the answer, once)."""
        return self._json("create_key", CreatedApiKey, {"name": name, "scopes": list(scopes)})

    def list_keys(self) -> Call[ApiKeyList]:
        """Every key of the brand."""
        return Call(self._request("list_keys"), json_result(ApiKeyList))

    def revoke_key(self, key_id: str) -> Call[ApiKeyInfo]:
        """Revoke one of the brand's keys."""
        request = self._request("revoke_key", values={"key_id": key_id})
        return Call(request, json_result(ApiKeyInfo))

    def get_audit_log(self, *, limit: int | None = None) -> Call[AuditLog]:
        """The newest audit rows."""
        request = self._request("get_audit_log", params={"limit": limit})
        return Call(request, json_result(AuditLog))

    # -- triggers ---------------------------------------------------------------------------
    def create_trigger(
        self,
        name: str,
        kind: str,
        *,
        product: str | None = None,
        threshold: float | None = None,
        direction: str | None = None,
        tag: str | None = None,
        change: str | None = None,
        where: str | None = None,
        webhook: str | None = None,
    ) -> Call[TriggerRuleCreated]:
        """Register a trigger rule (docs/brand-api.md, "Triggers"); the answer holds its
        webhook's signing secret, once."""
        body: dict[str, Any] = {"name": name, "kind": kind}
        optional = {
            "product": product,
            "threshold": threshold,
            "direction": direction,
            "tag": tag,
            "change": change,
            "where": where,
            "webhook": webhook,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._json("create_trigger", TriggerRuleCreated, body)

    def list_triggers(self) -> Call[TriggerRules]:
        """Every trigger rule of the brand."""
        return Call(self._request("list_triggers"), json_result(TriggerRules))

    def get_trigger(self, rule_id: str) -> Call[TriggerRuleOne]:
        """One trigger rule."""
        request = self._request("get_trigger", values={"rule": rule_id})
        return Call(request, json_result(TriggerRuleOne))

    def delete_trigger(self, rule_id: str) -> Call[TriggerRuleDeleted]:
        """Remove a trigger rule and its undelivered events."""
        request = self._request("delete_trigger", values={"rule": rule_id})
        return Call(request, json_result(TriggerRuleDeleted))

    def list_trigger_events(
        self, *, limit: int | None = None, after: int | None = None
    ) -> Call[TriggerEvents]:
        """The newest trigger events, or (``after`` a seq) those after it, oldest first."""
        request = self._request("list_trigger_events", params={"limit": limit, "after": after})
        return Call(request, json_result(TriggerEvents))

    def stream_trigger_events(
        self, *, after: int | None = None, last_event_id: str | None = None
    ) -> Request:
        """The trigger stream's request (the transports read its events)."""
        return self._request(
            "stream_trigger_events",
            params={"after": after},
            accept="text/event-stream",
            last_event_id=last_event_id,
        )

    # -- strategy lab ---------------------------------------------------------------------
    def simulate_campaign(
        self,
        offer: str,
        *,
        effect: float | str,
        cost: float = 0.0,
        where: str | None = None,
        fairness_ratio: float | None = None,
    ) -> Call[CampaignForecast]:
        """A campaign's forecast: ``effect`` assumed (0-1) or ``"learnt:<experiment id>"``."""
        body: dict[str, Any] = {"where": where, "offer": {"name": offer, "cost": cost}}
        body["effect"] = effect
        if fairness_ratio is not None:
            body["fairness_ratio"] = fairness_ratio
        return self._json("simulate_campaign", CampaignForecast, body)

    def create_experiment(
        self,
        offer: str,
        *,
        cost: float = 0.0,
        where: str | None = None,
        holdout: float = 0.5,
        days: float = 30.0,
        quiet_days: float | None = None,
    ) -> Call[Experiment]:
        """Start a randomised experiment over the twins ``where`` selects."""
        outcome: dict[str, Any] = {"metric": "churned", "days": days}
        if quiet_days is not None:
            outcome["quiet_days"] = quiet_days
        body = {
            "where": where,
            "offer": {"name": offer, "cost": cost},
            "holdout": holdout,
            "outcome": outcome,
        }
        return self._json("create_experiment", Experiment, body)

    def list_experiments(self) -> Call[ExperimentList]:
        """Every experiment of the brand, newest first."""
        return Call(self._request("list_experiments"), json_result(ExperimentList))

    def get_experiment(self, experiment: str) -> Call[Experiment]:
        """An experiment and its result (interim while it runs)."""
        request = self._request("get_experiment", values={"experiment": experiment})
        return Call(request, json_result(Experiment))

    def stop_experiment(self, experiment: str) -> Call[Experiment]:
        """End an experiment now and freeze its result."""
        request = self._request(
            "stop_experiment",
            values={"experiment": experiment},
            body=b"{}",
            content_type="application/json",
        )
        return Call(request, json_result(Experiment))

    def delete_experiment(self, experiment: str) -> Call[Experiment]:
        """Delete an experiment and its assignment."""
        request = self._request("delete_experiment", values={"experiment": experiment})
        return Call(request, json_result(Experiment))
