"""Micro-segments: a second level of clustering inside each segment (issue 11).

A segment groups customers of one kind; inside it, customers still differ (how much
they use the product, at which hour, their settings). Micro-segments split each
segment again, on the same habit features as segments (:func:`segment_columns`), scaled
robustly *within the segment* (its own median and spread, never below the feature's
floor): the segment-level projection (LDA on the personas) is left out on purpose, as
it keeps only the directions that tell personas apart, which is exactly what does not
vary inside one.

Per segment, k in 2..4 is chosen by resampling stability (as segments choose theirs:
:func:`stability`), and a segment with fewer than :data:`MIN_ROWS` rows is not split
(k = 1). Each segment's split exports as its own ONNX graph (read the habit columns,
scale, k-means; ``label`` output), run on rows its segment model put in that segment.

**Evaluated honestly** (:func:`evaluate_micro`): on a held-out fleet, per segment,
(a) *stability*: the agreement (adjusted Rand index) of the micro-labels of two models
trained on two different training fleets; (b) *silhouette* of the micro-split against
the best split of the segment into the same k groups by a single feature's quantiles
(a marketer's "light/heavy users" rule). A micro-segmentation worth shipping is stable
and separates better than one feature does.

Shipping (the ship rule, one graph per product behind the segment label, its signed
manifest) is :mod:`._micro_ship`; the agent runs that graph after the segment model and
emits ``<product>.micro_segment`` (docs/models.md, "Micro-segments").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.pipeline import Pipeline

from ._fit import column_names, reads, robust_scaler
from ._onnx import keep_outputs, run, to_onnx
from ._segments import segment_columns, stability

__all__ = ["MIN_ROWS", "MicroModel", "evaluate_micro", "fit_micro", "segment_labels"]

#: rows a segment needs to be split (fewer: k-means on a handful of customers is noise)
MIN_ROWS = 30
_CANDIDATES = range(2, 5)


@dataclass
class MicroModel:
    """Per segment, its split as an ONNX graph (absent: not split) and its k."""

    product: str
    columns: list[int]
    onnx: dict[int, bytes] = field(default_factory=dict)
    k: dict[int, int] = field(default_factory=dict)

    def predict(self, x: np.ndarray, segments: np.ndarray) -> np.ndarray:
        """Micro-label of each row inside its segment (0 for a segment not split)."""
        out = np.zeros(len(x), dtype=np.int64)
        for segment, model in self.onnx.items():
            rows = np.flatnonzero(segments == segment)
            if len(rows):
                out[rows] = run(model, "label", x[rows]).reshape(-1)
        return out


def segment_labels(segment_onnx: bytes, x: np.ndarray) -> np.ndarray:
    """What the segment model (as devices run it) answers for rows ``x``."""
    labels: np.ndarray = run(segment_onnx, "label", x).reshape(-1).astype(np.int64)
    return labels


def fit_micro(
    x: Sequence[Sequence[float]], segments: np.ndarray, product: str, *, seed: int = 0
) -> MicroModel:
    """Split each segment of the rows ``x`` (labelled ``segments``) as the module says."""
    xs = np.asarray(x, dtype=np.float32)
    columns = segment_columns(product)
    model = MicroModel(product, columns)
    for segment in sorted(set(segments.tolist())):
        rows = xs[segments == segment]
        if len(rows) < MIN_ROWS:
            model.k[segment] = 1
            continue
        sub = rows[:, columns].astype(np.float64)
        scaler = robust_scaler(sub, column_names(product, columns))
        curve = stability(scaler.transform(sub), _CANDIDATES, seed=seed, rounds=6)
        best = max(curve.values())
        k = min(k for k, v in curve.items() if v >= best - 0.01)  # the coarsest as stable
        kmeans = KMeans(k, n_init=10, random_state=seed).fit(scaler.transform(sub))
        pipe = Pipeline([("read", reads(columns).fit(rows)), ("scale", scaler), ("kmeans", kmeans)])
        proto = keep_outputs(to_onnx(pipe, xs.shape[1]), {"label"})
        model.onnx[segment] = proto.SerializeToString()
        model.k[segment] = k
    return model


def _best_single_feature(z: np.ndarray, k: int) -> tuple[float, int]:
    """The best silhouette a split into ``k`` quantile groups of one feature reaches, and
    that feature's column (in ``z``'s columns)."""
    best, where = -1.0, -1
    for j in range(z.shape[1]):
        edges = np.quantile(z[:, j], np.linspace(0, 1, k + 1)[1:-1])
        labels = np.searchsorted(edges, z[:, j], side="right")
        if len(set(labels.tolist())) < 2:
            continue
        score = float(silhouette_score(z, labels))
        if score > best:
            best, where = score, j
    return best, where


def evaluate_micro(
    a: MicroModel, b: MicroModel, x: Sequence[Sequence[float]], segments: np.ndarray
) -> dict[int, dict[str, Any]]:
    """Per segment of the held-out rows ``x``: k, rows, the stability of model ``a``
    against ``b`` (trained on another fleet) and ``a``'s silhouette beside the best
    single-feature split's (module docstring)."""
    xs = np.asarray(x, dtype=np.float32)
    la, lb = a.predict(xs, segments), b.predict(xs, segments)
    names = column_names(a.product, a.columns)
    out: dict[int, dict[str, Any]] = {}
    for segment in sorted(set(segments.tolist())):
        mask = segments == segment
        k = a.k.get(segment, 1)
        entry: dict[str, Any] = {"rows": int(mask.sum()), "k": k}
        out[segment] = entry
        if k < 2 or len(set(la[mask].tolist())) < 2 or mask.sum() < MIN_ROWS:
            entry["note"] = "not split"
            continue
        sub = xs[mask][:, a.columns].astype(np.float64)
        z = robust_scaler(sub, names).transform(sub)
        one, column = _best_single_feature(z, k)
        entry.update(
            stability_ari=round(float(adjusted_rand_score(la[mask], lb[mask])), 3),
            silhouette=round(float(silhouette_score(z, la[mask])), 3),
            silhouette_one_feature=round(one, 3),
            one_feature=names[column] if column >= 0 else None,
        )
    return out
