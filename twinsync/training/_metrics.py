"""Scores, each with the uncertainty that comes from having few customers.

Customers, not rows, are the unit of evidence: a customer's weekly snapshots are not
independent, so intervals resample whole customers (:func:`bootstrap`). Segment scores
compare clusters with the simulator's personas (ARI, and accuracy after matching each
cluster to at most one persona, the Hungarian assignment); churn scores are ROC AUC,
average precision and precision among the top-ranked at a given churn rate; anomaly
scores are precision and recall of flags.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]
from sklearn.metrics import adjusted_rand_score, average_precision_score, roc_auc_score

__all__ = [
    "ari",
    "auc",
    "auc_interval",
    "average_precision",
    "bootstrap",
    "matched_accuracy",
    "matched_pairs",
    "precision_at_rate",
    "precision_recall",
]


def ari(labels: Sequence[int], personas: Sequence[str]) -> float:
    """Adjusted Rand index between segments and personas (1: the same partition)."""
    return float(adjusted_rand_score(list(personas), list(labels)))


def matched_accuracy(labels: Sequence[int], personas: Sequence[str]) -> float:
    """Share of rows whose segment is matched to their persona (one-to-one, best match).

    Each segment is assigned at most one persona and each persona at most one segment,
    maximising the rows that agree (Hungarian algorithm); rows of an unmatched segment or
    persona count as wrong. With as many segments as personas, this is the accuracy of
    the best renaming of the segments.
    """
    if not labels:
        return float("nan")
    pairs = matched_pairs(labels, personas)
    hits = sum(pairs.get(s) == p for s, p in zip(labels, personas, strict=True))
    return hits / len(labels)


def matched_pairs(labels: Sequence[int], personas: Sequence[str]) -> dict[int, str]:
    """The one-to-one matching of segments to personas that maximises agreeing rows
    (Hungarian algorithm); segments left without a persona are not in the map."""
    segs = sorted(set(labels))
    names = sorted(set(personas))
    counts = np.zeros((len(segs), len(names)))
    si, pi = {s: i for i, s in enumerate(segs)}, {p: i for i, p in enumerate(names)}
    for s, p in zip(labels, personas, strict=True):
        counts[si[s], pi[p]] += 1
    rows, cols = linear_sum_assignment(-counts)
    return {segs[r]: names[c] for r, c in zip(rows, cols, strict=True)}


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Precision and recall of boolean flags against the truth."""
    tp = int(np.sum(flagged & truth))
    return (tp / max(int(flagged.sum()), 1), tp / max(int(truth.sum()), 1))


def auc(truth: Sequence[bool] | np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (nan unless both classes are present)."""
    y = np.asarray(truth, dtype=np.int64)
    return float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else float("nan")


def average_precision(
    truth: Sequence[bool] | np.ndarray, scores: np.ndarray, prevalence: float | None = None
) -> float:
    """Average precision; with ``prevalence``, as if positives were that share of rows.

    Evaluation sets hold far more churners than a real fleet (to measure anything at
    all); weighting the negatives up to a real churn rate gives the precision a brand
    would see.
    """
    y = np.asarray(truth, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not (n_pos and n_neg):
        return float("nan")
    weights = None
    if prevalence is not None:
        weights = np.where(y, 1.0, n_pos * (1.0 - prevalence) / (prevalence * n_neg))
    return float(average_precision_score(y, scores, sample_weight=weights))


def precision_at_rate(
    truth: Sequence[bool] | np.ndarray, scores: np.ndarray, prevalence: float
) -> float:
    """Precision among the top ``prevalence`` share of customers, at that churn rate.

    A brand that contacts as many customers as will churn (k = the expected churners)
    sees this precision (= recall at that k). Computed from the score distributions of
    positives and negatives, so the evaluation set's own share of churners does not
    matter: the threshold flags ``prevalence`` of a population in which positives are
    ``prevalence`` of the rows.
    """
    y = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    if not (len(pos) and len(neg)):
        return float("nan")
    # Flagged share at threshold t: p * TPR(t) + (1 - p) * FPR(t). Lower the threshold
    # until that reaches p; ties at the threshold are flagged together.
    thresholds = np.unique(s)[::-1]
    tpr = (len(pos) - np.searchsorted(pos, thresholds, "left")) / len(pos)
    fpr = (len(neg) - np.searchsorted(neg, thresholds, "left")) / len(neg)
    flagged = prevalence * tpr + (1 - prevalence) * fpr
    at = min(int(np.searchsorted(flagged, prevalence, "left")), len(thresholds) - 1)
    return float(prevalence * tpr[at] / flagged[at])


def bootstrap(
    metric: Callable[[np.ndarray], float],
    groups: Sequence[str],
    *,
    seed: int = 0,
    rounds: int = 400,
) -> tuple[float, float]:
    """95 % interval of ``metric(rows)`` resampling whole groups (customers)."""
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    members: list[list[int]] = [[] for _ in names]
    for row, g in enumerate(groups):
        members[index[g]].append(row)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(rounds):
        picked = rng.integers(0, len(names), len(names))
        rows = np.concatenate([members[i] for i in picked]).astype(np.int64)
        value = metric(rows)
        if np.isfinite(value):
            samples.append(value)
    if not samples:
        return float("nan"), float("nan")
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def auc_interval(
    truth: list[bool], scores: np.ndarray, groups: list[str], *, seed: int = 0, rounds: int = 400
) -> tuple[float, float, float]:
    """ROC AUC and its 95 % interval, bootstrapping whole groups (customers).

    A customer's snapshots are not independent evidence (the negatives are weekly
    snapshots of the same customers), so groups are resampled, not rows.
    """
    y, p = np.asarray(truth, dtype=bool), np.asarray(scores, dtype=np.float64)
    low, high = bootstrap(lambda rows: auc(y[rows], p[rows]), groups, seed=seed, rounds=rounds)
    return auc(y, p), low, high
