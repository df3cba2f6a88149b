"""Fit the three model kinds into ONNX graphs devices run (see :mod:`._onnx`).

Every model takes a product's whole feature vector (one input schema per product) and
reads the columns it needs (a ``ColumnTransformer`` in front, an
``ArrayFeatureExtractor`` node in ONNX). Features are scaled robustly: centred on the
median, divided by the spread of the middle half (the interquartile range, as a
standard deviation) but never by less than the feature's floor
(:func:`protocol.feature_floor`), so a feature nearly constant in the training fleet
cannot make ordinary noise look like many standard deviations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from protocol import ANOMALY_FEATURES, feature_floor, feature_names

from ._metrics import auc, precision_recall
from ._onnx import keep_outputs, run, score_column, to_onnx

__all__ = [
    "CHURN_INPUTS",
    "CHURN_TREES",
    "Fitted",
    "churn_columns",
    "column_names",
    "fit_anomaly",
    "fit_churn",
    "reads",
    "robust_scaler",
]

# The interquartile range of a normal distribution is 1.349 standard deviations.
_IQR_PER_SIGMA = 1.349
# The largest raw-score step one tree's leaf may make in the anomaly model (see there).
_MAX_LEAF = 10.0


@dataclass
class Fitted:
    """A fitted model, its ONNX bytes and what the trainer measured."""

    onnx: bytes
    metrics: dict[str, float]
    threshold: float = 0.0


def robust_scaler(x: np.ndarray, names: Sequence[str]) -> StandardScaler:
    """A fitted scaler: median centre, IQR spread floored by each feature's floor.

    A ``StandardScaler`` with its statistics set by hand, so it exports to ONNX as one
    ``Scaler`` node.
    """
    xs = np.asarray(x, dtype=np.float64)
    low, centre, high = np.percentile(xs, [25, 50, 75], axis=0)
    floors = np.asarray([feature_floor(n) for n in names])
    scale = np.maximum((high - low) / _IQR_PER_SIGMA, floors)
    scaler = StandardScaler()
    scaler.fit(xs[:2])  # sets the fitted attributes; overwritten below
    scaler.mean_, scaler.scale_, scaler.var_ = centre, scale, scale**2
    scaler.n_samples_seen_ = len(xs)
    return scaler


#: What a churn model reads: the customer's recent use against their own usual use, and
#: the two trends (last 7 days against the 21 before, last 14 against the 14 before).
#: (Habits and dayparts describe personas; which personas happen to churn in a training
#: fleet tells nothing about another fleet.)
CHURN_INPUTS = (
    "uses_vs_usual_3d",
    "uses_vs_usual_7d",
    "uses_vs_usual_14d",
    "silence_vs_usual",
    "use_ratio_7d",
    "use_ratio_14d",
    "trend_7_vs_21",
    "trend_14_vs_14",
)
#: Products whose churn model is boosted trees, not a logistic regression, and what the
#: trees read besides :data:`CHURN_INPUTS`: the days the usual rate rests on (a
#: comparison with a usual learnt from a few days means less). Chosen on training-side
#: fleets only (docs/models.md, "Churn"): for the thermostat, whose uses (setpoint
#: changes) are few and bursty, small trees beat the one-feature baseline on three
#: fleets of the training side where the linear model lost on two.
CHURN_TREES: dict[str, tuple[str, ...]] = {"thermostat": ("usual_days",)}
# The churn trees: small and slow-learning (a few dozen churners per training fleet).
_CHURN_TREES = {
    "n_estimators": 100,
    "max_depth": 2,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "min_samples_leaf": 50,
}


def churn_columns(product: str) -> list[int]:
    """Indices of what ``product``'s churn model reads in its feature vector:
    :data:`CHURN_INPUTS`, and for trees (:data:`CHURN_TREES`) a few more."""
    names = feature_names(product)
    return [names.index(name) for name in (*CHURN_INPUTS, *CHURN_TREES.get(product, ()))]


def reads(columns: Sequence[int]) -> ColumnTransformer:
    """The first step of a model that sees the whole vector and reads ``columns``
    (a ``ColumnTransformer``: an ``ArrayFeatureExtractor`` node in ONNX)."""
    return ColumnTransformer([("read", "passthrough", list(columns))])


def column_names(product: str, columns: Sequence[int]) -> list[str]:
    """The feature names of ``columns`` in ``product``'s vector."""
    names = feature_names(product)
    return [names[i] for i in columns]


