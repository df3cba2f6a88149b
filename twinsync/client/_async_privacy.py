"""The asyncio client's methods for privacy: data-subject requests and the privacy webhook (a
part of :class:`~twinsync.client.AsyncClient`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ._async_core import AsyncClientCore
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

__all__ = ["AsyncPrivacyMethods"]


class AsyncPrivacyMethods(AsyncClientCore):
    """AsyncClient methods: privacy: data-subject requests and the privacy webhook."""

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
