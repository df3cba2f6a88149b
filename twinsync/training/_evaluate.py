"""Held-out scores of each model kind, every one beside its baselines (docs/models.md).

All rows come from a fleet the models never saw (another seed of the realistic
profile): segments against the personas (ARI and matched accuracy), churn by lead time
(AUC and average precision 1-14 days before each churn, precision among the top-ranked
at a real churn rate), anomalies by size class and kind (precision and recall). The
model's numbers are what its ONNX file computes with onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from protocol import feature_names

from ._alerts import alert_scores
from ._baselines import SegmentBaseline, Threshold, churn_baseline
from ._count_ceiling import count_ceiling
from ._dataset import AnomalyRows, CustomerRows
from ._metrics import (
    ari,
    auc,
    auc_interval,
    average_precision,
    bootstrap,
    matched_accuracy,
    matched_pairs,
    precision_at_rate,
    precision_recall,
)
from ._onnx import run

__all__ = [
    "LEADS",
    "anomaly_flag_scores",
    "evaluate_anomaly",
    "evaluate_churn",
    "evaluate_segments",
    "monthly_to_horizon",
]

#: lead times (days before the churn) the churn models are scored at
LEADS = tuple(range(1, 15))


def monthly_to_horizon(monthly: float, horizon_days: float) -> float:
    """Probability of churning within ``horizon_days`` at a churn rate per 30 days."""
    return float(1.0 - (1.0 - monthly) ** (horizon_days / 30.0))


def evaluate_segments(
    model: bytes,
    rows: CustomerRows,
    baselines: Sequence[SegmentBaseline],
    reference: SegmentBaseline | None = None,
) -> dict[str, Any]:
    """ARI and matched accuracy of the model's segments and of each baseline.

    Also, per group of customers (:meth:`._truth.Truth.segment_group`: their own
    device, a blended persona, a shared device that cannot tell its users apart), the
    model's accuracy on them (segments matched to personas over all rows); and with
    ``reference`` (a classifier told the personas), its accuracy.
    """
    if not rows.x:
        return {"rows": 0}
    labels = run(model, "label", rows.x).tolist()
    out: dict[str, Any] = {
        "rows": len(rows.x),
        "personas": len(set(rows.persona)),
        "ari": ari(labels, rows.persona),
        "accuracy": matched_accuracy(labels, rows.persona),
        "baselines": {},
    }
    groups = rows.subject
    truth = np.asarray(rows.persona)
    predicted = np.asarray(labels)
    out["accuracy_low"], out["accuracy_high"] = bootstrap(
        lambda r: matched_accuracy(predicted[r].tolist(), truth[r].tolist()), groups
    )
    matched = _matched(labels, rows.persona)
    if rows.group:
        by_group: dict[str, Any] = {}
        for group in sorted(set(rows.group)):
            members = [i for i, g in enumerate(rows.group) if g == group]
            hits = sum(matched[i] for i in members)
            by_group[group] = {"rows": len(members), "accuracy": hits / len(members)}
        out["by_group"] = by_group
    if reference is not None:
        predicted_ref = reference.predict(np.asarray(rows.x)).tolist()
        out["reference_accuracy"] = matched_accuracy(predicted_ref, rows.persona)
    for b in baselines:
        base = b.predict(np.asarray(rows.x)).tolist()
        out["baselines"][b.name] = {
            "features": list(b.features),
            "ari": ari(base, rows.persona),
            "accuracy": matched_accuracy(base, rows.persona),
            "train_accuracy": b.train_accuracy,
        }
    best2 = max(
        (v["accuracy"] for k, v in out["baselines"].items() if k.endswith("_2")), default=np.nan
    )
    out["best_2_feature_accuracy"] = best2
    out["points_above_best_2_feature"] = 100.0 * (out["accuracy"] - best2)
    return out


def _matched(labels: Sequence[int], personas: Sequence[str]) -> list[bool]:
    """Per row: whether its segment is the one matched to its persona (as in
    :func:`._metrics.matched_accuracy`)."""
    pairs = matched_pairs(labels, personas)
    return [pairs.get(label) == persona for label, persona in zip(labels, personas, strict=True)]


def evaluate_churn(
    model: bytes,
    rows: CustomerRows,
    product: str,
    *,
    monthly_rate: float,
    horizon_days: int,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC and average precision by lead time, and precision at a real churn rate.

    Beside the model and the one-feature baseline, ``ceiling_auc``: the AUC of the
    customers' true engagement (see the code), ``count_ceiling_auc``: the AUC of an
    oracle that knows each customer's usual rate but sees only the uses reported
    (:mod:`._count_ceiling`), and ``declining``: the share of the lead's churners
    already winding down.

    ``rows``: snapshots of the held-out fleet (weekly, random times of day) and, for
    each churner of the product, one snapshot at each lead time of :data:`LEADS` before
    their churn. Negatives are snapshots of customers who do not churn the product in
    the data. Average precision is as sampled (the positives of one lead against every
    negative); ``precision_at_rate`` ranks every snapshot that is labelled (churns
    within ``horizon_days`` or never) and contacts as many customers as churn at
    ``monthly_rate``, re-weighted to that rate.
    """
    if not rows.x:
        return {}
    risk = run(model, "probabilities", rows.x)[:, 1].astype(np.float64)
    base = churn_baseline(rows.x, product)
    # The ceiling: a score that knows how far each customer has truly wound down at the
    # snapshot. A churner not yet declining uses the product exactly as a loyal
    # customer does, so no model of their use can rank them above one: no model beats
    # this AUC except by chance.
    ceiling = 1.0 - np.asarray(rows.engagement, dtype=np.float64)
    # The ceiling from what a device can see: the reported uses, scored by an oracle
    # that knows the customer's true usual rate and the fleet's churn ramps.
    counted = None
    if rows.churn_spec is not None and len(rows.daily_uses) == len(rows.x):
        counted = count_ceiling(
            rows.daily_uses, rows.usual_rate, rows.churn_spec, horizon_days=horizon_days
        )
    names = feature_names(product)
    x = np.asarray(rows.x, dtype=np.float64)
    ratios = {d: x[:, names.index(f"use_ratio_{d}d")] for d in (7, 14)}
    days = rows.days_to_churn
    negative = np.asarray([d is None for d in days])
    out: dict[str, Any] = {"negatives": int(negative.sum()), "by_lead": {}}
    for lead in LEADS:
        positive = np.asarray([d is not None and abs(d - lead) < 1e-6 for d in days])
        use = positive | negative
        if not positive.any() or not negative.any():
            continue
        y = positive[use]
        groups = [s for s, u in zip(rows.subject, use, strict=True) if u]
        entry: dict[str, float] = {
            "positives": float(positive.sum()),
            "auc": auc(y, risk[use]),
            "ap": average_precision(y, risk[use]),
            "baseline_auc": auc(y, base[use]),
            "baseline_ap": average_precision(y, base[use]),
            "ceiling_auc": auc(y, ceiling[use]),
            "declining": float(np.mean(ceiling[positive] > 0)),
        }
        if counted is not None:
            entry["count_ceiling_auc"] = auc(y, counted[use])
        if lead in (7, 14):
            # Signal against noise, in the customer's own terms: the median churner's use
            # over the last ``lead`` days against their usual, and the share of loyal
            # snapshots at or below it (holidays, illness, a shared device, chance).
            ratio = ratios[7 if lead == 7 else 14]
            median = float(np.median(ratio[positive]))
            entry["churner_median_use_ratio"] = median
            entry["loyal_share_as_quiet"] = float(np.mean(ratio[negative] <= median))
            _, entry["auc_low"], entry["auc_high"] = auc_interval(
                y.tolist(), risk[use], groups, seed=seed
            )
            _, entry["baseline_auc_low"], entry["baseline_auc_high"] = auc_interval(
                y.tolist(), base[use], groups, seed=seed
            )
        out["by_lead"][str(lead)] = entry
    # A brand's view: every labelled snapshot, churning within the horizon or never.
    within = np.asarray([d is not None and 0 < d <= horizon_days for d in days])
    use = within | negative
    if within.any() and negative.any():
        prevalence = monthly_to_horizon(monthly_rate, horizon_days)
        out["prevalence"] = prevalence
        out["precision_at_rate"] = precision_at_rate(within[use], risk[use], prevalence)
        out["baseline_precision_at_rate"] = precision_at_rate(within[use], base[use], prevalence)
        out["ap_at_rate"] = average_precision(within[use], risk[use], prevalence)
        out["baseline_ap_at_rate"] = average_precision(within[use], base[use], prevalence)
    return out


