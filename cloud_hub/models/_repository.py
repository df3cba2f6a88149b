"""The model repository: models brands upload for rollout (manifest + ONNX file).

Manifests live in the registry's SQLite file (shared by every hub instance), files in
``models.dir`` as ``<brand>/<sha256>.onnx``: content-addressed, so a file is never
overwritten in place and two versions with one file share it. The hub does not vouch for
a model: an upload must be well formed and its file must match the manifest, while a
signature the hub cannot verify or inputs that differ from the hub's feature schema are
*warnings* (devices may trust another signing key or run a newer schema). Devices decide,
and report what they run or refused in their status.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_hub._errors import RolloutError
from cloud_hub.store import connect
from protocol import (
    ANOMALY_FEATURES,
    ModelManifest,
    SchemaError,
    TwinSyncError,
    VerifyKey,
    check_brand,
    feature_names,
)

__all__ = ["ModelRepo", "StoredModel"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    brand       TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    product     TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    manifest    TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (brand, name, version)
);
"""


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

    def __init__(self, db_path: Path, models_dir: Path) -> None:
        self._db_path = Path(db_path)
        self._dir = Path(models_dir)
        self._db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self._db_path)

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
        now = time.time_ns() // 1_000_000
        with self._connect() as db:
            row = db.execute(
                "SELECT sha256 FROM models WHERE brand=? AND name=? AND version=?",
                (brand, manifest.name, manifest.version),
            ).fetchone()
            if row is not None and row[0] != manifest.sha256:
                raise RolloutError(
                    f"{manifest.ref} already exists with another file; upload it as a new version",
                    reason="version_exists",
                    status=409,
                )
            if row is None:
                db.execute(
                    "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        brand,
                        manifest.name,
                        manifest.version,
                        manifest.product,
                        manifest.sha256,
                        manifest.to_json(),
                        now,
                    ),
                )
        model = self.model(brand, manifest.name, manifest.version)
        assert model is not None
        return model, warnings

    def model(self, brand: str, name: str, version: int) -> StoredModel | None:
        """One uploaded model, or None."""
        with self._connect() as db:
            row = db.execute(
                "SELECT manifest, created_ms FROM models WHERE brand=? AND name=? AND version=?",
                (brand, name, version),
            ).fetchone()
        return None if row is None else self._stored(brand, row[0], row[1])

    def models(self, brand: str) -> list[StoredModel]:
        """Every uploaded model of ``brand``, by name then version."""
        with self._connect() as db:
            rows = db.execute(
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
