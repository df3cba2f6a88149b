"""``twinsync train --sim``: fit, export, sign, and score on unseen fleets beside baselines.

Trained on one simulated fleet (:mod:`._fleets`), judged on others (each held-out seed a
whole fleet of the same profile, customers and devices the models never saw): every
score beside simple baselines fitted on the same training data (:mod:`._baselines`,
:mod:`._evaluate`). The output directory gets, per model, ``<kind>-<product>.onnx`` and
its manifest (the layout of the defaults in ``edge_agent/models``) plus ``report.json``.

Memory: one product at a time, each from fresh fleet objects (a fleet caches the signals
it generated), and one held-out fleet at a time.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from protocol import ANOMALY_FEATURES, PRODUCTS, SigningKey, feature_names

from ._artefacts import write_model, write_report
from ._baselines import (
    SegmentBaseline,
    Threshold,
    fit_anomaly_thresholds,
    fit_segment_baselines,
    fit_segment_reference,
)
from ._dataset import CustomerRows, anomaly_rows, customer_rows, segment_rows
from ._evaluate import LEADS, evaluate_anomaly, evaluate_churn, evaluate_segments
from ._fit import Fitted, churn_columns, fit_anomaly, fit_churn
from ._fleets import MIN_HISTORY_DAYS, SimTraining, clean_fleet, cutoffs, dense_fleet, fleet
from ._segments import SegmentSpace, choose_k, fit_segment, segment_columns, stability
from ._targets import check_targets

__all__ = ["HORIZON_DAYS", "SimTraining", "train_from_sim"]

#: churn models predict churning within this many days
HORIZON_DAYS = 14


def _churn_label(days_to_churn: float | None) -> bool:
    return days_to_churn is not None and 0 < days_to_churn <= HORIZON_DAYS


@dataclasses.dataclass
class _Product:
    """Everything fitted for one product."""

    churn: Fitted
    anomaly: Fitted
    thresholds: list[Threshold]
    segment_rows: CustomerRows
    segment: Fitted | None = None
    segment_baselines: list[SegmentBaseline] = dataclasses.field(default_factory=list)
    segment_reference: SegmentBaseline | None = None


def _fit_product(product: str, t: SimTraining) -> _Product:
    """Churn and anomaly models on the training fleet; the rows segments will need."""
    train = fleet(t.seed, t.devices, t)
    seg_rows = segment_rows(train, product, min_history_days=MIN_HISTORY_DAYS)
    rows = customer_rows(
        train, product, cutoffs(train, 1.0, t.seed), min_history_days=MIN_HISTORY_DAYS
    )
    keep = [i for i, d in enumerate(rows.days_to_churn) if d is None or d > 0]
    churn = fit_churn(
        [rows.x[i] for i in keep],
        [_churn_label(rows.days_to_churn[i]) for i in keep],
        product,
        churn_columns(product),
    )
    arows = anomaly_rows(train, [product])
    if t.profile != "easy" and t.clean_share > 0:
        clean = clean_fleet(t.seed, max(4, round(t.devices * t.clean_share)), t)
        arows.extend(anomaly_rows(clean, [product]))
    if product in t.dense_products and t.dense_factor > 0:
        arows.extend(anomaly_rows(dense_fleet(t), [product]))
    anomaly = fit_anomaly(arows.x, arows.injected, seed=t.seed)
    thresholds = fit_anomaly_thresholds(arows.x, arows.injected, ("abs_z", "jump_of_range"))
    return _Product(churn, anomaly, thresholds, seg_rows)


def _evaluate(product: str, fitted: _Product, seed: int, t: SimTraining) -> dict[str, Any]:
    """Every model of ``product`` on the held-out fleet of ``seed``."""
    held = fleet(seed, t.eval_devices * t.churn_eval_factor, t)
    evaluated = set(held.devices[: t.eval_devices])
    seg_rows = segment_rows(held, product, min_history_days=MIN_HISTORY_DAYS)
    churn_rows = customer_rows(
        held, product, cutoffs(held, 7.0, seed), before_churn_days=LEADS,
        min_history_days=MIN_HISTORY_DAYS,
    )  # fmt: skip
    scored = None if product in t.anomaly_eval_all else evaluated
    arows = anomaly_rows(held, [product], devices=scored)
    assert fitted.segment is not None
    return {
        "segment": evaluate_segments(
            fitted.segment.onnx, seg_rows, fitted.segment_baselines, fitted.segment_reference
        ),
        "churn": evaluate_churn(
            fitted.churn.onnx,
            churn_rows,
            product,
            monthly_rate=t.real_churn_monthly,
            horizon_days=HORIZON_DAYS,
            seed=seed,
        ),
        "anomaly": evaluate_anomaly(
            fitted.anomaly.onnx, fitted.anomaly.threshold, arows, fitted.thresholds
        ),
    }


def _manifest_metrics(kind: str, scores: dict[str, Any]) -> dict[str, float]:
    """The headline held-out numbers a manifest carries (first held-out seed)."""
    if kind == "segment":
        keys = {"heldout_accuracy": "accuracy", "heldout_ari": "ari"}
        return {k: float(scores[v]) for k, v in keys.items() if v in scores}
    if kind == "churn":
        by_lead = scores.get("by_lead", {})
        out = {}
        for lead in ("7", "14"):
            if lead in by_lead:
                out[f"heldout_auc_{lead}d"] = float(by_lead[lead]["auc"])
                out[f"heldout_positives_{lead}d"] = float(by_lead[lead]["positives"])
        return out
    out = {"heldout_precision": scores.get("precision", np.nan)}
    out["heldout_recall"] = scores.get("recall", np.nan)
    out["heldout_alert_precision"] = scores.get("alerts", {}).get("precision", np.nan)
    for size, entry in scores.get("by_size", {}).items():
        out[f"heldout_recall_{size}"] = entry["recall"]
    return {k: float(v) for k, v in out.items()}


def train_from_sim(
    out: Path, key: SigningKey | None, t: SimTraining | None = None
) -> dict[str, Any]:
    """Train every model on one simulated fleet, score it on others; return the report."""
    t = t if t is not None else SimTraining()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {"training": dataclasses.asdict(t), "models": {}, "evaluation": {}}
    products = {p: _fit_product(p, t) for p in sorted(PRODUCTS)}
    # Segments: one k for all products (segments describe customers, not devices): as
    # many as the training fleet has personas. The held-out score is agreement with the
    # personas, and the training fleet says how many there are; k by resampling
    # stability (what --influx uses, without labels) is reported beside it.
    curves = {p: stability(_space(p, f.segment_rows), seed=t.seed) for p, f in products.items()}
    personas = {name for f in products.values() for name in f.segment_rows.persona}
    k = len(personas)
    report["segments"] = {
        "k": k,
        "k_by_stability": choose_k(list(curves.values())),
        "stability": curves,
    }
    for p, f in products.items():
        rows, columns = f.segment_rows, segment_columns(p)
        f.segment = fit_segment(rows.x, k, p, columns, personas=rows.persona, seed=t.seed)
        f.segment_baselines = fit_segment_baselines(
            rows.x, rows.persona, p, columns, k, seed=t.seed
        )
        f.segment_reference = fit_segment_reference(rows.x, rows.persona, p, columns)
    for seed in t.eval_seeds:
        report["evaluation"][str(seed)] = {p: _evaluate(p, f, seed, t) for p, f in products.items()}
    first = report["evaluation"][str(t.eval_seed)]
    for p, f in products.items():
        assert f.segment is not None
        for kind, fitted, inputs, horizon in (
            ("segment", f.segment, feature_names(p), 0),
            ("churn", f.churn, feature_names(p), HORIZON_DAYS),
            ("anomaly", f.anomaly, ANOMALY_FEATURES, 0),
        ):
            fitted.metrics.update(_manifest_metrics(kind, first[p][kind]))
            m = write_model(out, kind, p, fitted, inputs, key, t.version, horizon)  # type: ignore[arg-type]
            report["models"][m.name] = {"ref": m.ref, "threshold": m.threshold, **fitted.metrics}
    report["targets"] = check_targets(report["evaluation"])
    report["seconds"] = time.perf_counter() - started
    report["twins_trained"] = sum(len(f.segment_rows.x) for f in products.values())
    write_report(out, report)
    return report


def _space(product: str, rows: CustomerRows) -> np.ndarray:
    """The training rows in the space the product's segments are found in."""
    x = np.asarray(rows.x, np.float64)
    return SegmentSpace(x, product, segment_columns(product), rows.persona).transform(x)
