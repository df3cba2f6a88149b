"""The blocking client: :class:`Client`, every method one call of _calls.py sent over
_http.py's transport (standard library only), retried as :class:`RetryPolicy` says."""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from ._calls import Calls, Time
from ._errors import ApiError, TransportError
from ._http import HttpTransport, SegmentStream
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
    HistoryPoint,
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
from ._transport import DEFAULT_TIMEOUT_S, Credentials, log_retry, read_source
from ._trigger_results import (
    TriggerEvents,
    TriggerRuleCreated,
    TriggerRuleDeleted,
    TriggerRuleOne,
    TriggerRules,
)
from ._wire import (
    BaseUrl,
    Call,
    RetryPolicy,
    outcome,
    resolve_api_key,
)

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """A brand backend's client of the hub's API, blocking (see :mod:`twinsync.client`).

    ``api_key`` defaults to ``TWINSYNC_API_KEY``. ``timeout``: seconds to connect and
    between bytes of an answer. ``retry``: when idempotent calls are sent again (503, no
    answer). ``ssl_context``: for an ``https`` hub with a private CA. ``sleep``: how
    retries wait (tests pass one that records).
    """

    def __init__(
        self,
        url: str,
        brand: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._creds = Credentials(BaseUrl.parse(url), resolve_api_key(api_key))
        self._transport = HttpTransport(self._creds, timeout=timeout, ssl_context=ssl_context)
        self._calls = Calls(brand)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = random.Random()

    @property
    def brand(self) -> str:
        """The brand this client's key belongs to."""
        return self._calls.brand

    def __repr__(self) -> str:
        return f"Client({str(self._creds.base)!r}, brand={self.brand!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (a connection per request); for symmetry with AsyncClient."""

    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return outcome(call, self._transport.exchange(call.request))
            except (TransportError, ApiError) as exc:
                if not self._retry.retries(call.request, exc, attempt):
                    raise
                wait = self._retry.delay(attempt, exc, self._rng)
                log_retry(call.request, exc, self._retry, attempt, wait)
                self._sleep(wait)

    # -- twins ------------------------------------------------------------------------------
    def list_twins(
        self,
        *,
        where: str | None = None,
        sort: str | None = None,
        fields: Iterable[str] | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> TwinPage:
        """A page of twins matching ``where`` (all without), in ``sort`` order, each
        item with the values of ``fields`` (``next`` names the following page)."""
        call = self._calls.list_twins(
            where=where, sort=sort, fields=fields, limit=limit, after=after
        )
        return self._send(call)

    def iter_twins(
        self, *, where: str | None = None, sort: str | None = None, limit: int | None = None
    ) -> Iterator[str]:
        """Every twin id matching ``where`` (all without), in ``sort`` order, following
        the pages (``limit`` ids a page)."""
        page = self.list_twins(where=where, sort=sort, limit=limit)
        yield from page.twins
        while page.next is not None:
            page = self._send(self._calls.follow("list_twins", page.next, TwinPage))
            yield from page.twins

    def get_twin(self, twin: str) -> Twin:
        """A twin's merged current state and scores."""
        return self._send(self._calls.get_twin(twin))

    def get_twin_history(
        self,
        twin: str,
        field: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """A page of ``field``'s raw points in [start, end) (default: the last 7 days)."""
        call = self._calls.get_twin_history(
            twin, field, start=start, end=end, limit=limit, after=after
        )
        return self._send(call)

    def iter_twin_history(
        self,
        twin: str,
        field: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
    ) -> Iterator[HistoryPoint]:
        """Every raw point of ``field`` in the range, following the pages."""
        page = self.get_twin_history(twin, field, start=start, end=end, limit=limit)
        yield from page.points
        while page.next is not None:
            page = self._send(self._calls.follow("get_twin_history", page.next, HistoryPage))
            yield from page.points

    def get_twin_history_buckets(
        self,
        twin: str,
        field: str,
        every: str | timedelta,
        *,
        start: Time | None = None,
        end: Time | None = None,
    ) -> HistoryBuckets:
        """``field``'s history in buckets of ``every`` ("15m", "1h", a timedelta)."""
        call = self._calls.get_twin_history_buckets(twin, field, every, start=start, end=end)
        return self._send(call)

    def get_twin_consent(self, twin: str) -> TwinConsent:
        """A twin's consent: the current choice per purpose and the ledger."""
        return self._send(self._calls.get_twin_consent(twin))

    # -- fleet and segments ---------------------------------------------------------------
    def list_devices(self) -> DeviceList:
        """The brand's devices: online, last seen, models."""
        return self._send(self._calls.list_devices())

    def list_segment_changes(
        self,
        product: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
    ) -> SegmentChanges:
        """Segment changes of ``product``'s twins in [start, end), oldest first."""
        return self._send(
            self._calls.list_segment_changes(product, start=start, end=end, limit=limit)
        )

    def get_segment_sizes(
        self,
        product: str,
        *,
        model: str | None = None,
        start: Time | None = None,
        end: Time | None = None,
        step: str | timedelta | None = None,
    ) -> SegmentSizes:
        """Twins per (model, segment) of ``product`` at start, start + ``step``, ... < end
        (point in time; ``model``: only what that model version scored)."""
        call = self._calls.get_segment_sizes(product, model=model, start=start, end=end, step=step)
        return self._send(call)

    def get_segment_migration(
        self, product: str, *, from_: Time | None = None, to: Time | None = None
    ) -> SegmentMigration:
        """Who moved from which segment to which between ``from_`` and ``to``."""
        return self._send(self._calls.get_segment_migration(product, from_=from_, to=to))

    def get_segment_profile(
        self, product: str, *, model: str | None = None, top: int | None = None
    ) -> SegmentProfiles:
        """Per model version and segment of ``product``: size, share and the ``top``
        features that set it apart from the population, in numbers and words."""
        return self._send(self._calls.get_segment_profile(product, model=model, top=top))

    def get_segment_share_alerts(
        self,
        product: str,
        *,
        model: str | None = None,
        at: Time | None = None,
        baseline: int | None = None,
        k: int | None = None,
    ) -> SegmentShareAlerts:
        """Each segment's share at ``at`` (default now) against its normal variation over
        the ``baseline`` days before; ``alerts`` counts those beyond ``k`` sigma."""
        call = self._calls.get_segment_share_alerts(
            product, model=model, at=at, baseline=baseline, k=k
        )
        return self._send(call)

    def stream_segment_changes(
        self, product: str, *, since: Time | None = None, last_event_id: str | None = None
    ) -> SegmentStream:
        """The live stream of ``product``'s segment changes (replayed from ``since`` or
        ``last_event_id`` first); use it in a ``with`` block."""
        request = self._calls.stream_segment_changes(
            product, since=since, last_event_id=last_event_id
        )
        return self._transport.stream(request)

    # -- privacy ----------------------------------------------------------------------------
    def request_access(self, subject: str) -> AccessExport:
        """Everything the hub holds about the customer ``subject`` identifies."""
        return self._send(self._calls.request_access(subject))

    def change_consent(
        self, subject: str, purposes: Mapping[str, bool], notice: str
    ) -> ConsentAccepted:
        """Change the customer's consent on every device that knows them."""
        return self._send(self._calls.change_consent(subject, purposes, notice))

    def request_erasure(self, subject: str) -> ErasureReceipt:
        """Erase the customer's twins for good; the signed receipt."""
        return self._send(self._calls.request_erasure(subject))

    def request_objection(self, subject: str) -> ObjectionReceipt:
        """The customer objects to profiling; the signed receipt."""
        return self._send(self._calls.request_objection(subject))

    def request_rectification(
        self,
        subject: str,
        *,
        values: Mapping[str, Scalar] | None = None,
        suppress: Iterable[str] = (),
        restore: Iterable[str] = (),
    ) -> RectificationReceipt:
        """Set fields to the customer's values, suppress or restore fields."""
        call = self._calls.request_rectification(
            subject, values=values, suppress=suppress, restore=restore
        )
        return self._send(call)

    def list_privacy_requests(self) -> PrivacyRequests:
        """Every data-subject request, its deadline, state and receipt."""
        return self._send(self._calls.list_privacy_requests())

    def set_webhook(self, url: str) -> WebhookRegistration:
        """Where privacy events are POSTed; the answer holds the signing secret, once."""
        return self._send(self._calls.set_webhook(url))

    def get_webhook(self) -> Webhook:
        """The webhook endpoint and how many events wait for it."""
        return self._send(self._calls.get_webhook())

    # -- models and rollouts --------------------------------------------------------------
    def upload_model(self, manifest: Path | bytes | str, model: Path | bytes) -> UploadedModel:
        """Upload a model: its manifest (JSON) and ONNX file (paths or contents)."""
        return self._send(self._calls.upload_model(read_source(manifest), read_source(model)))

    def list_models(self) -> ModelList:
        """The brand's uploaded models."""
        return self._send(self._calls.list_models())

    def download_model(self, name: str, version: int, *, sha256: str | None = None) -> bytes:
        """A model's ONNX file."""
        return self._send(self._calls.download_model(name, version, sha256=sha256))

    def put_cohort(self, cohort: str, devices: Iterable[str]) -> Cohort:
        """Replace a cohort's devices."""
        return self._send(self._calls.put_cohort(cohort, devices))

    def get_cohort(self, cohort: str) -> Cohort:
        """A cohort's devices."""
        return self._send(self._calls.get_cohort(cohort))

    def create_rollout(
        self,
        model: str,
        *,
        all_devices: bool = False,
        percent: float | None = None,
        cohort: str | None = None,
    ) -> Rollout:
        """Roll ``model`` (``name@version``) out to every device, a share or a cohort."""
        call = self._calls.create_rollout(
            model, all_devices=all_devices, percent=percent, cohort=cohort
        )
        return self._send(call)

    def list_rollouts(self) -> RolloutList:
        """Every rollout with its progress counts."""
        return self._send(self._calls.list_rollouts())

    def get_rollout(self, rollout_id: int) -> RolloutDetail:
        """A rollout and the state of each device it targets."""
        return self._send(self._calls.get_rollout(rollout_id))

    # -- keys and audit ---------------------------------------------------------------------
    def create_key(self, name: str, scopes: Iterable[str]) -> CreatedApiKey:
        """A new key of the brand; its token is in the answer, once."""
        return self._send(self._calls.create_key(name, scopes))

    def list_keys(self) -> ApiKeyList:
        """Every key of the brand (never a secret)."""
        return self._send(self._calls.list_keys())

    def revoke_key(self, key_id: str) -> ApiKeyInfo:
        """Revoke one of the brand's keys."""
        return self._send(self._calls.revoke_key(key_id))

    def get_audit_log(self, *, limit: int | None = None) -> AuditLog:
        """The newest audit rows."""
        return self._send(self._calls.get_audit_log(limit=limit))

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
    ) -> TriggerRuleCreated:
        """Register a trigger rule (docs/brand-api.md, "Triggers"): ``kind`` churn_risk
        (``threshold``, ``direction``), segment_change, tag (``tag``, ``change``) or
        anomaly; ``where`` restricts it to matching twins; ``webhook`` gets its events
        signed with the answer's ``secret`` (shown once)."""
        call = self._calls.create_trigger(
            name,
            kind,
            product=product,
            threshold=threshold,
            direction=direction,
            tag=tag,
            change=change,
            where=where,
            webhook=webhook,
        )
        return self._send(call)

    def list_triggers(self) -> TriggerRules:
        """Every trigger rule of the brand."""
        return self._send(self._calls.list_triggers())

    def get_trigger(self, rule_id: str) -> TriggerRuleOne:
        """One trigger rule."""
        return self._send(self._calls.get_trigger(rule_id))

    def delete_trigger(self, rule_id: str) -> TriggerRuleDeleted:
        """Remove a trigger rule and its undelivered events."""
        return self._send(self._calls.delete_trigger(rule_id))

    def list_trigger_events(
        self, *, limit: int | None = None, after: int | None = None
    ) -> TriggerEvents:
        """The newest trigger events, or (``after`` a seq) those after it, oldest first."""
        return self._send(self._calls.list_trigger_events(limit=limit, after=after))

    def stream_trigger_events(
        self, *, after: int | None = None, last_event_id: str | None = None
    ) -> SegmentStream:
        """The live trigger events (after ``after`` or ``last_event_id``; else from
        now); use it in a ``with`` block and reopen it with
        ``last_event_id=stream.last_event_id`` to resume after a lost connection."""
        request = self._calls.stream_trigger_events(after=after, last_event_id=last_event_id)
        return self._transport.stream(request)

    # -- strategy lab ---------------------------------------------------------------------
    def simulate_campaign(
        self,
        offer: str,
        *,
        effect: float | str,
        cost: float = 0.0,
        where: str | None = None,
        fairness_ratio: float | None = None,
    ) -> CampaignForecast:
        """A campaign's forecast: reach, expected saved churners, cost, the split by
        segment with the fairness flags; ``effect`` assumed (0-1) or
        ``"learnt:<experiment id>"``."""
        call = self._calls.simulate_campaign(
            offer, effect=effect, cost=cost, where=where, fairness_ratio=fairness_ratio
        )
        return self._send(call)

    def create_experiment(
        self,
        offer: str,
        *,
        cost: float = 0.0,
        where: str | None = None,
        holdout: float = 0.5,
        days: float = 30.0,
        quiet_days: float | None = None,
    ) -> Experiment:
        """Start a randomised experiment over the twins ``where`` selects (scope write)."""
        call = self._calls.create_experiment(
            offer, cost=cost, where=where, holdout=holdout, days=days, quiet_days=quiet_days
        )
        return self._send(call)

    def list_experiments(self) -> ExperimentList:
        """Every experiment of the brand with its result, newest first."""
        return self._send(self._calls.list_experiments())

    def get_experiment(self, experiment: str) -> Experiment:
        """An experiment, its arms and its result (interim while it runs)."""
        return self._send(self._calls.get_experiment(experiment))

    def stop_experiment(self, experiment: str) -> Experiment:
        """End an experiment now and freeze its result (scope write)."""
        return self._send(self._calls.stop_experiment(experiment))

    def delete_experiment(self, experiment: str) -> Experiment:
        """Delete an experiment and its assignment (scope write); answered as it was."""
        return self._send(self._calls.delete_experiment(experiment))
