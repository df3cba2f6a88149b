"""Typed results of the client: twins, history, devices, segments, models, rollouts, keys.

Frozen pydantic models of the hub's answers (the OpenAPI document's schemas; a test
compares the two). Members the hub adds later are ignored, so an older client keeps
working against a newer hub. Privacy results are in _privacy_results.py.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "ApiKeyInfo",
    "ApiKeyList",
    "AuditEntry",
    "AuditLog",
    "ChurnRisk",
    "Cohort",
    "ConsentChoice",
    "CreatedApiKey",
    "Device",
    "DeviceList",
    "FieldValue",
    "HistoryBucket",
    "HistoryBuckets",
    "HistoryPage",
    "HistoryPoint",
    "MemberState",
    "Model",
    "ModelList",
    "Result",
    "Rollout",
    "RolloutDetail",
    "RolloutList",
    "RolloutProgress",
    "Scalar",
    "Scores",
    "SegmentChange",
    "SegmentChanges",
    "StreamOverflow",
    "Twin",
    "TwinConsent",
    "TwinPage",
    "TwinRow",
    "UploadedModel",
]

#: a twin field's value, typed as the catalog says (float, int, str or bool)
Scalar = bool | int | float | str


class Result(BaseModel):
    """Base of every result: frozen, unknown members ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


# -- twins ----------------------------------------------------------------------------------
class TwinRow(Result):
    """What the hub's twin query index holds about one twin (docs/brand-api.md,
    "Finding twins")."""

    twin: str
    first_seen_ms: int
    last_seen_ms: int
    churn_risk: float | None = None
    products: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    segments: dict[str, int] = Field(default_factory=dict)
    tags: tuple[str, ...] = ()
    #: the values of the fields asked for with ``fields=``
    fields: dict[str, Scalar] = Field(default_factory=dict)


class TwinPage(Result):
    """A page of twins; ``next`` is the next page's URL (None on the last). ``items``
    and ``count`` come from the hub's twin query index (empty and None on a hub
    without it); ``count_exact`` is False when more than ``count`` twins match."""

    brand: str
    twins: tuple[str, ...]
    items: tuple[TwinRow, ...] = ()
    count: int | None = None
    count_exact: bool | None = None
    next: str | None = None


class FieldValue(Result):
    """A field's merged current value, when it changed and which device's value won."""

    value: Scalar
    updated_ms: int
    device: str


class ChurnRisk(Result):
    """The customer's churn risk: the highest of their products' own."""

    value: float
    product: str
    model: str | None
    updated_ms: int


class Scores(Result):
    """Customer-level scores (empty until a device has scored the customer)."""

    churn_risk: ChurnRisk | None = None


class Twin(Result):
    """A twin's merged current state."""

    brand: str
    twin: str
    fields: dict[str, FieldValue]
    devices: tuple[str, ...]
    scores: Scores


class HistoryPoint(Result):
    """One stored op of a field."""

    time_ms: int
    hlc: int
    device: str
    value: Scalar


class HistoryPage(Result):
    """Raw points of a field, a page at a time (``next`` while more remain)."""

    brand: str
    twin: str
    field: str
    every: None = None
    points: tuple[HistoryPoint, ...]
    next: str | None = None


class HistoryBucket(Result):
    """One time bucket of a field (``devices``: how many devices' values it holds)."""

    time_ms: int
    value: Scalar
    devices: int


class HistoryBuckets(Result):
    """A field's history in buckets of ``every``."""

    brand: str
    twin: str
    field: str
    every: str
    points: tuple[HistoryBucket, ...]


class ConsentChoice(Result):
    """The current choice for one purpose."""

    granted: bool
    since_ms: int
    by: str
    notice: str


class TwinConsent(Result):
    """A twin's consent: the current choice per purpose and the ledger devices reported."""

    brand: str
    twin: str
    current: dict[str, ConsentChoice]
    default: str
    ledger: tuple[dict[str, Any], ...]


# -- fleet and segments -------------------------------------------------------------------
class Device(Result):
    """A device: registry facts joined with its latest status."""

    device: str
    product: str
    revoked: bool
    online: bool
    last_seen_ms: int | None
    last_seq: int | None
    skew_ms: int | None
    outbox_depth: int | None
    models: tuple[str, ...]
    model_failures: dict[str, str]


class DeviceList(Result):
    """The brand's devices."""

    brand: str
    devices: tuple[Device, ...]


class SegmentChange(Result):
    """A twin moved from one segment to another (``from_`` is None for a first one)."""

    twin: str
    time_ms: int
    device: str
    from_: int | None = Field(alias="from")
    to: int
    model: str | None


class SegmentChanges(Result):
    """Segment changes of one product in a range, oldest first."""

    brand: str
    product: str
    changes: tuple[SegmentChange, ...]


class StreamOverflow(Result):
    """The stream dropped ``dropped`` changes (the client was too slow): re-query them."""

    dropped: int


# -- models and rollouts --------------------------------------------------------------------
class Model(Result):
    """An uploaded model."""

    model: str
    name: str
    version: int
    kind: str
    product: str
    sha256: str
    size: int
    metrics: dict[str, float]
    signed_by: str | None
    created_ms: int


class UploadedModel(Model):
    """A model just uploaded, with what the hub could not vouch for."""

    warnings: tuple[str, ...]


class ModelList(Result):
    """The brand's uploaded models."""

    brand: str
    models: tuple[Model, ...]


class Cohort(Result):
    """A cohort's devices."""

    brand: str
    cohort: str
    devices: tuple[str, ...]


class Rollout(Result):
    """A rollout: its model, target and how many devices it addresses."""

    id: int
    model: str
    product: str
    target: dict[str, bool | float | str]
    created_ms: int
    devices: int


class RolloutProgress(Rollout):
    """A rollout with its progress counts (refusals by reason)."""

    running: int
    refused: int
    pending: int
    refusals: dict[str, int]


class MemberState(Result):
    """One device of a rollout: running, pending or refused (with the device's reason)."""

    state: str
    reason: str | None = None


class RolloutDetail(RolloutProgress):
    """A rollout and the state of each device it targets."""

    members: dict[str, MemberState]


class RolloutList(Result):
    """Every rollout of the brand."""

    brand: str
    rollouts: tuple[RolloutProgress, ...]


# -- keys and audit -------------------------------------------------------------------------
class ApiKeyInfo(Result):
    """A key's public facts (never its secret)."""

    key_id: str
    brand: str
    name: str
    scopes: tuple[str, ...]
    created_ms: int
    revoked: bool


class CreatedApiKey(ApiKeyInfo):
    """A new key; ``token`` is shown this once (``token.get_secret_value()``)."""

    token: SecretStr


class ApiKeyList(Result):
    """Every key of the brand."""

    brand: str
    keys: tuple[ApiKeyInfo, ...]


class AuditEntry(Result):
    """One audited request: when, which key, the route template, the status."""

    ts_ms: int
    key_id: str
    method: str
    route: str
    status: int


class AuditLog(Result):
    """The newest audit rows, newest first."""

    brand: str
    audit: tuple[AuditEntry, ...]