def evaluate_anomaly(
    model: bytes, threshold: float, rows: AnomalyRows, baselines: Sequence[Threshold]
) -> dict[str, Any]:
    """Precision and recall overall, by size class and by kind, beside the baselines.

    Recall counts anomalies, not readings: a level shift or a stuck sensor spans many
    readings and is found when one of them is flagged; an anomaly none of whose
    readings the model scores (out-of-pattern brews: no gauge) counts as missed.
    Precision counts flags: the share on anomalous readings. For a size class (or
    kind), precision is what it would be if every anomaly were of that class, at the
    same rate: its true flags per anomaly times all anomalies, against the false flags.
    Beside it, ``alerts``: the same flags as an operator sees them, runs of flagged
    readings of one signal (:mod:`._alerts`); the precision target is judged on theirs.
    """
    if not rows.x:
        return {}
    scores = run(model, "scores", rows.x)[:, 0]
    out: dict[str, Any] = {"readings": len(rows.x)}
    out.update(anomaly_flag_scores(scores >= threshold, rows))
    out["baselines"] = {
        f"{b.feature}>={b.threshold:.3g}": anomaly_flag_scores(b.flags(rows.x), rows)
        for b in baselines
    }
    return out


def anomaly_flag_scores(flagged: np.ndarray, rows: AnomalyRows) -> dict[str, Any]:
    """Precision and recall of ``flagged`` readings, overall, by size class and by kind
    (see :func:`evaluate_anomaly`)."""
    truth = np.asarray(rows.injected, dtype=bool)
    episodes = np.asarray(rows.episode)
    # Every anomaly: the scored ones by their readings, and the ones never scored.
    found: dict[str, bool] = dict.fromkeys(rows.unscored, False)
    true_flags: dict[str, int] = dict.fromkeys(rows.unscored, 0)
    classes: dict[str, tuple[str, str]] = dict(rows.unscored)
    for i in np.flatnonzero(truth):
        key = str(episodes[i])
        classes[key] = (rows.size[i], rows.kind[i])
        found[key] = found.get(key, False) or bool(flagged[i])
        true_flags[key] = true_flags.get(key, 0) + int(flagged[i])
    false_flags = int(np.sum(flagged & ~truth))
    n = len(classes)
    precision, reading_recall = precision_recall(flagged, truth)
    out: dict[str, Any] = {
        "anomalies": n,
        "unscored": len(rows.unscored),
        "precision": precision,
        "recall": sum(found.values()) / n if n else float("nan"),
        "reading_recall": reading_recall,
        "false_flags": false_flags,
    }
    for index, label in ((0, "size"), (1, "kind")):
        groups: dict[str, Any] = {}
        for name in sorted({c[index] for c in classes.values()}):
            members = [k for k, c in classes.items() if c[index] == name]
            hits = sum(true_flags[k] for k in members) / len(members) * n
            groups[name] = {
                "n": len(members),
                "recall": sum(found[k] for k in members) / len(members),
                "precision": hits / (hits + false_flags) if hits + false_flags else float("nan"),
            }
        out[f"by_{label}"] = groups
    out["alerts"] = alert_scores(flagged, rows, classes)
    events = np.asarray(rows.event, dtype=bool)
    if events.any():
        out["genuine_events"] = int(events.sum())
        out["genuine_events_flagged"] = float(np.mean(flagged[events]))
    return out
