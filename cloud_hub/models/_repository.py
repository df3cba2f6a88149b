"""The model repository: models brands upload for rollout (manifest + ONNX file).

Manifests live in the state store (cloud_hub.store, shared by every hub instance), files in
``models.dir`` as ``<brand>/<sha256>.onnx``: content-addressed, so a file is never
overwritten in place and two versions with one file share it. The hub does not vouch for
a model: an upload must be well formed and its file must match the manifest, while a
signature the hub cannot verify or inputs that differ from the hub's feature schema are
*warnings* (devices may trust another signing key or run a newer schema). Devices decide,
and report what they run or refused in their status.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_hub._errors import RolloutError
from cloud_hub.store import StateStore
from protocol import (
    ANOMALY_FEATURES,
    MICRO_SEGMENT_INPUT,
    Clock,
    ModelManifest,
    SchemaError,
    SystemClock,
    TwinSyncError,
    VerifyKey,
    check_brand,
    feature_names,
)

__all__ = ["ModelRepo", "StoredModel"]


@dataclass(frozen=True, slots=True)
class StoredModel:
    """An uploaded model."""

    manifest: ModelManifest
    path: Path
    created_ms: int

    def summary(self) -> dict[str, Any]:
        """The API's view of the model."""
        m = self.manifest
        return {
            "model": m.ref,
            "name": m.name,
            "version": m.version,
            "kind": m.kind,
            "product": m.product,
            "sha256": m.sha256,
            "size": m.size,
            "metrics": m.metrics,
            "signed_by": m.kid or None,
            "created_ms": self.created_ms,
        }


class ModelRepo:
    """Uploaded models of every brand."""

    def __init__(self, *, state: StateStore, models_dir: Path, clock: Clock | None = None) -> None:
        self._state = state
        self._dir = Path(models_dir)
        # The command line uploads without a hub: the system clock then.
        self._clock: Clock = clock or SystemClock()

    def add(
        self, brand: str, manifest_json: bytes, data: bytes, hub_keys: dict[str, VerifyKey]
    ) -> tuple[StoredModel, list[str]]:
        """Store an uploaded model; return it and the warnings devices may act on."""
        brand = check_brand(brand)
        try:
            manifest = ModelManifest.from_json(manifest_json)
        except SchemaError as exc:
            raise RolloutError(str(exc), reason="bad_manifest") from None
        try:
            manifest.check_file(data)
        except TwinSyncError as exc:
            raise RolloutError(str(exc), reason="hash_mismatch", status=422) from None
        warnings = _warnings(manifest, hub_keys)
        path = self._dir / brand / f"{manifest.sha256}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        now = self._clock.now_ms()
        row = {
            "brand": brand,
            "name": manifest.name,
            "version": manifest.version,
            "product": manifest.product,
            "sha256": manifest.sha256,
            "manifest": manifest.to_json(),
            "created_ms": now,
        }
        with self._state.transaction() as tx:
            # Two instances uploading one version at once: the first row stays, and the
            # second is compared with it below like any earlier upload.
            tx.insert_ignore("models", [row])
            stored = tx.execute(
                "SELECT sha256 FROM models WHERE brand=? AND name=? AND version=?",
                (brand, manifest.name, manifest.version),
            ).scalar()
            if stored != manifest.sha256:
                raise RolloutError(
                    f"{manifest.ref} already exists with another file; upload it as a new version",
                    reason="version_exists",
                    status=409,
                )
        model = self.model(brand, manifest.name, manifest.version)
        assert model is not None
        return model, warnings

    def model(self, brand: str, name: str, version: int) -> StoredModel | None:
        """One uploaded model, or None."""
        with self._state.transaction(readonly=True) as tx:
            row = tx.execute(
                "SELECT manifest, created_ms FROM models WHERE brand=? AND name=? AND version=?",
                (brand, name, version),
            ).fetchone()
        return None if row is None else self._stored(brand, row[0], row[1])

    def models(self, brand: str) -> list[StoredModel]:
        """Every uploaded model of ``brand``, by name then version."""
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT manifest, created_ms FROM models WHERE brand=? ORDER BY name, version",
                (brand,),
            ).fetchall()
        return [self._stored(brand, r[0], r[1]) for r in rows]

    def _stored(self, brand: str, manifest_json: str, created_ms: int) -> StoredModel:
        manifest = ModelManifest.from_json(manifest_json)
        return StoredModel(manifest, self._dir / brand / f"{manifest.sha256}.onnx", created_ms)


def _warnings(manifest: ModelManifest, hub_keys: dict[str, VerifyKey]) -> list[str]:
    warnings = []
    try:
        manifest.verify(hub_keys)
    except TwinSyncError as exc:
        warnings.append(f"signature: {exc}; devices that trust only this hub's keys will refuse it")
    try:
        expected = (
            ANOMALY_FEATURES if manifest.kind == "anomaly" else feature_names(manifest.product)
        )
        if manifest.kind == "micro":  # the segment model's row plus the label it gave
            expected = (*expected, MICRO_SEGMENT_INPUT)
    except SchemaError:
        expected = ()
    if tuple(manifest.inputs) != tuple(expected):
        where = next(
            (i for i, (a, b) in enumerate(zip(manifest.inputs, expected, strict=False)) if a != b),
            min(len(manifest.inputs), len(expected)),
        )
        warnings.append(
            f"inputs: this hub's {manifest.product} {manifest.kind} schema has {len(expected)} "
            f"features, the model declares {len(manifest.inputs)} (they differ from position "
            f"{where}); devices with this hub's schema will refuse it"
        )
    return warnings
