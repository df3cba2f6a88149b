"""Fit the three model kinds, export them to ONNX with the agreed I/O, and evaluate them.

Conventions (protocol/_manifest.py): input ``features`` float32 ``[N, F]``; segment →
``label``; churn → ``probabilities`` (column 1 = P(churn within the horizon)); anomaly →
``scores`` ``[N, 1]``, larger is more anomalous (the classifier's probability column,
sliced out in the exported graph).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from protocol import feature_names

__all__ = [
    "CHURN_INPUTS",
    "Fitted",
    "auc_interval",
    "choose_k",
    "churn_columns",
    "fit_anomaly",
    "fit_churn",
    "fit_segment",
    "precision_recall",
    "segment_columns",
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


#: What a churn model reads: the customer's recent use against their own usual use.
#: (Habits and dayparts describe personas; which personas happen to churn in a training
#: fleet tells nothing about another fleet.)
CHURN_INPUTS = ("uses_vs_usual_3d", "uses_vs_usual_7d", "uses_vs_usual_14d", "silence_vs_usual")
#: Features that describe a moment, not a habit (trends, the hours since the last use,
#: the comparisons with the customer's usual self): segments leave them out.
_MOMENT = frozenset(
    {
        *CHURN_INPUTS,
        "usual_days",
        "usual_uses_per_day",
        "trend_7_vs_21",
        "trend_14_vs_14",
        "recency_h",
    }
)


def churn_columns(product: str) -> list[int]:
    """Indices of :data:`CHURN_INPUTS` in ``product``'s feature vector."""
    names = feature_names(product)
    return [names.index(name) for name in CHURN_INPUTS]


def segment_columns(product: str) -> list[int]:
    """Indices of the features segments are made of: habits, not moments."""
    return [i for i, name in enumerate(feature_names(product)) if name not in _MOMENT]


def _reads(columns: Sequence[int]) -> ColumnTransformer:
    """The first step of a model that sees the whole vector and reads ``columns``."""
    return ColumnTransformer([("read", "passthrough", list(columns))])


def fit_segment(x: list[list[float]], k: int, columns: Sequence[int], *, seed: int = 0) -> Fitted:
    """Standardise + k-means with ``k`` segments (see :func:`choose_k`) on ``columns``.

    The model takes the whole feature vector (every model of a product has the same
    input schema) and reads :func:`segment_columns`. The comparisons with a customer's
    usual use are noise around a constant for everyone who is not churning, and k-means
    weighs noise like signal (with them, coffee's held-out ARI fell to 0.60); with the
    trends and recency too, k=4 and k=5 were equally stable.
    """
    xs = np.asarray(x, dtype=np.float32)
    model = Pipeline(
        [
            ("read", _reads(columns)),
            ("scale", StandardScaler()),
            ("kmeans", KMeans(k, n_init=20, random_state=seed)),
        ]
    ).fit(xs)
    proto = _keep_outputs(_to_onnx(model, xs.shape[1]), {"label"})
    return Fitted(proto.SerializeToString(), {"k": float(k)})


def fit_churn(x: list[list[float]], y: list[bool], columns: Sequence[int]) -> Fitted:
    """Logistic regression on ``columns`` into a probability of churning.

    The model takes the whole feature vector and reads :func:`churn_columns`: how the
    customer's recent use compares with their own usual use. Given the personas' habits
    too, boosted trees learnt which personas happened to churn in the training fleet,
    which told nothing about another fleet (coffee on a validation fleet: AUC 0.80
    against 0.88); a linear model on the few comparisons generalises, and is a
    three-node ONNX graph.
    """
    xs, ys = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
    model = Pipeline(
        [
            ("read", _reads(columns)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    ).fit(xs, ys)
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


def auc_interval(
    truth: list[bool], scores: np.ndarray, groups: list[str], *, seed: int = 0, rounds: int = 400
) -> tuple[float, float, float]:
    """ROC AUC and its 95 % interval, bootstrapping whole groups (customers).

    A customer's snapshots are not independent evidence (the negatives are weekly
    snapshots of the same customers), so groups are resampled, not rows.
    """
    y, p = np.asarray(truth, dtype=bool), np.asarray(scores, dtype=np.float64)
    auc = _auc(y.astype(np.int64), p)
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    members: list[list[int]] = [[] for _ in names]
    for row, g in enumerate(groups):
        members[index[g]].append(row)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(rounds):
        picked = rng.integers(0, len(names), len(names))
        rows = np.concatenate([members[i] for i in picked])
        if 0 < y[rows].sum() < len(rows):
            samples.append(roc_auc_score(y[rows], p[rows]))
    if not samples:
        return auc, float("nan"), float("nan")
    low, high = np.percentile(samples, [2.5, 97.5])
    return auc, float(low), float(high)


def ari(labels: list[int], personas: list[str]) -> float:
    """Adjusted Rand index between segments and personas."""
    return float(adjusted_rand_score(personas, labels))
