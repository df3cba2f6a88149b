"""Micro-segments: a segment with two kinds of customers inside is split into them (by
the exported ONNX graph, as a device would run it), a small segment is not split, the
split is reproducible, and the evaluation reports stability and the one-feature
comparison a reader can check."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from protocol import feature_names
from twinsync.training import MicroModel, evaluate_micro, fit_micro

PRODUCT = "coffee"
NAMES = feature_names(PRODUCT)


def _rows(rng: np.random.Generator, n: int, **means: float) -> np.ndarray:
    """``n`` coffee feature vectors around a common customer, ``means`` overriding."""
    base = dict.fromkeys(NAMES, 0.2)
    base.update(events_per_day_28d=3.0, habit_strength=3.0, habit_cups_per_day=2.0)
    base.update(means)
    x = np.array([[base[name] for name in NAMES]] * n, dtype=np.float64)
    x += rng.normal(0, 0.02, x.shape) * np.maximum(np.abs(x), 0.5)
    return x.astype(np.float32)


def _fleet(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment 0: light morning drinkers and heavy evening ones (40 + 40); segment 1:
    12 customers. Returns rows, segments and the planted kind inside segment 0."""
    rng = np.random.default_rng(seed)
    light = _rows(rng, 40, habit_cups_per_day=1.0, share_morning=0.6, share_evening=0.1)
    heavy = _rows(rng, 40, habit_cups_per_day=4.0, share_morning=0.2, share_evening=0.5)
    few = _rows(rng, 12, share_weekend=0.6)
    x = np.vstack([light, heavy, few])
    segments = np.array([0] * 80 + [1] * 12)
    kind = np.array([0] * 40 + [1] * 40)
    return x, segments, kind


def test_a_segment_of_two_kinds_is_split_into_them_by_the_exported_graph() -> None:
    x, segments, _kind = _fleet(1)
    model = fit_micro(x, segments, PRODUCT, seed=0)
    assert isinstance(model, MicroModel)
    assert model.k == {0: 2, 1: 1}  # 12 rows: too few to split
    assert set(model.onnx) == {0}
    # A new fleet of the same kinds: the ONNX graph finds them.
    fresh, fresh_segments, fresh_kind = _fleet(2)
    labels = model.predict(fresh, fresh_segments)
    assert adjusted_rand_score(fresh_kind, labels[:80]) == 1.0
    assert set(labels[80:].tolist()) == {0}
    # The same data and seed give the same split.
    again = fit_micro(x, segments, PRODUCT, seed=0)
    assert again.predict(fresh, fresh_segments).tolist() == labels.tolist()


def test_evaluation_reports_stability_and_the_one_feature_split() -> None:
    a = fit_micro(*_fleet(1)[:2], PRODUCT, seed=0)
    b = fit_micro(*_fleet(2)[:2], PRODUCT, seed=0)
    held, segments, _kind = _fleet(3)
    report = evaluate_micro(a, b, held, segments)
    split = report[0]
    assert (split["rows"], split["k"]) == (80, 2)
    assert split["stability_ari"] == 1.0  # two training fleets, one answer
    assert 0.5 < split["silhouette"] <= 1.0
    # one of the planted features splits them as well: the comparison says so
    assert split["one_feature"] in ("habit_cups_per_day", "share_morning", "share_evening")
    assert split["silhouette_one_feature"] <= split["silhouette"] + 1e-6
    assert report[1] == {"rows": 12, "k": 1, "note": "not split"}
