"""The request builders of privacy: data-subject requests and the privacy webhook (a part of
:class:`~twinsync.client._calls.Calls`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._calls_core import CallsCore
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
    Scalar,
)
from ._wire import Call, json_result

__all__ = ["PrivacyCalls"]


class PrivacyCalls(CallsCore):
    """The builders of privacy: data-subject requests and the privacy webhook."""

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
