"""Segment models: which behaviour segment a customer is in.

Segments read the features that describe a habit (when in the day and week the customer
acts, how much, their settings), never the ones that describe a moment (the last week,
trends, the comparisons with their usual self: noise around a constant for everyone
who is not churning, which k-means weighs like signal).

With labelled training data (the simulator's personas) the features are first
projected onto the directions that separate the personas best (linear discriminant
analysis, fitted on the training fleet only), then clustered by k-means in that space:
the data still decides the segments and their number, but distances are measured along
what tells kinds of customers apart rather than along whatever varies most. On raw
scaled features, with customers of one persona differing as real customers do, k-means
split customers by their coffee consumption, not by their persona (held-out accuracy
0.56 against 0.82 for coffee on the validation fleet). Without labels (``--influx``),
plain k-means on the robustly scaled features.

k is chosen by stability: for each k in 3..8, pairs of 80 % subsamples are clustered
independently and compared (adjusted Rand index) on the rows both contain; real segments
come back the same from any sample. One k serves every product (segments describe
customers, not devices).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import Pipeline

from protocol import feature_names

from ._fit import CHURN_INPUTS, Fitted, column_names, reads, robust_scaler
from ._onnx import keep_outputs, to_onnx

__all__ = [
    "SegmentSpace",
    "choose_k",
    "fit_segment",
    "persona_discriminant",
    "segment_columns",
    "stability",
]

#: Features that describe a moment, not a habit: segments leave them out.
_MOMENT = frozenset(
    {
        *CHURN_INPUTS,
        "usual_days",
        "usual_uses_per_day",
        "trend_7_vs_21",
        "trend_14_vs_14",
        "recency_h",
        "events_per_day_7d",
    }
)


def segment_columns(product: str) -> list[int]:
    """Indices of the features segments are made of: habits, not moments."""
    return [i for i, name in enumerate(feature_names(product)) if name not in _MOMENT]


def persona_discriminant() -> LinearDiscriminantAnalysis:
    """Linear discriminant analysis with the within-persona covariance shrunk a little
    (1 % toward a scaled identity).

    A habit that does not vary inside any persona (the easy fleet's personas have no
    variation at all) makes the plain estimate singular: the SVD solver then returned
    a direction scaled by 5e15 that swamped the others, and the thermostat's segments
    fell to 0.63 on a 38-customer easy fleet (1.0 shrunk). Chosen on training-side
    fleets: Ledoit-Wolf's own amount (``"auto"``) and 10 % put realistic thermostat
    customers in their persona at 0.52 and 0.73, 1 % at 0.76 (0.77 unshrunk).
    """
    return LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.01)


def _unit_within(lda: LinearDiscriminantAnalysis) -> np.ndarray:
    """The discriminant directions, each scaled to unit spread inside a persona.

    The eigen solver returns them of unit length, so k-means would weigh them by how
    the features happen to be scaled; scaled by the within-persona spread along each
    (as the SVD solver's are), a distance counts in persona-sized steps on every axis.
    """
    vectors = np.asarray(lda.scalings_, dtype=np.float64)
    spread = np.einsum("ij,ik,kj->j", vectors, lda.covariance_, vectors)
    scaled: np.ndarray = vectors / np.sqrt(np.maximum(spread, 1e-12))
    return scaled


class SegmentSpace:
    """Where segments are found: robustly scaled habit features, projected onto the
    directions that separate the training personas (when ``personas`` are given)."""

    def __init__(
        self, x: np.ndarray, product: str, columns: Sequence[int], personas: Sequence[str] | None
    ) -> None:
        self.columns = list(columns)
        sub = np.asarray(x, dtype=np.float64)[:, self.columns]
        self.scaler = robust_scaler(sub, column_names(product, self.columns))
        self.projection: PCA | None = None
        if personas is not None and len(set(personas)) > 1:
            scaled = self.scaler.transform(sub)
            lda = persona_discriminant().fit(scaled, list(personas))
            # LDA's transform, x @ scalings, as a PCA: one linear node in ONNX.
            n = min(len(set(personas)) - 1, sub.shape[1])
            pca = PCA(n_components=n)
            pca.fit(scaled)  # sets the fitted attributes; replaced below
            pca.mean_ = np.zeros(sub.shape[1])
            pca.components_ = _unit_within(lda)[:, :n].T
            pca.explained_variance_ = np.ones(n)
            pca.whiten = False
            self.projection = pca

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Rows of whole feature vectors, in the space segments are found in."""
        z: np.ndarray = self.scaler.transform(np.asarray(x, dtype=np.float64)[:, self.columns])
        if self.projection is not None:
            z = self.projection.transform(z)
        return z


def stability(
    xs: np.ndarray, candidates: range = range(3, 9), seed: int = 0, rounds: int = 8
) -> dict[int, float]:
    """How stable k-means is for each k under resampling (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = len(xs)
    scores: dict[int, float] = {}
    for k in candidates:
        if k >= int(0.8 * n):
            break  # too few rows to cluster a subsample into k
        agreement = []
        for r in range(rounds):
            a = rng.choice(n, int(0.8 * n), replace=False)
            b = rng.choice(n, int(0.8 * n), replace=False)
            with warnings.catch_warnings():
                # Fewer distinct points than k (customers identical in the segment space,
                # as on a fleet without variation) is an answer here, not an error: that
                # k finds fewer clusters, and its agreement says how stable that is.
                warnings.simplefilter("ignore", ConvergenceWarning)
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


def fit_segment(
    x: list[list[float]],
    k: int,
    product: str,
    columns: Sequence[int],
    *,
    personas: Sequence[str] | None = None,
    seed: int = 0,
) -> Fitted:
    """k-means with ``k`` segments in the :class:`SegmentSpace` of ``columns``.

    The model takes the whole feature vector (every model of a product has the same
    input schema) and reads ``columns`` (:func:`segment_columns`).
    """
    xs = np.asarray(x, dtype=np.float32)
    space = SegmentSpace(xs, product, columns, personas)
    kmeans = KMeans(k, n_init=20, random_state=seed).fit(space.transform(xs))
    steps = [("read", reads(columns).fit(xs)), ("scale", space.scaler)]
    if space.projection is not None:
        steps.append(("project", space.projection))
    model = Pipeline([*steps, ("kmeans", kmeans)])
    proto = keep_outputs(to_onnx(model, xs.shape[1]), {"label"})
    return Fitted(proto.SerializeToString(), {"k": float(k)})
