"""The asyncio client's methods for models, cohorts and rollouts, keys and the audit log (a
part of :class:`~twinsync.client.AsyncClient`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ._async_core import AsyncClientCore
from ._results import (
    ApiKeyInfo,
    ApiKeyList,
    AuditLog,
    Cohort,
    CreatedApiKey,
    ModelList,
    Rollout,
    RolloutDetail,
    RolloutList,
    UploadedModel,
)
from ._transport import read_source

__all__ = ["AsyncModelMethods"]


class AsyncModelMethods(AsyncClientCore):
    """AsyncClient methods: models, cohorts and rollouts, keys and the audit log."""

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
