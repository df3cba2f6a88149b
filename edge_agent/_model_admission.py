"""What a model must be before this device runs it: checks made without running it.

The store (edge_agent._models) asks these before it downloads (:meth:`Admission.check_claims`
on the manifest alone), before it loads (:meth:`Admission.check_manifest`, the file's hash
too) and again when it reloads an installed version from disk; edge_agent._model_runner
then loads the model and runs its smoke inference. Every refusal is a
:class:`ModelRejected` whose reason the device reports in its status.
"""

from __future__ import annotations

import math

from protocol import (
    ANOMALY_FEATURES,
    MAX_MODEL_BYTES,
    MICRO_SEGMENT_INPUT,
    ModelManifest,
    SchemaError,
    SignatureError,
    VerifyKey,
)

from ._errors import ModelRejected
from ._model_runner import Runner, reject

__all__ = ["Admission", "check_size", "parse_manifest", "same_model"]


class Admission:
    """The checks of one device: its product, the inputs it computes, the hub's keys."""

    def __init__(
        self, product: str, features: tuple[str, ...], hub_keys: dict[str, VerifyKey]
    ) -> None:
        self.product = product
        self._features = features
        self._keys = dict(hub_keys)

    def expected_inputs(self, kind: str) -> tuple[str, ...]:
        """The feature names a model of ``kind`` must take, in order."""
        if kind == "anomaly":
            return ANOMALY_FEATURES
        # A micro model reads the row the segment model read, plus the label it gave.
        return (*self._features, MICRO_SEGMENT_INPUT) if kind == "micro" else self._features

    def product_ok(self, manifest: ModelManifest) -> bool:
        """Whether the model is for this product (anomaly models may be for ``any``)."""
        return manifest.product == self.product or (
            manifest.kind == "anomaly" and manifest.product == "any"
        )

    def check_manifest(self, manifest: ModelManifest, data: bytes, *, signed: bool) -> None:
        """Everything checkable without running the model."""
        self.check_claims(manifest, signed=signed)
        try:
            manifest.check_file(data)
        except SignatureError as exc:
            raise reject("hash_mismatch", manifest, str(exc)) from exc

    def check_claims(self, manifest: ModelManifest, *, signed: bool) -> None:
        """What the manifest says, checked without its file."""
        if signed:
            try:
                manifest.verify(self._keys)
            except SignatureError as exc:
                raise reject(exc.reason, manifest, str(exc)) from exc
        if not self.product_ok(manifest):
            raise reject(
                "wrong_product",
                manifest,
                f"{manifest.ref} is for product {manifest.product!r}, this device is "
                f"{self.product!r}",
            )
        expected = self.expected_inputs(manifest.kind)
        if manifest.inputs != expected:
            raise reject(
                "incompatible_inputs",
                manifest,
                f"{manifest.ref} expects inputs {list(manifest.inputs)}, this agent computes "
                f"{list(expected)}",
            )
        if not math.isfinite(manifest.threshold):
            raise reject("malformed", manifest, f"{manifest.ref} threshold is not finite")


def parse_manifest(manifest_json: bytes) -> ModelManifest:
    """The manifest, or ModelRejected (``malformed``)."""
    try:
        return ModelManifest.from_json(manifest_json)
    except SchemaError as exc:
        raise ModelRejected(f"model manifest refused: {exc}", reason="malformed") from exc


def check_size(manifest: ModelManifest, size: int) -> None:
    """Refuse a model file over :data:`protocol.MAX_MODEL_BYTES` (``too_large``)."""
    if size > MAX_MODEL_BYTES:
        raise reject("too_large", manifest, f"model file is {size} bytes, limit {MAX_MODEL_BYTES}")


def same_model(current: Runner | None, manifest: ModelManifest) -> bool:
    """Whether ``manifest`` describes exactly the model ``current`` runs (a redelivery)."""
    return (
        current is not None
        and current.manifest.version == manifest.version
        and current.manifest.sha256 == manifest.sha256
    )
