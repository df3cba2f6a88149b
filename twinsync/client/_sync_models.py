"""The blocking client's methods for models, cohorts and rollouts, keys and the audit log (a
part of :class:`~twinsync.client.Client`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

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
from ._sync_core import ClientCore
from ._transport import read_source

__all__ = ["ModelMethods"]


class ModelMethods(ClientCore):
    """Client methods: models, cohorts and rollouts, keys and the audit log."""

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
