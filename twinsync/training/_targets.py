"""The quality targets of issue 12, checked on every held-out fleet (docs/models.md).

- segments: matched accuracy >= 0.85 for every product and >= 15 points above the best
  two-feature baseline;
- churn: AUC >= 0.80 seven days ahead and >= 0.70 fourteen days ahead, each above the
  one-feature baseline;
- anomalies: precision and recall >= 0.9 for anomalies of every size class; precision
  per alert (an operator's view, :mod:`._alerts`; the per-reading one beside it),
  recall per anomaly.

Reported, never tuned against: the held-out fleets only score.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["TARGETS", "check_targets"]

#: target name -> threshold
TARGETS: dict[str, float] = {
    "segment_accuracy": 0.85,
    "segment_points_above_best_2_feature": 15.0,
    "churn_auc_7d": 0.80,
    "churn_auc_14d": 0.70,
    "anomaly_precision_every_size": 0.9,
    "anomaly_recall_every_size": 0.9,
}


def _entry(value: float, target: float, *, above: float | None = None) -> dict[str, Any]:
    met = math.isfinite(value) and value >= target
    out: dict[str, Any] = {"value": value, "target": target, "met": met}
    if above is not None:
        out["baseline"] = above
        out["met"] = met and math.isfinite(above) and value > above
    return out


def _product(scores: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seg = scores.get("segment", {})
    if "accuracy" in seg:
        out["segment_accuracy"] = _entry(seg["accuracy"], TARGETS["segment_accuracy"])
        out["segment_points_above_best_2_feature"] = _entry(
            seg["points_above_best_2_feature"], TARGETS["segment_points_above_best_2_feature"]
        )
    by_lead = scores.get("churn", {}).get("by_lead", {})
    for lead in ("7", "14"):
        if lead in by_lead:
            e = by_lead[lead]
            name = f"churn_auc_{lead}d"
            out[name] = _entry(e["auc"], TARGETS[name], above=e["baseline_auc"])
            if "ceiling_auc" in e:  # what any model of use could reach at best
                out[name]["ceiling"] = e["ceiling_auc"]
    anomaly = scores.get("anomaly", {})
    sizes = anomaly.get("by_size", {})
    # Precision is judged per alert where the evaluation has alerts (an operator acts on
    # alerts, not readings); recall per anomaly either way.
    alert_sizes = anomaly.get("alerts", {}).get("by_size", {})
    for metric, by in (("precision", alert_sizes or sizes), ("recall", sizes)):
        if not by:
            continue
        worst = min(v[metric] for v in by.values())
        name = f"anomaly_{metric}_every_size"
        out[name] = _entry(worst, TARGETS[name])
        out[name]["worst_size"] = min(by, key=lambda s: by[s][metric])
        if metric == "precision" and alert_sizes:
            out[name]["per_reading"] = min(v["precision"] for v in sizes.values())
    return out


def check_targets(evaluation: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per held-out seed and product, each target's value, threshold and whether it is met."""
    return {
        seed: {product: _product(scores) for product, scores in by_product.items()}
        for seed, by_product in evaluation.items()
    }
