"""Model manifests: what an ONNX file is, what it expects, and who vouches for it.

The hub's trainer writes one manifest per ONNX file and signs it with the hub's Ed25519
key; agents accept a model only if the manifest verifies with a hub key they trust, the
file's SHA-256 matches, and its declared inputs are the feature schema the agent computes
(:func:`protocol.feature_names` for the product, or :data:`protocol.ANOMALY_FEATURES`,
defined with the baselines that compute them).

Conventions every model follows (the trainer guarantees them, the agent relies on them):

- one input named ``features``: float32, shape ``[N, len(inputs)]``;
- ``kind = "segment"``: output ``label`` (int64 ``[N]``), the segment number;
- ``kind = "churn"``: output ``probabilities`` (float32 ``[N, 2]``); column 1 is the
  calibrated probability of churning within ``horizon_days``;
- ``kind = "micro"``: inputs are the segment model's plus ``segment`` (the label the
  segment model gave the row, as a float, last column); output ``label`` (int64 ``[N]``),
  the micro-segment inside that segment (0 where the segment is not split);
- ``kind = "anomaly"``: output ``scores`` (float32 ``[N, 1]``), larger is more anomalous;
  a signal is flagged when its score is at least ``threshold``.

The manifest is canonical JSON (sorted keys, no spaces), so the signed bytes are the
bytes on disk minus the ``signature`` member.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ._errors import SchemaError, SignatureError
from ._keys import SigningKey, VerifyKey

__all__ = [
    "MANIFEST_VERSION",
    "MAX_MODEL_BYTES",
    "MICRO_SEGMENT_INPUT",
    "ModelKind",
    "ModelManifest",
    "sha256_hex",
]

MANIFEST_VERSION = 1
#: Larger model files are refused before anything else is done with them (hub and agent).
MAX_MODEL_BYTES = 64 * 1024 * 1024
#: the last input of a micro model: the label the segment model gave the row
MICRO_SEGMENT_INPUT = "segment"
ModelKind = Literal["segment", "churn", "anomaly", "micro"]
_KINDS = ("segment", "churn", "anomaly", "micro")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256, as manifests name files."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelManifest:
    """Everything an agent checks before it runs a model."""

    name: str
    version: int
    kind: ModelKind
    product: str
    inputs: tuple[str, ...]
    sha256: str
    size: int
    #: held-out metrics from training (free-form numbers, for people and dashboards)
    metrics: dict[str, float] = field(default_factory=dict)
    #: anomaly: flag at or above; churn: the prediction horizon in days; else 0
    threshold: float = 0.0
    horizon_days: int = 0
    created_ms: int = 0
    kid: str = ""
    signature: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise SchemaError(f"model name {self.name!r} must match {_NAME.pattern}")
        if self.kind not in _KINDS:
            raise SchemaError(f"model kind must be one of {_KINDS}, got {self.kind!r}")
        if not 1 <= self.version < 1 << 31:
            raise SchemaError("model version must be a positive integer")
        if not self.inputs:
            raise SchemaError("a model needs at least one input feature")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise SchemaError("sha256 must be 64 lowercase hex characters")

    @property
    def ref(self) -> str:
        """``name@version``, how twins and statuses name a model."""
        return f"{self.name}@{self.version}"

    def _body(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("signature")
        body["inputs"] = list(self.inputs)
        body["manifest_version"] = MANIFEST_VERSION
        return body

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers."""
        return json.dumps(self._body(), sort_keys=True, separators=(",", ":")).encode()

    def sign(self, key: SigningKey) -> ModelManifest:
        """A copy carrying ``key``'s signature (and kid)."""
        unsigned = ModelManifest(**{**self._fields(), "kid": key.kid, "signature": ""})
        return ModelManifest(
            **{**unsigned._fields(), "signature": key.sign(unsigned.signed_bytes()).hex()}
        )

    def verify(self, keys: dict[str, VerifyKey]) -> None:
        """Raise SignatureError unless signed by one of ``keys`` (kid -> key)."""
        key = keys.get(self.kid)
        if key is None:
            raise SignatureError(
                f"manifest signed by unknown key {self.kid!r}", reason="unknown_key"
            )
        try:
            signature = bytes.fromhex(self.signature)
        except ValueError:
            raise SignatureError("manifest signature is not hex") from None
        key.verify(signature, self.signed_bytes())

    def check_file(self, data: bytes) -> None:
        """Raise SignatureError unless ``data`` is the file this manifest names."""
        if len(data) != self.size or sha256_hex(data) != self.sha256:
            raise SignatureError(
                f"model file does not match manifest {self.ref} (size or sha256)",
                reason="hash_mismatch",
            )

    def _fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def to_json(self) -> str:
        """The file form (canonical body plus the signature)."""
        return json.dumps({**self._body(), "signature": self.signature}, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelManifest:
        """Parse a manifest file; raise SchemaError on anything malformed."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError("a manifest is a JSON object")
            version = raw.pop("manifest_version", None)
            if version != MANIFEST_VERSION:
                raise ValueError(f"unsupported manifest_version {version!r}")
            raw["inputs"] = tuple(raw["inputs"])
            raw["metrics"] = {str(k): float(v) for k, v in raw.get("metrics", {}).items()}
            return cls(**raw)
        except SchemaError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise SchemaError(f"malformed model manifest: {exc}") from None
