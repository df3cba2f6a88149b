"""Fit the three model kinds, export them to ONNX with the agreed I/O, and evaluate them.

Conventions (protocol/_manifest.py): input ``features`` float32 ``[N, F]``; segment →
``label``; churn → ``probabilities`` (column 1 = P(churn within the horizon)); anomaly →
``scores`` ``[N, 1]``, larger is more anomalous (the classifier's probability column,
sliced out in the exported graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.calibration import CalibratedClassifierCV
from sklearn.cluster import KMeans
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "Fitted",
    "choose_k",
    "fit_anomaly",
    "fit_churn",
    "fit_segment",
    "precision_recall",
    "stability",
]

_OPSET = 17


@dataclass
class Fitted:
    """A fitted model, its ONNX bytes and what the trainer measured."""

    onnx: bytes
    metrics: dict[str, float]
    threshold: float = 0.0


def _to_onnx(model: Any, n_features: int, options: dict[Any, Any] | None = None) -> onnx.ModelProto:
    proto: onnx.ModelProto = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, n_features]))],
        target_opset={"": _OPSET, "ai.onnx.ml": 3},
        options=options,
    )
    return proto


def _keep_outputs(proto: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    keep = [o for o in proto.graph.output if o.name in names]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    return proto


def stability(
    xs: np.ndarray, candidates: range = range(3, 9), seed: int = 0, rounds: int = 8
) -> dict[int, float]:
    """How stable k-means is for each k under resampling (see docs/models.md).

    For each k, pairs of 80 % subsamples are clustered independently and their labels
    compared on the rows both contain (adjusted Rand index). Real segments come back the
    same from any sample; splitting one segment or merging two does not.
    """
    rng = np.random.default_rng(seed)
    n = len(xs)
    scores: dict[int, float] = {}
    for k in candidates:
        if k >= n:
            break
        agreement = []
        for r in range(rounds):
            a = rng.choice(n, int(0.8 * n), replace=False)
            b = rng.choice(n, int(0.8 * n), replace=False)
            la = KMeans(k, n_init=5, random_state=seed + r).fit(xs[a]).predict(xs)
            lb = KMeans(k, n_init=5, random_state=seed + 100 + r).fit(xs[b]).predict(xs)
            both = np.intersect1d(a, b)
            agreement.append(adjusted_rand_score(la[both], lb[both]))
        scores[k] = float(np.mean(agreement))
    return scores


def choose_k(per_product: list[dict[int, float]]) -> int:
    """One k for the brand: the best mean stability over the products.

    Segments describe customers, not devices, so every product's model uses the same k;
    pooling the products' evidence is also far steadier than choosing per product (on
    small samples one product's stability curve is flat or noisy).
    """
    ks = set.intersection(*(set(p) for p in per_product))
    mean = {k: float(np.mean([p[k] for p in per_product])) for k in ks}
    best = max(mean.values())
    # Among (nearly) equally stable k, the largest: finer segments at no cost in stability.
    return max(k for k, v in mean.items() if v >= best - 0.01)


def fit_segment(x: list[list[float]], k: int, *, seed: int = 0) -> Fitted:
    """Standardise + k-means with ``k`` segments (see :func:`choose_k`)."""
    xs = np.asarray(x, dtype=np.float32)
    model = Pipeline(
        [("scale", StandardScaler()), ("kmeans", KMeans(k, n_init=20, random_state=seed))]
    ).fit(xs)
    proto = _keep_outputs(_to_onnx(model, xs.shape[1]), {"label"})
    return Fitted(proto.SerializeToString(), {"k": float(k)})


def fit_churn(x: list[list[float]], y: list[bool], *, seed: int = 0) -> Fitted:
    """Gradient-boosted trees, sigmoid-calibrated into a probability of churning.

    Trees, because how alarming a drop in use is depends on the customer's habits (a
    weekend-only user's quiet Tuesday is not a warning); one ONNX tree-ensemble node keeps
    inference in microseconds.
    """
    xs, ys = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
    # Shallow, slow-learning and with large leaves: the rows are snapshots of the same
    # customers day after day, so deep trees would memorise customers, not churn.
    base = GradientBoostingClassifier(
        n_estimators=100,
        max_depth=2,
        learning_rate=0.05,
        subsample=0.7,
        min_samples_leaf=40,
        random_state=seed,
    )
    model = CalibratedClassifierCV(base, method="sigmoid", cv=3).fit(xs, ys)
    proto = _to_onnx(model, xs.shape[1], {id(model): {"zipmap": False}})
    proto = _keep_outputs(proto, {"probabilities"})
    train_auc = _auc(ys, model.predict_proba(xs)[:, 1])
    return Fitted(proto.SerializeToString(), {"train_auc": train_auc})


def fit_anomaly(x: list[list[float]], injected: list[bool], *, seed: int = 0) -> Fitted:
    """Boosted trees on the baseline features, trained on firmware_sim's labelled faults.

    Supervised, because the simulator knows which readings it corrupted; an unsupervised
    isolation forest confused genuine jumps (a refilled water tank) with injected ones and
    cost ~1 ms per reading in ONNX.
    """
    xs, truth = np.asarray(x, dtype=np.float32), np.asarray(injected, dtype=bool)
    model = GradientBoostingClassifier(
        n_estimators=80, max_depth=3, learning_rate=0.1, random_state=seed
    ).fit(xs, truth.astype(np.int64))
    # A probability: flag at even odds. (Tuning it on the training rows picked thresholds
    # at the saturated top, which float32 inference then never reached.)
    threshold = 0.5
    p, r = precision_recall(model.predict_proba(xs)[:, 1] >= threshold, truth)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    proto = _to_onnx(model, xs.shape[1], {id(model): {"zipmap": False}})
    # scores = probabilities[:, 1:2]: the probability that the reading is anomalous.
    graph = proto.graph
    graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.array([1], np.int64), "anomaly_start"),
            onnx.numpy_helper.from_array(np.array([2], np.int64), "anomaly_end"),
            onnx.numpy_helper.from_array(np.array([1], np.int64), "anomaly_axis"),
        ]
    )
    graph.node.append(
        helper.make_node(
            "Slice",
            ["probabilities", "anomaly_start", "anomaly_end", "anomaly_axis"],
            ["scores"],
            name="anomaly_column",
        )
    )
    graph.output.append(helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [None, 1]))
    proto = _keep_outputs(proto, {"scores"})
    onnx.checker.check_model(proto)
    return Fitted(proto.SerializeToString(), {"train_f1": f1}, threshold=threshold)


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Precision and recall of boolean flags against the truth."""
    tp = int(np.sum(flagged & truth))
    return (tp / max(int(flagged.sum()), 1), tp / max(int(truth.sum()), 1))


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def ari(labels: list[int], personas: list[str]) -> float:
    """Adjusted Rand index between segments and personas."""
    return float(adjusted_rand_score(personas, labels))
