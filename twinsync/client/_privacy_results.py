"""Typed results of data-subject requests and the webhook (see _results.py)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, SecretStr

from ._results import Result, Scalar

__all__ = [
    "AccessExport",
    "ConsentAccepted",
    "ErasureReceipt",
    "ExportedField",
    "ExportedTag",
    "ObjectionReceipt",
    "Prediction",
    "PrivacyRequest",
    "PrivacyRequests",
    "Receipt",
    "Recipients",
    "RectificationReceipt",
    "Restriction",
    "TwinExport",
    "Webhook",
    "WebhookRegistration",
]


class Receipt(Result):
    """A procedure's receipt, signed by the hub (Ed25519 over the canonical JSON of
    every member but ``signature``): :meth:`to_dict` is what was signed, plus it."""

    # Every member is kept, the unknown ones too: they are part of what was signed.
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    request_id: str
    kind: str
    brand: str
    twins: tuple[str, ...]
    received_ms: int
    completed_ms: int
    kid: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        """The receipt as the hub sent it."""
        return self.model_dump(mode="json", by_alias=True)


class ErasureReceipt(Receipt):
    """An erasure, done: the twins' points found and deleted."""

    points_found: int
    points_left: int


class ObjectionReceipt(Receipt):
    """An objection to profiling, in force: the profile points deleted."""

    purposes_withdrawn: tuple[str, ...]
    field_class_removed: str
    points_found: int
    points_left: int


class RectificationReceipt(Receipt):
    """A rectification, done: fields set, suppressed and restored."""

    set_: tuple[str, ...] = Field(alias="set")
    suppressed: tuple[str, ...]
    restored: tuple[str, ...]
    points_removed: int
    points_left: int


class ConsentAccepted(Result):
    """A consent change, accepted: the customer's devices apply it within seconds."""

    request_id: str
    twins: tuple[str, ...]
    purposes: dict[str, bool]
    notice: str


class ExportedField(Result):
    """One field of an access export: value, source, purpose and class."""

    field: str
    value: Scalar
    updated_ms: int
    source_device: str
    purpose: str
    class_: str = Field(alias="class")
    unit: str


class Prediction(Result):
    """A prediction with the model that made it and a plain-language explanation."""

    field: str
    value: Scalar
    model: Scalar | None
    explanation: str


class ExportedTag(Result):
    """A behaviour tag with the rule that set it (``catalog``: ``tags@<version>``; the
    rule and description are None for a catalog the hub does not know)."""

    field: str
    tag: str
    product: str
    value: Scalar
    updated_ms: int
    catalog: str | None
    rule: str | None
    description: str | None


class TwinExport(Result):
    """One twin (key epoch) of the customer in an access export."""

    twin: str
    epoch: int
    fields: tuple[ExportedField, ...]
    predictions: tuple[Prediction, ...]
    #: behaviour tags, each with its rule (empty from hubs before tags existed)
    tags: tuple[ExportedTag, ...] = ()
    devices: tuple[str, ...]
    stored_points: int


class Recipients(Result):
    """Who receives the data: the brand's backends holding a read key, by name."""

    brand_backends: tuple[str, ...]
    note: str


class Restriction(Result):
    """An objection or suppression in force."""

    twin: str
    kind: str
    field: str | None
    since_ms: int
    request_id: str


class AccessExport(Result):
    """Everything the hub holds about one customer (Art. 15, 20)."""

    request_id: str
    brand: str
    generated_ms: int
    twins: tuple[TwinExport, ...]
    purposes: dict[str, str]
    recipients: Recipients
    retention: dict[str, str]
    restrictions: tuple[Restriction, ...]
    pseudonymization: str


class PrivacyRequest(Result):
    """A data-subject request: deadline, state (open, done, overdue) and receipt."""

    request_id: str
    kind: str
    received_ms: int
    deadline_ms: int
    completed_ms: int | None
    state: str
    receipt: dict[str, Any] | None


class PrivacyRequests(Result):
    """Every data-subject request of the brand, newest first."""

    brand: str
    requests: tuple[PrivacyRequest, ...]


class WebhookRegistration(Result):
    """The webhook, set: its signing ``secret`` is shown this once."""

    brand: str
    url: str
    secret: SecretStr


class Webhook(Result):
    """The webhook endpoint and how many events wait for it."""

    brand: str
    url: str
    pending_events: int
