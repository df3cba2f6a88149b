"""The on-device model runtime with real scikit-learn models exported to ONNX.

Every refusal must leave the running model serving with unchanged predictions and the
files on disk untouched; restarts and crashes mid-install must not change what serves.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from edge_agent import ModelError, ModelRejected, ModelStore
from protocol import ANOMALY_FEATURES, ModelKind, ModelManifest, SigningKey, feature_names
from tests.edge import _onnx

PRODUCT = "coffee"
FEATURES = feature_names(PRODUCT)
N = len(FEATURES)
# A plausible customer row of the product's feature width (the schema may grow).
ROW = [0.1, 0.3, 0.4, 0.2, 0.25, 2.0, 1.8, 1.1, 1.0, 0.9, 5.0, 3.0, 2.2, 0.7, 1.3, 0.6, 0.8][:N]
ROW += [1.0] * (N - len(ROW))
# An ordinary gauge reading and a far-out one (abs_z, jump_of_range, step_z, hour_z,
# run_vs_usual: protocol.ANOMALY_FEATURES).
READING = [0.4, 0.02, 0.8, 0.6, 0.5]
OUTLIER = [40.0, 0.9, 45.0, 40.0, 30.0]
assert len(ROW) == N
assert len(READING) == len(ANOMALY_FEATURES)


def _onnx_for(kind: ModelKind, seed: int) -> bytes:
    if kind == "segment":
        return _onnx.segment_onnx(N, seed)
    if kind == "churn":
        return _onnx.churn_onnx(N, seed)
    return _onnx.anomaly_onnx(seed)


def _inputs_for(kind: ModelKind) -> tuple[str, ...]:
    return ANOMALY_FEATURES if kind == "anomaly" else FEATURES


def _reference(data: bytes, output: str, rows: list[list[float]]) -> Any:
    """What onnxruntime itself answers for ``data`` (the numbers the store must return)."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run([output], {"features": np.asarray(rows, dtype=np.float32)})[0]


@dataclass
class Hub:
    """The test hub: a signing key and a helper that builds signed model packages."""

    key: SigningKey

    @property
    def keys(self) -> dict[str, Any]:
        return {self.key.kid: self.key.public}

    def package(
        self,
        kind: ModelKind,
        version: int = 1,
        *,
        seed: int | None = None,
        data: bytes | None = None,
        product: str = PRODUCT,
        inputs: tuple[str, ...] | None = None,
        key: SigningKey | None = None,
        name: str | None = None,
        threshold: float = 0.0,
    ) -> tuple[bytes, bytes]:
        data = data if data is not None else _onnx_for(kind, version if seed is None else seed)
        manifest = _onnx.make_manifest(
            kind,
            product,
            data,
            inputs if inputs is not None else _inputs_for(kind),
            key or self.key,
            version=version,
            name=name or f"{kind}-{PRODUCT}",
            threshold=threshold,
        )
        return manifest.to_json().encode(), data


@pytest.fixture(scope="module")
def hub() -> Hub:
    return Hub(SigningKey.generate())


def _store(root: Path, hub: Hub, **kw: Any) -> ModelStore:
    return ModelStore(root, PRODUCT, hub.keys, **kw)


def _snapshot(store: ModelStore) -> tuple[object, ...]:
    return (store.running(), store.segment(ROW), store.churn(ROW), store.anomaly(READING))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _install_all(store: ModelStore, hub: Hub, version: int) -> None:
    for kind in ("segment", "churn", "anomaly"):
        store.install(*hub.package(kind, version, threshold=0.05))


