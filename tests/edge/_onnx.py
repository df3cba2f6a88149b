"""Tiny real ONNX models for the model-runtime tests, built like the hub's trainer does.

Conventions (protocol/_manifest.py): one input ``features`` float32 ``[N, F]``;
segment → ``label`` int64 ``[N]`` (StandardScaler + KMeans); churn → ``probabilities``
float32 ``[N, 2]`` (CalibratedClassifierCV(LogisticRegression), ``zipmap=False``);
anomaly → ``scores`` float32 ``[N, 1]``, larger = more anomalous. skl2onnx exports an
IsolationForest's ``scores`` as ``decision_function`` (larger = more *normal*), so the
graph's ``scores`` output is renamed ``normality`` and a final ``Neg`` node produces the
convention's ``scores`` (what ``twinsync/training/_fit.py`` does too). Only the
convention's output is kept as a graph output.

The deliberately broken graphs (NaN output, wrong output name, wrong input width) are
hand-built with ``onnx.helper``: they are real ONNX files onnxruntime loads and runs.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.calibration import CalibratedClassifierCV
from sklearn.cluster import KMeans
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from protocol import ANOMALY_FEATURES, ModelKind, ModelManifest, SigningKey, sha256_hex

_OPSET = {"": 17, "ai.onnx.ml": 3}


def _convert(model: object, n_features: int, options: dict[int, dict[str, bool]] | None) -> bytes:
    proto = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, n_features]))],
        target_opset=_OPSET,
        options=options,
    )
    return bytes(proto.SerializeToString())


def _keep_outputs(data: bytes, names: set[str]) -> bytes:
    proto = onnx.load_from_string(data)
    keep = [o for o in proto.graph.output if o.name in names]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


@functools.cache
def segment_onnx(n_features: int, seed: int = 0, k: int = 3) -> bytes:
    """StandardScaler + KMeans(k) on random data; output ``label``."""
    x = np.random.default_rng(seed).normal(size=(300, n_features)).astype(np.float32)
    model = Pipeline(
        [("scale", StandardScaler()), ("kmeans", KMeans(k, n_init=3, random_state=seed))]
    ).fit(x)
    return _keep_outputs(_convert(model, n_features, None), {"label"})


@functools.cache
def churn_onnx(n_features: int, seed: int = 0) -> bytes:
    """Calibrated logistic regression on random data; output ``probabilities``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, n_features)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(np.int64)
    clf = CalibratedClassifierCV(LogisticRegression(max_iter=500), method="sigmoid", cv=3)
    clf.fit(x, y)
    data = _convert(clf, n_features, {id(clf): {"zipmap": False}})
    return _keep_outputs(data, {"probabilities"})


@functools.cache
def anomaly_onnx(seed: int = 0) -> bytes:
    """IsolationForest whose decision function is negated into ``scores``."""
    n = len(ANOMALY_FEATURES)
    x = np.abs(np.random.default_rng(seed).normal(size=(500, n))).astype(np.float32)
    forest = IsolationForest(n_estimators=20, max_samples=128, random_state=seed).fit(x)
    proto = onnx.load_from_string(_convert(forest, n, None))
    # Rename every use (the forest's own "label" node reads "scores" too), then negate.
    for node in proto.graph.node:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == "scores":
                    names[i] = "normality"
    proto.graph.node.append(helper.make_node("Neg", ["normality"], ["scores"], name="to_anomaly"))
    return _keep_outputs(proto.SerializeToString(), {"scores"})


def _graph_model(
    nodes: list[onnx.NodeProto],
    n_features: int,
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto] | None = None,
) -> bytes:
    graph = helper.make_graph(
        nodes,
        "broken",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n_features])],
        outputs,
        initializer=initializers or [],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8  # what every onnxruntime >= 1.15 reads
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def nan_scores_onnx() -> bytes:
    """An anomaly-shaped graph (``scores`` [N, 1]) whose scores are NaN: sum(x) * NaN."""
    n = len(ANOMALY_FEATURES)
    return _graph_model(
        [
            helper.make_node("ReduceSum", ["features", "axes"], ["total"], keepdims=1),
            helper.make_node("Mul", ["total", "nan"], ["scores"]),
        ],
        n,
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 1])],
        [
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]),
        ],
    )


def renamed_output_onnx(name: str = "score") -> bytes:
    """A working anomaly-shaped graph whose output is called ``name`` (sum of features)."""
    n = len(ANOMALY_FEATURES)
    return _graph_model(
        [helper.make_node("ReduceSum", ["features", "axes"], [name], keepdims=1)],
        n,
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )


def unnormalised_churn_onnx(n_features: int) -> bytes:
    """A churn-shaped graph whose "probabilities" are the first two features (not in [0, 1]
    for a row of ones plus one, and never summing to 1)."""
    return _graph_model(
        [
            helper.make_node("Add", ["features", "one"], ["shifted"]),
            helper.make_node("Slice", ["shifted", "starts", "ends", "axes"], ["probabilities"]),
        ],
        n_features,
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
            helper.make_tensor("ends", TensorProto.INT64, [1], [2]),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ],
    )


def make_manifest(
    kind: ModelKind,
    product: str,
    onnx_bytes: bytes,
    inputs: tuple[str, ...],
    key: SigningKey | None,
    *,
    version: int = 1,
    name: str | None = None,
    threshold: float = 0.0,
) -> ModelManifest:
    """A manifest for ``onnx_bytes`` (signed by ``key`` unless None)."""
    manifest = ModelManifest(
        name=name or f"{kind}-{product}",
        version=version,
        kind=kind,
        product=product,
        inputs=inputs,
        sha256=sha256_hex(onnx_bytes),
        size=len(onnx_bytes),
        metrics={"train_rows": 300.0},
        threshold=threshold,
        horizon_days=28 if kind == "churn" else 0,
        created_ms=int(time.time() * 1000),
    )
    return manifest if key is None else manifest.sign(key)


def write_builtin(directory: Path, manifest: ModelManifest, onnx_bytes: bytes) -> None:
    """Lay a model out like the package's default-model directory (flat files)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{manifest.name}.onnx").write_bytes(onnx_bytes)
    (directory / f"{manifest.name}.manifest.json").write_text(manifest.to_json() + "\n")