def fit_churn(
    x: list[list[float]], y: list[bool], product: str, columns: Sequence[int], *, seed: int = 0
) -> Fitted:
    """A probability of churning from ``columns`` (:func:`churn_columns`).

    The model takes the whole feature vector and reads how the customer's recent use
    compares with their own usual use. Given the personas' habits too, boosted trees
    learnt which personas happened to churn in the training fleet, which told nothing
    about another fleet; on the comparisons alone, a logistic regression (robustly
    scaled: a three-node ONNX graph), or for the products of :data:`CHURN_TREES` small
    boosted trees (one ``TreeEnsemble`` node behind the column read).
    """
    xs, ys = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
    read = reads(columns).fit(xs)
    model: Pipeline
    if product in CHURN_TREES:
        trees = GradientBoostingClassifier(random_state=seed, **_CHURN_TREES)
        trees.fit(xs[:, list(columns)], ys)
        model = Pipeline([("read", read), ("model", trees)])
    else:
        scaler = robust_scaler(xs[:, list(columns)], column_names(product, columns))
        lr = LogisticRegression(max_iter=2000).fit(scaler.transform(xs[:, list(columns)]), ys)
        model = Pipeline([("read", read), ("scale", scaler), ("model", lr)])
    proto = to_onnx(model, xs.shape[1], {id(model): {"zipmap": False}})
    onnx = keep_outputs(proto, {"probabilities"}).SerializeToString()
    fitted = model.predict_proba(xs)[:, 1]
    # What devices run must answer as what was fitted (float32 in ONNX: close, not equal).
    exported = run(onnx, "probabilities", xs)[:, 1]
    gap = float(np.max(np.abs(exported - fitted))) if len(xs) else 0.0
    assert gap < 1e-4, f"the exported churn model of {product} answers {gap} off the fitted one"
    return Fitted(onnx, {"train_auc": auc(ys, fitted), "onnx_max_abs_diff": gap})


def _capped_leaves(model: GradientBoostingClassifier, xs: np.ndarray, truth: np.ndarray) -> None:
    """Re-estimate every tree's leaves in order, each step capped at ``_MAX_LEAF``.

    A leaf whose rows are all of one class gets a Newton step of sum / ~0: values of
    1e100 and more, which become infinities in ONNX's float32 (and a NaN where two
    meet). Capping them afterwards is not enough: the later trees were fitted as if the
    huge step had been taken, so they add nothing where the first tree was sure, and the
    capped sum stayed below even odds (the coffee model flagged 27 % of the water-level
    spikes it was trained on). So the steps are redone tree by tree on the capped sum so
    far (the same Newton step of the log-loss, sum of residuals over sum of p(1 - p)):
    later trees carry on where a capped one stopped.
    """
    y = truth.astype(np.float64)
    prior = min(max(float(y.mean()), 1e-6), 1 - 1e-6)
    raw = np.full(len(y), np.log(prior / (1.0 - prior)))
    for stage in model.estimators_[:, 0]:
        tree = stage.tree_
        leaf = stage.apply(xs)
        p = 1.0 / (1.0 + np.exp(-raw))
        num = np.bincount(leaf, weights=y - p, minlength=tree.node_count)
        den = np.bincount(leaf, weights=p * (1.0 - p), minlength=tree.node_count)
        step = np.where(den > 1e-12, num / np.maximum(den, 1e-12), 0.0)
        leaves = np.unique(leaf)
        tree.value[leaves, 0, 0] = np.clip(step[leaves], -_MAX_LEAF, _MAX_LEAF)
        raw += model.learning_rate * tree.value[leaf, 0, 0]


def fit_anomaly(x: list[list[float]], injected: list[bool], *, seed: int = 0) -> Fitted:
    """Boosted trees on the baseline features, trained on firmware_sim's labelled faults.

    Supervised, because the simulator knows which readings it corrupted; an unsupervised
    isolation forest confused genuine jumps (a refilled water tank) with injected ones and
    cost ~1 ms per reading in ONNX.
    """
    xs, truth = np.asarray(x, dtype=np.float32), np.asarray(injected, dtype=bool)
    assert xs.shape[1] == len(ANOMALY_FEATURES)
    model = GradientBoostingClassifier(
        n_estimators=80, max_depth=3, learning_rate=0.1, random_state=seed
    ).fit(xs, truth.astype(np.int64))
    _capped_leaves(model, xs, truth)
    # A probability: flag at even odds. (Tuning it on the training rows picked thresholds
    # at the saturated top, which float32 inference then never reached.)
    threshold = 0.5
    p, r = precision_recall(model.predict_proba(xs)[:, 1] >= threshold, truth)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    proto = score_column(to_onnx(model, xs.shape[1], {id(model): {"zipmap": False}}))
    return Fitted(proto.SerializeToString(), {"train_f1": f1}, threshold=threshold)