def test_install_then_predict(tmp_path: Path, hub: Hub) -> None:
    store = _store(tmp_path / "models", hub)
    assert store.running() == {}
    assert store.segment(ROW) is None
    assert store.churn(ROW) is None
    assert store.anomaly(READING) is None

    # Pick the anomaly threshold between a normal reading and an outlier, as the trainer
    # would from labelled data.
    scores = _reference(_onnx.anomaly_onnx(1), "scores", [READING, OUTLIER])[:, 0]
    assert scores[1] > scores[0]  # the exported graph is larger-is-more-anomalous
    threshold = float((scores[0] + scores[1]) / 2)

    seg = store.install(*hub.package("segment"))
    churn = store.install(*hub.package("churn"))
    anomaly = store.install(*hub.package("anomaly", threshold=threshold))
    assert (seg.ref, churn.ref, anomaly.ref) == (
        "segment-coffee@1",
        "churn-coffee@1",
        "anomaly-coffee@1",
    )
    assert store.running() == {
        "segment-coffee": "segment-coffee@1",
        "churn-coffee": "churn-coffee@1",
        "anomaly-coffee": "anomaly-coffee@1",
    }
    assert store.failures() == {}

    label, ref = store.segment(ROW) or (None, None)
    assert ref == "segment-coffee@1"
    assert label == int(_reference(_onnx.segment_onnx(N, 1), "label", [ROW])[0])
    assert isinstance(label, int)

    churned = store.churn(ROW)
    assert churned is not None
    p, ref = churned
    assert ref == "churn-coffee@1"
    assert p == pytest.approx(
        float(_reference(_onnx.churn_onnx(N, 1), "probabilities", [ROW])[0, 1])
    )
    assert 0.0 <= p <= 1.0

    normal, outlier = store.anomaly(READING), store.anomaly(OUTLIER)
    assert normal is not None
    assert outlier is not None
    assert normal[0] == pytest.approx(float(scores[0]))
    assert outlier[0] == pytest.approx(float(scores[1]))
    assert normal[1:] == (False, "anomaly-coffee@1")
    assert outlier[1:] == (True, "anomaly-coffee@1")
    manifest = store.manifest("anomaly")
    assert manifest is not None
    assert manifest.threshold == threshold
    assert not store.is_builtin("anomaly")

    # Batch variants agree with single calls.
    rows = [ROW, [0.0] * N, [1.0] * N]
    labels = store.segment_many(rows)
    assert labels == ([store.segment(r)[0] for r in rows], "segment-coffee@1")  # type: ignore[index]
    probs = store.churn_many(rows)
    assert probs is not None
    assert probs[0] == pytest.approx([store.churn(r)[0] for r in rows])  # type: ignore[index]
    batch = store.anomaly_many([READING, OUTLIER])
    assert batch is not None
    assert batch[1:] == ([False, True], "anomaly-coffee@1")
    assert store.segment_many([]) == ([], "segment-coffee@1")

    # The on-disk layout the contract describes.
    root = tmp_path / "models"
    assert json.loads((root / "churn-coffee" / "current.json").read_text()) == {
        "version": 1,
        "previous": None,
    }
    assert (root / "churn-coffee" / "1" / "model.onnx").read_bytes() == _onnx.churn_onnx(N, 1)
    on_disk = ModelManifest.from_json((root / "churn-coffee" / "1" / "manifest.json").read_text())
    assert on_disk == churn


def test_bad_feature_vectors_raise(tmp_path: Path, hub: Hub) -> None:
    store = _store(tmp_path, hub)
    store.install(*hub.package("segment"))
    for bad in ([1.0], [0.0] * (N + 1), ["x"] * N):
        with pytest.raises(ModelError) as err:
            store.segment(bad)  # type: ignore[arg-type]
        assert err.value.reason == "bad_features"
    with pytest.raises(ModelError):
        store.segment_many([[1.0, 2.0]])


def _tamper(hub: Hub) -> tuple[bytes, bytes]:
    manifest_json, data = hub.package("segment", 3)
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    return manifest_json, bytes(flipped)


def _edited_after_signing(hub: Hub) -> tuple[bytes, bytes]:
    manifest_json, data = hub.package("anomaly", 3, threshold=0.1)
    raw = json.loads(manifest_json)
    raw["threshold"] = 99.0  # would silence every alert
    return json.dumps(raw).encode(), data


BAD_PACKAGES: dict[str, tuple[str, Callable[[Hub], tuple[bytes, bytes]]]] = {
    "tampered_onnx": ("hash_mismatch", _tamper),
    "unknown_key": (
        "unknown_key",
        lambda hub: hub.package("churn", 3, key=SigningKey.generate()),
    ),
    "edited_after_signing": ("signature", _edited_after_signing),
    "inputs_mismatch": (
        "incompatible_inputs",
        lambda hub: hub.package("churn", 3, inputs=(*FEATURES[:-1], "habit_new")),
    ),
    "inputs_reordered": (
        "incompatible_inputs",
        lambda hub: hub.package("segment", 3, inputs=tuple(reversed(FEATURES))),
    ),
    "wrong_product": (
        "wrong_product",
        lambda hub: hub.package("segment", 3, product="tv", name="segment-coffee"),
    ),
    "downgrade": ("downgrade", lambda hub: hub.package("churn", 1)),
    "same_version_other_model": ("downgrade", lambda hub: hub.package("churn", 2, seed=7)),
    "not_onnx": (
        "load_failed",
        lambda hub: hub.package("segment", 3, data=b"this is not a protobuf" * 10),
    ),
    "graph_width_differs": (
        "bad_io",
        lambda hub: hub.package("segment", 3, data=_onnx.segment_onnx(N - 2, 0)),
    ),
    "wrong_output_name": (
        "bad_io",
        lambda hub: hub.package("anomaly", 3, data=_onnx.renamed_output_onnx("score")),
    ),
    "nan_scores": (
        "smoke_failed",
        lambda hub: hub.package("anomaly", 3, data=_onnx.nan_scores_onnx()),
    ),
    "probabilities_not_normalised": (
        "smoke_failed",
        lambda hub: hub.package("churn", 3, data=_onnx.unnormalised_churn_onnx(N)),
    ),
    "kind_changed": (
        "kind_changed",
        lambda hub: hub.package("churn", 3, name="segment-coffee"),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PACKAGES))
