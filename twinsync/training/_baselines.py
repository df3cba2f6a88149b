"""Simple baselines fitted on the same training data as the models, scored beside them.

A model's score means little alone: a segment model at 0.9 accuracy is no achievement
if one raw feature gets 0.88. Every held-out score in the report is shown next to:

- segments: the best one- and two-feature **k-means** (the model's own method on one
  or two of its inputs) and the best one- and two-feature **rule** (a decision tree with
  one leaf per persona on those features, i.e. "cups a day above 3 and morning share
  above half: early bird"), each feature or pair chosen on the training fleet by
  accuracy against the personas, which the model itself never sees: the baselines are
  given the answer, the model is not;
- churn: use against usual over the last 7 days (``uses_vs_usual_7d``, lower is
  riskier), the one feature the previous models effectively were;
- anomalies: a threshold on the distance from the running mean (``abs_z``) and one on
  the jump from the last normal reading, each threshold chosen on the training fleet
  for the best F1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.tree import DecisionTreeClassifier

from protocol import ANOMALY_FEATURES, feature_names

from ._fit import robust_scaler
from ._metrics import matched_accuracy
from ._segments import persona_discriminant

__all__ = [
    "CHURN_BASELINE",
    "SegmentBaseline",
    "Threshold",
    "churn_baseline",
    "fit_anomaly_thresholds",
    "fit_segment_baselines",
    "fit_segment_reference",
]

#: The one-feature churn baseline (negated: the lower, the riskier).
CHURN_BASELINE = "uses_vs_usual_7d"


@dataclass
class SegmentBaseline:
    """A fitted one- or two-feature segmentation."""

    name: str
    features: tuple[str, ...]
    train_accuracy: float
    predict: Callable[[np.ndarray], np.ndarray]


def _kmeans(
    x: np.ndarray, names: Sequence[str], k: int, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    scaler = robust_scaler(x, names)
    model = KMeans(k, n_init=4, random_state=seed).fit(scaler.transform(x))
    return lambda rows: model.predict(scaler.transform(rows))


def _rule(
    x: np.ndarray, personas: Sequence[str], leaves: int, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    names = sorted(set(personas))
    y = np.asarray([names.index(p) for p in personas])
    tree = DecisionTreeClassifier(max_leaf_nodes=max(2, leaves), random_state=seed).fit(x, y)
    predict: Callable[[np.ndarray], np.ndarray] = tree.predict
    return predict


def fit_segment_baselines(
    x: list[list[float]],
    personas: list[str],
    product: str,
    columns: Sequence[int],
    k: int,
    *,
    seed: int = 0,
) -> list[SegmentBaseline]:
    """The best 1- and 2-feature k-means and rules on the training rows (see module)."""
    xs = np.asarray(x, dtype=np.float64)
    names = feature_names(product)
    leaves = len(set(personas))
    out = []
    for size in (1, 2):
        for method in ("kmeans", "rule"):
            best: SegmentBaseline | None = None
            for combo in combinations(columns, size):
                sub = xs[:, list(combo)]
                picked = tuple(names[i] for i in combo)
                if method == "kmeans" and len(np.unique(sub, axis=0)) < k:
                    # Fewer distinct rows than segments (a feature constant in the
                    # fleet, as some are on the easy profile): no k-means of it exists.
                    continue
                if method == "kmeans":
                    fitted = _kmeans(sub, picked, k, seed)
                else:
                    fitted = _rule(sub, personas, leaves, seed)
                acc = matched_accuracy(fitted(sub).tolist(), personas)
                if best is None or acc > best.train_accuracy:
                    best = SegmentBaseline(
                        f"{method}_{size}", picked, acc, _on_columns(fitted, list(combo))
                    )
            if best is not None:
                out.append(best)
    return out


def fit_segment_reference(
    x: list[list[float]], personas: list[str], product: str, columns: Sequence[int]
) -> SegmentBaseline:
    """Not a baseline but a reference: a classifier told the personas, on every segment
    input (robustly scaled, linear discriminant analysis shrunk like the segments'). What
    the segment model's inputs can tell about personas when the answer is given at
    training: where it falls short of a target, so does any segmentation of those
    inputs."""
    xs = np.asarray(x, dtype=np.float64)[:, list(columns)]
    names = feature_names(product)
    scaler = robust_scaler(xs, [names[i] for i in columns])
    lda = persona_discriminant().fit(scaler.transform(xs), personas)

    def predict(rows: np.ndarray) -> np.ndarray:
        labels: np.ndarray = lda.predict(scaler.transform(rows))
        return labels

    accuracy = matched_accuracy(predict(xs).tolist(), personas)
    return SegmentBaseline(
        "persona_classifier",
        tuple(names[i] for i in columns),
        accuracy,
        _on_columns(predict, list(columns)),
    )


def _on_columns(
    fitted: Callable[[np.ndarray], np.ndarray], columns: list[int]
) -> Callable[[np.ndarray], np.ndarray]:
    return lambda rows: fitted(np.asarray(rows, dtype=np.float64)[:, columns])


def churn_baseline(x: list[list[float]], product: str) -> np.ndarray:
    """Risk by the one-feature baseline: minus the 7-day use against usual."""
    column = feature_names(product).index(CHURN_BASELINE)
    return -np.asarray(x, dtype=np.float64)[:, column]


@dataclass
class Threshold:
    """Flag a reading when ``abs(feature) >= threshold``."""

    feature: str
    threshold: float

    def flags(self, x: list[list[float]] | np.ndarray) -> np.ndarray:
        """Boolean flags of the rows."""
        column = ANOMALY_FEATURES.index(self.feature)
        return np.abs(np.asarray(x, dtype=np.float64)[:, column]) >= self.threshold


def fit_anomaly_thresholds(
    x: list[list[float]], injected: list[bool], features: Sequence[str]
) -> list[Threshold]:
    """For each of ``features``, the threshold on its magnitude with the best training F1."""
    xs, truth = np.abs(np.asarray(x, dtype=np.float64)), np.asarray(injected, dtype=bool)
    out = []
    for name in features:
        values = xs[:, ANOMALY_FEATURES.index(name)]
        order = np.argsort(-values)
        hits = np.cumsum(truth[order])
        flagged = np.arange(1, len(values) + 1)
        f1 = 2 * hits / (flagged + max(int(truth.sum()), 1))
        # Only thresholds between distinct values can be applied.
        distinct = np.r_[values[order][1:] < values[order][:-1], True]
        at = int(np.argmax(np.where(distinct, f1, -1.0)))
        out.append(Threshold(name, float(values[order][at])))
    return out
