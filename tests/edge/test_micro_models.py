"""Micro-segment models on the device: a real trained micro graph (twinsync.training's
fit_micro + merge_micro) installed beside a segment model, run on the segment label, and
every bad package refused with its reason recorded while the running models and the files
on disk stay as they were."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent import ModelRejected, ModelStore
from protocol import MAX_MODEL_BYTES, MICRO_SEGMENT_INPUT, ModelManifest, SigningKey, feature_names
from tests.edge import _onnx
from twinsync.training import fit_micro, merge_micro

PRODUCT = "coffee"
FEATURES = feature_names(PRODUCT)
N = len(FEATURES)
MICRO_INPUTS = (*FEATURES, MICRO_SEGMENT_INPUT)
KEY = SigningKey.generate()


def _rows(rng: np.random.Generator, n: int, **means: float) -> np.ndarray:
    base = dict.fromkeys(FEATURES, 0.2)
    base.update(events_per_day_28d=3.0, habit_strength=3.0, habit_cups_per_day=2.0)
    base.update(means)
    x = np.array([[base[name] for name in FEATURES]] * n, dtype=np.float64)
    x += rng.normal(0, 0.02, x.shape) * np.maximum(np.abs(x), 0.5)
    return x.astype(np.float32)


def _planted(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Segment 0 holds light morning and heavy evening drinkers (40 each), segment 2
    another 40 of one kind; returns rows and segments."""
    rng = np.random.default_rng(seed)
    light = _rows(rng, 40, habit_cups_per_day=1.0, share_morning=0.6, share_evening=0.1)
    heavy = _rows(rng, 40, habit_cups_per_day=4.0, share_morning=0.2, share_evening=0.5)
    other = _rows(rng, 40, share_weekend=0.6)
    return np.vstack([light, heavy, other]), np.array([0] * 80 + [2] * 40)


def _micro_onnx() -> bytes:
    x, segments = _planted(1)
    model = fit_micro(x, segments, PRODUCT, seed=0)
    return merge_micro(model, {0})  # as if the ship rule kept segment 0's split only


MICRO = _micro_onnx()


def _package(
    data: bytes = MICRO,
    *,
    kind: Any = "micro",
    inputs: tuple[str, ...] = MICRO_INPUTS,
    key: SigningKey = KEY,
    name: str = "micro-coffee",
    version: int = 1,
    product: str = PRODUCT,
) -> tuple[bytes, bytes]:
    manifest = _onnx.make_manifest(kind, product, data, inputs, key, version=version, name=name)
    return manifest.to_json().encode(), data


def _store(root: Path) -> ModelStore:
    return ModelStore(root, PRODUCT, {KEY.kid: KEY.public})


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_micro_model_splits_inside_the_segment_it_is_given(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.micro(list(map(float, _planted(2)[0][0])), 0) is None  # none installed
    store.install(*_package(_onnx.segment_onnx(N, 1), kind="segment", inputs=FEATURES,
                            name="segment-coffee"))  # fmt: skip
    manifest = store.install(*_package())
    assert manifest.kind == "micro"
    assert store.running()["micro-coffee"] == "micro-coffee@1"
    # Unseen customers of the two planted kinds: each kind gets its own micro-segment.
    x, _segments = _planted(2)
    light = {store.micro([float(v) for v in row], 0) for row in x[:40]}
    heavy = {store.micro([float(v) for v in row], 0) for row in x[40:80]}
    assert len(light) == 1
    assert len(heavy) == 1
    assert light != heavy
    assert {ref for _label, ref in light | heavy} == {"micro-coffee@1"}
    # A segment whose split did not ship: micro-segment 0 for everyone in it, even for
    # rows that would split in segment 0.
    assert {store.micro([float(v) for v in row], 2) for row in x} == {(0, "micro-coffee@1")}
    # A restart serves it again from disk, re-verified.
    again = _store(tmp_path)
    assert again.micro([float(v) for v in x[0]], 0) == store.micro([float(v) for v in x[0]], 0)


def _edited_after_signing() -> tuple[bytes, bytes]:
    manifest_json, data = _package(version=3)
    raw = json.loads(manifest_json)
    raw["metrics"] = {"segments_split": 4.0}
    return json.dumps(raw).encode(), data


BAD: dict[str, tuple[str, Any]] = {
    "forged_key": ("unknown_key", lambda: _package(version=3, key=SigningKey.generate())),
    "edited_after_signing": ("signature", _edited_after_signing),
    "without_the_segment_input": ("incompatible_inputs", lambda: _package(version=3,
                                                                         inputs=FEATURES)),
    "wrong_kind_for_the_name": (
        "kind_changed",
        lambda: _package(_onnx.segment_onnx(N, 1), kind="segment", inputs=FEATURES,
                         version=3),
    ),
    "a_segment_graph_as_micro": (
        "bad_io",
        lambda: _package(_onnx.segment_onnx(N, 1), version=3),  # [N, F], not [N, F + 1]
    ),
    "another_products_model": (
        "wrong_product",
        lambda: _package(version=3, product="tv"),
    ),
    "downgrade": ("downgrade", lambda: _package(version=1)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_micro_models_are_refused_and_change_nothing(tmp_path: Path, case: str) -> None:
    store = _store(tmp_path)
    store.install(*_package(version=2))
    row = [float(v) for v in _planted(2)[0][0]]
    before, files = (store.running(), store.micro(row, 0)), _tree(tmp_path)
    reason, make = BAD[case]
    with pytest.raises(ModelRejected) as err:
        store.install(*make())
    assert err.value.reason == reason, err.value
    assert "refused" in str(err.value)
    assert store.failures()["micro-coffee"].reason == reason  # counted for the status
    assert (store.running(), store.micro(row, 0)) == before
    assert _tree(tmp_path) == files


def test_an_oversized_micro_model_is_refused_before_download(tmp_path: Path) -> None:
    store = _store(tmp_path)
    manifest = ModelManifest.from_json(_package(version=2)[0])
    huge = dataclasses.replace(manifest, size=MAX_MODEL_BYTES + 1, signature="").sign(KEY)
    with pytest.raises(ModelRejected) as err:
        store.admit(huge.to_json().encode())
    assert err.value.reason == "too_large"
    assert str(MAX_MODEL_BYTES) in str(err.value)
    assert store.failures()["micro-coffee"].reason == "too_large"
    assert store.running() == {}
