"""The request builders of models, cohorts and rollouts, keys and the audit log (a part of
:class:`~twinsync.client._calls.Calls`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._calls_core import CallsCore
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
from ._wire import Call, bytes_result, json_result, multipart

__all__ = ["ModelCalls"]


class ModelCalls(CallsCore):
    """The builders of models, cohorts and rollouts, keys and the audit log."""

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
