"""The asyncio client, on aiohttp (``pip install 'twinsync[client]'``).

:class:`AsyncClient` has the methods of :class:`~twinsync.client.Client`, awaited: the
same calls (_calls.py) over _aiohttp.py's transport, whose connection pool is made on
first use and closed by :meth:`AsyncClient.aclose` or the ``async with`` block.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from ._aiohttp import AiohttpTransport, AsyncSegmentStream
from ._calls import Calls, Time
from ._errors import ApiError, TransportError
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

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """A brand backend's client of the hub's API, for asyncio (the parameters of
    :class:`~twinsync.client.Client`; ``sleep`` is awaited)."""

    def __init__(
        self,
        url: str,
        brand: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._creds = Credentials(BaseUrl.parse(url), resolve_api_key(api_key))
        self._transport = AiohttpTransport(self._creds, timeout=timeout, ssl_context=ssl_context)
        self._calls = Calls(brand)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = random.Random()

    @property
    def brand(self) -> str:
        """The brand this client's key belongs to."""
        return self._calls.brand

    def __repr__(self) -> str:
        return f"AsyncClient({str(self._creds.base)!r}, brand={self.brand!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._transport.aclose()

    async def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return outcome(call, await self._transport.exchange(call.request))
            except (TransportError, ApiError) as exc:
                if not self._retry.retries(call.request, exc, attempt):
                    raise
                wait = self._retry.delay(attempt, exc, self._rng)
                log_retry(call.request, exc, self._retry, attempt, wait)
                await self._sleep(wait)

    # -- twins ------------------------------------------------------------------------------
    async def list_twins(
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
        return await self._send(call)

    async def iter_twins(
        self, *, where: str | None = None, sort: str | None = None, limit: int | None = None
    ) -> AsyncIterator[str]:
        """Every twin id matching ``where`` (all without), in ``sort`` order, following
        the pages (``limit`` ids a page)."""
        page = await self.list_twins(where=where, sort=sort, limit=limit)
        for twin in page.twins:
            yield twin
        while page.next is not None:
            page = await self._send(self._calls.follow("list_twins", page.next, TwinPage))
            for twin in page.twins:
                yield twin

    async def get_twin(self, twin: str) -> Twin:
        """A twin's merged current state and scores."""
        return await self._send(self._calls.get_twin(twin))

    async def get_twin_history(
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
        return await self._send(call)

    async def iter_twin_history(
        self,
        twin: str,
        field: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[HistoryPoint]:
        """Every raw point of ``field`` in the range, following the pages."""
        page = await self.get_twin_history(twin, field, start=start, end=end, limit=limit)
        for point in page.points:
            yield point
        while page.next is not None:
            page = await self._send(self._calls.follow("get_twin_history", page.next, HistoryPage))
            for point in page.points:
                yield point

    async def get_twin_history_buckets(
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
        return await self._send(call)

    async def get_twin_consent(self, twin: str) -> TwinConsent:
        """A twin's consent: the current choice per purpose and the ledger."""
        return await self._send(self._calls.get_twin_consent(twin))

    # -- fleet and segments ---------------------------------------------------------------
    async def list_devices(self) -> DeviceList:
        """The brand's devices: online, last seen, models."""
        return await self._send(self._calls.list_devices())

    async def list_segment_changes(
        self,
        product: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
    ) -> SegmentChanges:
        """Segment changes of ``product``'s twins in [start, end), oldest first."""
        return await self._send(
            self._calls.list_segment_changes(product, start=start, end=end, limit=limit)
        )

    async def get_segment_sizes(
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
        return await self._send(call)

    async def get_segment_migration(
        self, product: str, *, from_: Time | None = None, to: Time | None = None
    ) -> SegmentMigration:
        """Who moved from which segment to which between ``from_`` and ``to``."""
        return await self._send(self._calls.get_segment_migration(product, from_=from_, to=to))

    async def get_segment_profile(
        self, product: str, *, model: str | None = None, top: int | None = None
    ) -> SegmentProfiles:
        """Per model version and segment of ``product``: size, share and the ``top``
        features that set it apart from the population, in numbers and words."""
        return await self._send(self._calls.get_segment_profile(product, model=model, top=top))

    async def get_segment_share_alerts(
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
        return await self._send(call)

    def stream_segment_changes(
        self, product: str, *, since: Time | None = None, last_event_id: str | None = None
    ) -> AsyncSegmentStream:
        """The live stream of ``product``'s segment changes (replayed from ``since`` or
        ``last_event_id`` first); use it in an ``async with`` block."""
        request = self._calls.stream_segment_changes(
            product, since=since, last_event_id=last_event_id
        )
        return self._transport.stream(request)

    # -- privacy ----------------------------------------------------------------------------
    async def request_access(self, subject: str) -> AccessExport:
        """Everything the hub holds about the customer ``subject`` identifies."""
        return await self._send(self._calls.request_access(subject))

    async def change_consent(
        self, subject: str, purposes: Mapping[str, bool], notice: str
    ) -> ConsentAccepted:
        """Change the customer's consent on every device that knows them."""
        return await self._send(self._calls.change_consent(subject, purposes, notice))

    async def request_erasure(self, subject: str) -> ErasureReceipt:
        """Erase the customer's twins for good; the signed receipt."""
        return await self._send(self._calls.request_erasure(subject))

    async def request_objection(self, subject: str) -> ObjectionReceipt:
        """The customer objects to profiling; the signed receipt."""
        return await self._send(self._calls.request_objection(subject))

    async def request_rectification(
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
        return await self._send(call)

    async def list_privacy_requests(self) -> PrivacyRequests:
        """Every data-subject request, its deadline, state and receipt."""
        return await self._send(self._calls.list_privacy_requests())

    async def set_webhook(self, url: str) -> WebhookRegistration:
        """Where privacy events are POSTed; the answer holds the signing secret, once."""
        return await self._send(self._calls.set_webhook(url))

    async def get_webhook(self) -> Webhook:
        """The webhook endpoint and how many events wait for it."""
        return await self._send(self._calls.get_webhook())

    # -- models and rollouts --------------------------------------------------------------
    async def upload_model(
        self, manifest: Path | bytes | str, model: Path | bytes
    ) -> UploadedModel:
        """Upload a model: its manifest (JSON) and ONNX file (paths or contents)."""
        return await self._send(self._calls.upload_model(read_source(manifest), read_source(model)))

    async def list_models(self) -> ModelList:
        """The brand's uploaded models."""
        return await self._send(self._calls.list_models())

    async def download_model(self, name: str, version: int, *, sha256: str | None = None) -> bytes:
        """A model's ONNX file."""
        return await self._send(self._calls.download_model(name, version, sha256=sha256))

    async def put_cohort(self, cohort: str, devices: Iterable[str]) -> Cohort:
        """Replace a cohort's devices."""
        return await self._send(self._calls.put_cohort(cohort, devices))

    async def get_cohort(self, cohort: str) -> Cohort:
        """A cohort's devices."""
        return await self._send(self._calls.get_cohort(cohort))

    async def create_rollout(
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
        return await self._send(call)

    async def list_rollouts(self) -> RolloutList:
        """Every rollout with its progress counts."""
        return await self._send(self._calls.list_rollouts())

    async def get_rollout(self, rollout_id: int) -> RolloutDetail:
        """A rollout and the state of each device it targets."""
        return await self._send(self._calls.get_rollout(rollout_id))

    # -- keys and audit ---------------------------------------------------------------------
    async def create_key(self, name: str, scopes: Iterable[str]) -> CreatedApiKey:
        """A new key of the brand; its token is in the answer, once."""
        return await self._send(self._calls.create_key(name, scopes))

    async def list_keys(self) -> ApiKeyList:
        """Every key of the brand (never a secret)."""
        return await self._send(self._calls.list_keys())

    async def revoke_key(self, key_id: str) -> ApiKeyInfo:
        """Revoke one of the brand's keys."""
        return await self._send(self._calls.revoke_key(key_id))

    async def get_audit_log(self, *, limit: int | None = None) -> AuditLog:
        """The newest audit rows."""
        return await self._send(self._calls.get_audit_log(limit=limit))

    # -- triggers ---------------------------------------------------------------------------
    async def create_trigger(
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
        return await self._send(call)

    async def list_triggers(self) -> TriggerRules:
        """Every trigger rule of the brand."""
        return await self._send(self._calls.list_triggers())

    async def get_trigger(self, rule_id: str) -> TriggerRuleOne:
        """One trigger rule."""
        return await self._send(self._calls.get_trigger(rule_id))

    async def delete_trigger(self, rule_id: str) -> TriggerRuleDeleted:
        """Remove a trigger rule and its undelivered events."""
        return await self._send(self._calls.delete_trigger(rule_id))

    async def list_trigger_events(
        self, *, limit: int | None = None, after: int | None = None
    ) -> TriggerEvents:
        """The newest trigger events, or (``after`` a seq) those after it, oldest first."""
        return await self._send(self._calls.list_trigger_events(limit=limit, after=after))

    def stream_trigger_events(
        self, *, after: int | None = None, last_event_id: str | None = None
    ) -> AsyncSegmentStream:
        """The live trigger events (after ``after`` or ``last_event_id``; else from
        now); use it in an ``async with`` block and reopen it with
        ``last_event_id=stream.last_event_id`` to resume after a lost connection."""
        request = self._calls.stream_trigger_events(after=after, last_event_id=last_event_id)
        return self._transport.stream(request)

    # -- strategy lab ---------------------------------------------------------------------
    async def simulate_campaign(
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
        return await self._send(call)

    async def create_experiment(
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
        return await self._send(call)

    async def list_experiments(self) -> ExperimentList:
        """Every experiment of the brand with its result, newest first."""
        return await self._send(self._calls.list_experiments())

    async def get_experiment(self, experiment: str) -> Experiment:
        """An experiment, its arms and its result (interim while it runs)."""
        return await self._send(self._calls.get_experiment(experiment))

    async def stop_experiment(self, experiment: str) -> Experiment:
        """End an experiment now and freeze its result (scope write)."""
        return await self._send(self._calls.stop_experiment(experiment))

    async def delete_experiment(self, experiment: str) -> Experiment:
        """Delete an experiment and its assignment (scope write); answered as it was."""
        return await self._send(self._calls.delete_experiment(experiment))
