"""What a training run writes: per model ``<kind>-<product>.onnx`` and its manifest
(the layout of the defaults shipped in ``edge_agent/models``), plus ``report.json``."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from protocol import ModelKind, ModelManifest, SigningKey, sha256_hex

from ._fit import Fitted

__all__ = ["write_model", "write_report"]


def write_model(
    out: Path,
    kind: ModelKind,
    product: str,
    fitted: Fitted,
    inputs: tuple[str, ...],
    key: SigningKey | None,
    version: int,
    horizon: int = 0,
) -> ModelManifest:
    """Write the model and its manifest (signed with ``key`` unless None)."""
    name = f"{kind}-{product}"
    manifest = ModelManifest(
        name=name,
        version=version,
        kind=kind,
        product=product,
        inputs=inputs,
        sha256=sha256_hex(fitted.onnx),
        size=len(fitted.onnx),
        metrics={k: round(v, 4) for k, v in fitted.metrics.items() if math.isfinite(v)},
        threshold=fitted.threshold,
        horizon_days=horizon,
        created_ms=time.time_ns() // 1_000_000,
    )
    if key is not None:
        manifest = manifest.sign(key)
    (out / f"{name}.onnx").write_bytes(fitted.onnx)
    (out / f"{name}.manifest.json").write_text(manifest.to_json() + "\n")
    return manifest


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_report(out: Path, report: dict[str, Any], name: str = "report.json") -> None:
    """``name`` beside the models (what was trained, on what, and how it scored)."""
    text = json.dumps(_plain(report), indent=1, sort_keys=True, allow_nan=False)
    (out / name).write_text(text + "\n")
