"""client: a typed Python client of the hub's API, for brand backends.

    from twinsync.client import Client

    with Client("https://hub.example.com", brand="acme") as hub:   # key: TWINSYNC_API_KEY
        for twin in hub.iter_twins():
            print(twin, hub.get_twin(twin).scores.churn_risk)

:class:`Client` blocks and needs nothing beyond the standard library and pydantic;
:class:`AsyncClient` has the same methods, awaited, on aiohttp (``pip install
'twinsync[client]'``; imported only when asked for). Both are made of one sans-I/O core
(_calls.py builds every request as data, _wire.py reads every answer into a typed
result or an error) and a small transport each. :func:`verify_webhook` checks the
signature of an event the hub POSTed to the brand's webhook. Methods are named after the operation
ids of the hub's OpenAPI document (``GET /v1/openapi.json``). Errors: one root,
:class:`ClientError` (_errors.py draws the tree), with the hub's ``code`` and
``message``. docs/brand-api.md walks through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._calls import ROUTES
from ._errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ClientConfigError,
    ClientError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RequestRefusedError,
    RequestTimeoutError,
    ResponseError,
    ServerError,
    TransportError,
    UnavailableError,
)
from ._http import SegmentStream
from ._lab_results import (
    ArmOutcome,
    CampaignForecast,
    Estimate,
    Experiment,
    ExperimentArms,
    ExperimentList,
    ExperimentOutcome,
    ExperimentResult,
    Fairness,
    ForecastEffect,
    Interval,
    Offer,
    SegmentSplit,
)
from ._privacy_results import (
    AccessExport,
    ConsentAccepted,
    ErasureReceipt,
    ExportedField,
    ExportedTag,
    ObjectionReceipt,
    Prediction,
    PrivacyRequest,
    PrivacyRequests,
    Receipt,
    Recipients,
    RectificationReceipt,
    Restriction,
    TwinExport,
    Webhook,
    WebhookRegistration,
)
from ._results import (
    ApiKeyInfo,
    ApiKeyList,
    AuditEntry,
    AuditLog,
    ChurnRisk,
    Cohort,
    ConsentChoice,
    CreatedApiKey,
    Device,
    DeviceList,
    FieldValue,
    HistoryBucket,
    HistoryBuckets,
    HistoryPage,
    HistoryPoint,
    MemberState,
    Model,
    ModelList,
    Result,
    Rollout,
    RolloutDetail,
    RolloutList,
    RolloutProgress,
    Scalar,
    Scores,
    SegmentChange,
    SegmentChanges,
    StreamOverflow,
    Twin,
    TwinConsent,
    TwinPage,
    TwinRow,
    UploadedModel,
)
from ._segment_results import (
    SegmentFeature,
    SegmentMigration,
    SegmentMigrationCell,
    SegmentModelProfile,
    SegmentProfile,
    SegmentProfiles,
    SegmentShare,
    SegmentShareAlerts,
    SegmentShareRule,
    SegmentSizes,
    SegmentSizeSeries,
)
from ._sync import Client
from ._transport import DEFAULT_TIMEOUT_S
from ._trigger_results import (
    StreamGap,
    TriggerEvent,
    TriggerEvents,
    TriggerRule,
    TriggerRuleCreated,
    TriggerRuleDeleted,
    TriggerRuleOne,
    TriggerRules,
)
from ._webhook import SIGNATURE_HEADER, verify_webhook
from ._wire import API_KEY_ENV, RetryPolicy

if TYPE_CHECKING:
    from ._aiohttp import AsyncSegmentStream
    from ._async import AsyncClient

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_TIMEOUT_S",
    "ROUTES",
    "SIGNATURE_HEADER",
    "AccessExport",
    "ApiError",
    "ApiKeyInfo",
    "ApiKeyList",
    "ArmOutcome",
    "AsyncClient",
    "AsyncSegmentStream",
    "AuditEntry",
    "AuditLog",
    "AuthenticationError",
    "BadRequestError",
    "CampaignForecast",
    "ChurnRisk",
    "Client",
    "ClientConfigError",
    "ClientError",
    "Cohort",
    "ConflictError",
    "ConsentAccepted",
    "ConsentChoice",
    "CreatedApiKey",
    "Device",
    "DeviceList",
    "ErasureReceipt",
    "Estimate",
    "Experiment",
    "ExperimentArms",
    "ExperimentList",
    "ExperimentOutcome",
    "ExperimentResult",
    "ExportedField",
    "ExportedTag",
    "Fairness",
    "FieldValue",
    "ForecastEffect",
    "HistoryBucket",
    "HistoryBuckets",
    "HistoryPage",
    "HistoryPoint",
    "Interval",
    "MemberState",
    "Model",
    "ModelList",
    "NotFoundError",
    "ObjectionReceipt",
    "Offer",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Prediction",
    "PrivacyRequest",
    "PrivacyRequests",
    "Receipt",
    "Recipients",
    "RectificationReceipt",
    "RequestRefusedError",
    "RequestTimeoutError",
    "ResponseError",
    "Restriction",
    "Result",
    "RetryPolicy",
    "Rollout",
    "RolloutDetail",
    "RolloutList",
    "RolloutProgress",
    "Scalar",
    "Scores",
    "SegmentChange",
    "SegmentChanges",
    "SegmentFeature",
    "SegmentMigration",
    "SegmentMigrationCell",
    "SegmentModelProfile",
    "SegmentProfile",
    "SegmentProfiles",
    "SegmentShare",
    "SegmentShareAlerts",
    "SegmentShareRule",
    "SegmentSizeSeries",
    "SegmentSizes",
    "SegmentSplit",
    "SegmentStream",
    "ServerError",
    "StreamGap",
    "StreamOverflow",
    "TransportError",
    "TriggerEvent",
    "TriggerEvents",
    "TriggerRule",
    "TriggerRuleCreated",
    "TriggerRuleDeleted",
    "TriggerRuleOne",
    "TriggerRules",
    "Twin",
    "TwinConsent",
    "TwinExport",
    "TwinPage",
    "TwinRow",
    "UnavailableError",
    "UploadedModel",
    "Webhook",
    "WebhookRegistration",
    "verify_webhook",
]


def __getattr__(name: str) -> Any:
    # The asyncio client needs aiohttp: imported when asked for, so the blocking one
    # works without it.
    if name == "AsyncClient":
        from ._async import AsyncClient

        return AsyncClient
    if name == "AsyncSegmentStream":
        from ._aiohttp import AsyncSegmentStream

        return AsyncSegmentStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