def test_refusals_leave_the_running_model(tmp_path: Path, hub: Hub, case: str) -> None:
    root = tmp_path / "models"
    store = _store(root, hub)
    _install_all(store, hub, 1)
    _install_all(store, hub, 2)
    before, files = _snapshot(store), _tree(root)

    reason, make = BAD_PACKAGES[case]
    manifest_json, data = make(hub)
    with pytest.raises(ModelRejected) as err:
        store.install(manifest_json, data)
    assert err.value.reason == reason, err.value
    assert str(err.value)
    name = ModelManifest.from_json(manifest_json).name
    assert store.failures()[name].reason == reason
    assert store.failures()[name].ref == err.value.ref
    assert _snapshot(store) == before
    assert _tree(root) == files
    # ... and a restart serves the same (nothing half-written was left behind).
    assert _snapshot(_store(root, hub)) == before


def test_malformed_manifest_and_oversized_model(tmp_path: Path, hub: Hub) -> None:
    store = _store(tmp_path, hub)
    store.install(*hub.package("segment"))
    before = _snapshot(store)
    for junk in (b"{", b"[]", b'{"manifest_version": 1}'):
        with pytest.raises(ModelRejected) as err:
            store.install(junk, _onnx.segment_onnx(N, 1))
        assert err.value.reason == "malformed"
    assert _snapshot(store) == before


def test_reinstalling_the_running_version_is_a_no_op(tmp_path: Path, hub: Hub) -> None:
    store = _store(tmp_path, hub)
    package = hub.package("churn", 4)
    first = store.install(*package)
    files = _tree(tmp_path)
    assert store.install(*package) == first
    assert _tree(tmp_path) == files


def test_rollback_and_retention(tmp_path: Path, hub: Hub) -> None:
    root = tmp_path / "models"
    store = _store(root, hub)
    store.install(*hub.package("churn", 1))
    v1 = store.churn(ROW)
    store.install(*hub.package("churn", 2))
    store.install(*hub.package("churn", 3))
    v3 = store.churn(ROW)
    assert v1 is not None
    assert v3 is not None
    assert v1[0] != v3[0]  # different training seeds, different model
    # Versions older than the previous one are deleted.
    assert sorted(p.name for p in (root / "churn-coffee").iterdir()) == ["2", "3", "current.json"]

    rolled = store.rollback("churn-coffee")
    assert rolled.ref == "churn-coffee@2"
    assert store.running() == {"churn-coffee": "churn-coffee@2"}
    v2 = store.churn(ROW)
    assert v2 is not None
    assert v2[0] == pytest.approx(
        float(_reference(_onnx.churn_onnx(N, 2), "probabilities", [ROW])[0, 1])
    )
    assert json.loads((root / "churn-coffee" / "current.json").read_text()) == {
        "version": 2,
        "previous": None,
    }
    assert _store(root, hub).running() == {"churn-coffee": "churn-coffee@2"}

    with pytest.raises(ModelError) as err:
        store.rollback("churn-coffee")
    assert err.value.reason == "no_previous"
    with pytest.raises(ModelError) as err:
        store.rollback("segment-coffee")
    assert err.value.reason == "unknown_model"
    with pytest.raises(ModelError) as err:
        store.rollback("../etc")
    assert err.value.reason == "unknown_model"

    # Going forward again is a normal install.
    store.install(*hub.package("churn", 3))
    assert store.churn(ROW) == v3


def test_rollback_refuses_a_previous_version_damaged_on_disk(tmp_path: Path, hub: Hub) -> None:
    store = _store(tmp_path, hub)
    store.install(*hub.package("segment", 1))
    store.install(*hub.package("segment", 2))
    before = _snapshot(store)
    onnx_file = tmp_path / "segment-coffee" / "1" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10])
    with pytest.raises(ModelRejected) as err:
        store.rollback("segment-coffee")
    assert err.value.reason == "hash_mismatch"
    assert _snapshot(store) == before


def test_restart_serves_the_same_versions(tmp_path: Path, hub: Hub) -> None:
    root = tmp_path / "models"
    store = _store(root, hub)
    _install_all(store, hub, 1)
    _install_all(store, hub, 2)
    store.rollback("segment-coffee")
    before = _snapshot(store)
    assert before[0] == {
        "segment-coffee": "segment-coffee@1",
        "churn-coffee": "churn-coffee@2",
        "anomaly-coffee": "anomaly-coffee@2",
    }
    again = _store(root, hub)
    assert _snapshot(again) == before
    assert again.failures() == {}


def test_damaged_current_falls_back_to_previous_at_start(tmp_path: Path, hub: Hub) -> None:
    store = _store(tmp_path, hub)
    store.install(*hub.package("anomaly", 1, threshold=0.05))
    store.install(*hub.package("anomaly", 2, threshold=0.05))
    onnx_file = tmp_path / "anomaly-coffee" / "2" / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[100] ^= 0x01
    onnx_file.write_bytes(bytes(data))

    again = _store(tmp_path, hub)
    assert again.running() == {"anomaly-coffee": "anomaly-coffee@1"}
    failure = again.failures()["anomaly-coffee"]
    assert (failure.reason, failure.ref) == ("hash_mismatch", "anomaly-coffee@2")
    # Nothing to roll back to from the fallback; re-sending v2 repairs it.
    with pytest.raises(ModelError):
        again.rollback("anomaly-coffee")
    again.install(*hub.package("anomaly", 2, threshold=0.05))
    assert again.running() == {"anomaly-coffee": "anomaly-coffee@2"}
    assert "anomaly-coffee" not in again.failures()


def test_crash_mid_install_does_not_break_loading(tmp_path: Path, hub: Hub) -> None:
    root = tmp_path / "models"
    store = _store(root, hub)
    store.install(*hub.package("segment", 1))
    before = _snapshot(store)
    # A crash while v2 was being written: half a version directory and a temp directory,
    # current.json still naming v1; and a first install of a new name that never committed.
    half = root / "segment-coffee" / "2"
    half.mkdir()
    (half / "model.onnx").write_bytes(_onnx.segment_onnx(N, 2)[:50])
    tmp = root / "segment-coffee" / ".tmp-3-deadbeef"
    tmp.mkdir()
    (tmp / "model.onnx").write_bytes(b"partial")
    (root / "segment-coffee" / ".tmp-current.json-0badf00d").write_text('{"vers')
    (root / "churn-coffee" / ".tmp-1-cafe0001").mkdir(parents=True)

    again = _store(root, hub)
    assert _snapshot(again) == before
    assert again.failures() == {}
    assert not tmp.exists()  # temp leftovers are cleaned at start
    again.install(*hub.package("segment", 2))
    assert again.running()["segment-coffee"] == "segment-coffee@2"
    assert sorted(p.name for p in (root / "segment-coffee").iterdir()) == [
        "1",
        "2",
        "current.json",
    ]
    assert _store(root, hub).running()["segment-coffee"] == "segment-coffee@2"


def test_corrupt_pointer_is_reported_not_fatal(tmp_path: Path, hub: Hub) -> None:
    store = _store(tmp_path, hub)
    store.install(*hub.package("churn", 1))
    (tmp_path / "churn-coffee" / "current.json").write_text("{not json")
    again = _store(tmp_path, hub)
    assert again.running() == {}
    assert again.failures()["churn-coffee"].reason == "corrupt_pointer"


def test_untrusted_key_after_rotation_falls_back_to_builtin(tmp_path: Path, hub: Hub) -> None:
    builtin = tmp_path / "builtin"
    data = _onnx.segment_onnx(N, 5)
    _onnx.write_builtin(
        builtin, _onnx.make_manifest("segment", PRODUCT, data, FEATURES, None), data
    )
    root = tmp_path / "models"
    _store(root, hub, builtin=builtin).install(*hub.package("segment", 2))
    rotated = ModelStore(root, PRODUCT, {}, builtin=builtin)
    assert rotated.running() == {"segment-coffee": "segment-coffee@1"}
    assert rotated.is_builtin("segment")
    assert rotated.failures()["segment-coffee"].reason == "unknown_key"


def test_builtin_models(tmp_path: Path, hub: Hub) -> None:
    builtin = tmp_path / "builtin"
    for kind in ("segment", "churn", "anomaly"):
        data = _onnx_for(kind, 9)
        # Unsigned: builtins are trusted like the code that ships them.
        manifest = _onnx.make_manifest(kind, PRODUCT, data, _inputs_for(kind), None)
        _onnx.write_builtin(builtin, manifest, data)
    # Another product's default (ignored) and a damaged one (refused, reported).
    tv = _onnx.segment_onnx(len(feature_names("tv")), 9)
    _onnx.write_builtin(
        builtin, _onnx.make_manifest("segment", "tv", tv, feature_names("tv"), None), tv
    )
    broken = _onnx.churn_onnx(N, 9)
    _onnx.write_builtin(
        builtin,
        _onnx.make_manifest("churn", PRODUCT, broken, FEATURES, None, name="aaa-churn"),
        broken[:-1],
    )

    root = tmp_path / "models"
    store = _store(root, hub, builtin=builtin)
    assert store.running() == {
        "segment-coffee": "segment-coffee@1",
        "churn-coffee": "churn-coffee@1",
        "anomaly-coffee": "anomaly-coffee@1",
    }
    assert all(store.is_builtin(k) for k in ("segment", "churn", "anomaly"))
    assert store.failures()["aaa-churn"].reason == "hash_mismatch"
    builtin_churn = store.churn(ROW)

    # An installed model takes over its kind; the other kinds stay on their defaults.
    store.install(*hub.package("churn", 2))
    assert store.running()["churn-coffee"] == "churn-coffee@2"
    assert not store.is_builtin("churn")
    assert store.is_builtin("segment")
    with pytest.raises(ModelError) as err:
        store.rollback("churn-coffee")  # the default is not an installed version
    assert err.value.reason == "no_previous"
    # Not newer than the default that serves: refused as a downgrade.
    with pytest.raises(ModelRejected) as rejected:
        store.install(*hub.package("segment", 1, seed=3))
    assert rejected.value.reason == "downgrade"

    again = _store(root, hub, builtin=builtin)
    assert again.running() == store.running()
    assert again.churn(ROW) == store.churn(ROW) != builtin_churn


def test_a_new_name_for_a_kind_replaces_the_old_one(tmp_path: Path, hub: Hub) -> None:
    store = _store(tmp_path, hub)
    store.install(*hub.package("segment", 4))
    store.install(*hub.package("segment", 1, name="segment-coffee-v2"))
    assert store.running() == {"segment-coffee-v2": "segment-coffee-v2@1"}
    assert not (tmp_path / "segment-coffee").exists()
    assert _store(tmp_path, hub).running() == {"segment-coffee-v2": "segment-coffee-v2@1"}


def test_anomaly_model_for_any_product(tmp_path: Path, hub: Hub) -> None:
    store = _store(tmp_path, hub)
    store.install(*hub.package("anomaly", 1, product="any", name="anomaly-any"))
    assert store.running() == {"anomaly-any": "anomaly-any@1"}
    with pytest.raises(ModelRejected) as err:
        store.install(*hub.package("segment", 1, product="any", name="segment-any"))
    assert err.value.reason == "wrong_product"


def test_readers_never_see_a_half_installed_model(tmp_path: Path, hub: Hub) -> None:
    store = _store(tmp_path, hub)
    store.install(*hub.package("churn", 1))
    expected = {
        f"churn-coffee@{v}": float(_reference(_onnx.churn_onnx(N, v), "probabilities", [ROW])[0, 1])
        for v in (1, 2, 3)
    }
    packages = [hub.package("churn", v) for v in (2, 3)]
    seen: list[tuple[float, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                result = store.churn(ROW)
                assert result is not None
                seen.append(result)
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for package in packages:
            store.install(*package)
        store.rollback("churn-coffee")
    finally:
        stop.set()
        reader.join()
    assert not errors
    assert {ref for _, ref in seen} <= set(expected)
    for p, ref in seen:
        assert p == pytest.approx(expected[ref])


def test_unknown_product_is_an_error(tmp_path: Path, hub: Hub) -> None:
    with pytest.raises(ModelError) as err:
        ModelStore(tmp_path, "toaster", hub.keys)
    assert err.value.reason == "unknown_product"
