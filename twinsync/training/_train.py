"""``twinsync train --sim``: fit, export, sign, and score on unseen fleets beside baselines.

Trained on one simulated fleet (:mod:`._fleets`), judged on others (each held-out seed a
whole fleet of the same profile, customers and devices the models never saw): every
score beside simple baselines fitted on the same training data (:mod:`._baselines`,
:mod:`._evaluate`). The output directory gets, per model, ``<kind>-<product>.onnx`` and
its manifest (the layout of the defaults in ``edge_agent/models``) plus ``report.json``.
A run may retrain some kinds only (``kinds``): it writes those models, replaces their
scores in the directory's ``report.json`` and leaves every other model as it was.

Memory: one product at a time, each from fresh fleet objects (a fleet caches the signals
it generated), and one held-out fleet at a time.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from protocol import ANOMALY_FEATURES, PRODUCTS, SigningKey, TwinSyncError, feature_names

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

__all__ = ["HORIZON_DAYS", "KINDS", "SimTraining", "TrainingError", "train_from_sim"]

#: churn models predict churning within this many days
HORIZON_DAYS = 14
#: the model kinds a ``--sim`` run trains (micro-segments have their own run)
KINDS = ("segment", "churn", "anomaly")


#: settings only some kinds depend on: they may change when those kinds are retrained
_SETTING_KINDS: dict[str, set[str]] = {
    "version": set(),
    "segment_fleets": {"segment"},
    "churn_fleets": {"churn"},
    "clean_share": {"anomaly"},
    "anomaly_eval_all": {"anomaly"},
    "dense_products": {"anomaly"},
    "dense_factor": {"anomaly"},
}


class TrainingError(TwinSyncError):
    """A training run cannot go ahead as asked (the message says what to change)."""


def _churn_label(days_to_churn: float | None) -> bool:
    return days_to_churn is not None and 0 < days_to_churn <= HORIZON_DAYS


@dataclasses.dataclass
class _Product:
    """Everything fitted for one product (None: a kind this run does not train)."""

    churn: Fitted | None = None
    anomaly: Fitted | None = None
    thresholds: list[Threshold] = dataclasses.field(default_factory=list)
    segment_rows: CustomerRows | None = None
    segment: Fitted | None = None
    segment_baselines: list[SegmentBaseline] = dataclasses.field(default_factory=list)
    segment_reference: SegmentBaseline | None = None


def _fit_product(product: str, t: SimTraining, kinds: Collection[str]) -> _Product:
    """The chosen kinds' models on the training fleets (segments: the rows they need)."""
    train = fleet(t.seed, t.devices, t)
    fitted = _Product()
    seg_rows = CustomerRows(product)
    churn_rows = CustomerRows(product)
    segment_fleets = t.segment_fleets if "segment" in kinds else 0
    churn_fleets = t.churn_fleets if "churn" in kinds else 0
    # Segments and churn learn from the first fleets of the same seeds: each fleet is
    # generated once, and one at a time (a fleet caches its signals).
    for more in range(max(segment_fleets, churn_fleets, 1)):
        seed = t.seed + more
        sim = train if more == 0 else fleet(seed, t.devices, t)
        if more < segment_fleets:
            seg_rows.extend(segment_rows(sim, product, min_history_days=MIN_HISTORY_DAYS))
        if more < churn_fleets:
            churn_rows.extend(
                customer_rows(
                    sim, product, cutoffs(sim, 1.0, seed), min_history_days=MIN_HISTORY_DAYS
                )
            )
    if "segment" in kinds:
        fitted.segment_rows = seg_rows
    if "churn" in kinds:
        keep = [i for i, d in enumerate(churn_rows.days_to_churn) if d is None or d > 0]
        fitted.churn = fit_churn(
            [churn_rows.x[i] for i in keep],
            [_churn_label(churn_rows.days_to_churn[i]) for i in keep],
            product,
            churn_columns(product),
            seed=t.seed,
        )
    if "anomaly" in kinds:
        arows = anomaly_rows(train, [product])
        if t.profile != "easy" and t.clean_share > 0:
            clean = clean_fleet(t.seed, max(4, round(t.devices * t.clean_share)), t)
            arows.extend(anomaly_rows(clean, [product]))
        if product in t.dense_products and t.dense_factor > 0:
            arows.extend(anomaly_rows(dense_fleet(t), [product]))
        fitted.anomaly = fit_anomaly(arows.x, arows.injected, seed=t.seed)
        fitted.thresholds = fit_anomaly_thresholds(
            arows.x, arows.injected, ("abs_z", "jump_of_range")
        )
    return fitted


def _evaluate(product: str, fitted: _Product, seed: int, t: SimTraining) -> dict[str, Any]:
    """Every model ``fitted`` holds of ``product`` on the held-out fleet of ``seed``."""
    held = fleet(seed, t.eval_devices * t.churn_eval_factor, t)
    out: dict[str, Any] = {}
    if fitted.segment is not None:
        seg_rows = segment_rows(held, product, min_history_days=MIN_HISTORY_DAYS)
        out["segment"] = evaluate_segments(
            fitted.segment.onnx, seg_rows, fitted.segment_baselines, fitted.segment_reference
        )
    if fitted.churn is not None:
        churn_rows = customer_rows(
            held, product, cutoffs(held, 7.0, seed), before_churn_days=LEADS,
            min_history_days=MIN_HISTORY_DAYS,
        )  # fmt: skip
        out["churn"] = evaluate_churn(
            fitted.churn.onnx,
            churn_rows,
            product,
            monthly_rate=t.real_churn_monthly,
            horizon_days=HORIZON_DAYS,
            seed=seed,
        )
    if fitted.anomaly is not None:
        evaluated = set(held.devices[: t.eval_devices])
        scored = None if product in t.anomaly_eval_all else evaluated
        arows = anomaly_rows(held, [product], devices=scored)
        out["anomaly"] = evaluate_anomaly(
            fitted.anomaly.onnx, fitted.anomaly.threshold, arows, fitted.thresholds
        )
    return out


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
    out: Path,
    key: SigningKey | None,
    t: SimTraining | None = None,
    *,
    kinds: Collection[str] = KINDS,
) -> dict[str, Any]:
    """Train models on one simulated fleet, score them on others; return the report.

    ``kinds``: the model kinds to train (default: all). With fewer, only their models
    are written, and their scores replace the earlier ones in ``out``'s ``report.json``,
    which must come from a run with the same settings (else :class:`TrainingError`): the
    report keeps describing one training and one set of held-out fleets.
    """
    t = t if t is not None else SimTraining()
    chosen = tuple(k for k in KINDS if k in kinds)
    if not chosen or set(kinds) - set(KINDS):
        raise TrainingError(f"kinds must be some of {', '.join(KINDS)}; got {sorted(kinds)}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = _report_to_update(out, t, chosen)
    products = {p: _fit_product(p, t, chosen) for p in sorted(PRODUCTS)}
    if "segment" in chosen:
        _fit_segments(products, t, report)
    for seed in t.eval_seeds:
        by_product = report["evaluation"].setdefault(str(seed), {})
        for p, f in products.items():
            by_product.setdefault(p, {}).update(_evaluate(p, f, seed, t))
    first = report["evaluation"][str(t.eval_seed)]
    for p, f in products.items():
        for kind, fitted, inputs, horizon in (
            ("segment", f.segment, feature_names(p), 0),
            ("churn", f.churn, feature_names(p), HORIZON_DAYS),
            ("anomaly", f.anomaly, ANOMALY_FEATURES, 0),
        ):
            if fitted is None:
                continue
            fitted.metrics.update(_manifest_metrics(kind, first[p][kind]))
            m = write_model(out, kind, p, fitted, inputs, key, t.version, horizon)  # type: ignore[arg-type]
            report["models"][m.name] = {"ref": m.ref, "threshold": m.threshold, **fitted.metrics}
    report["targets"] = check_targets(report["evaluation"])
    seconds = time.perf_counter() - started
    if chosen == KINDS:
        report["seconds"] = seconds
        report["twins_trained"] = sum(
            len(f.segment_rows.x) for f in products.values() if f.segment_rows is not None
        )
    else:
        report.setdefault("retrained", []).append({"kinds": list(chosen), "seconds": seconds})
    write_report(out, report)
    return report


def _report_to_update(out: Path, t: SimTraining, kinds: tuple[str, ...]) -> dict[str, Any]:
    """A new report for a whole run; for some kinds, the directory's report to amend."""
    settings = dataclasses.asdict(t)
    fresh: dict[str, Any] = {"training": settings, "models": {}, "evaluation": {}}
    if kinds == KINDS:
        return fresh
    path = out / "report.json"
    if not path.exists():
        raise TrainingError(
            f"{path} is missing: retraining only {', '.join(kinds)} amends the report of an "
            "earlier run of every kind into the same directory; train every kind first"
        )
    report: dict[str, Any] = json.loads(path.read_text())
    earlier = report.get("training", {})
    # The version may differ (each model carries its own), and so may a setting that only
    # the retrained kinds depend on; every other setting decides what was trained and
    # scored, so a report mixing two values would describe neither. A setting the
    # earlier report lacks is newer than it: that run had its default.
    current = json.loads(json.dumps(settings))
    defaults = json.loads(json.dumps(dataclasses.asdict(SimTraining())))
    then = {name: earlier.get(name, defaults[name]) for name in settings}
    free = {name for name, owners in _SETTING_KINDS.items() if owners <= set(kinds)}
    differ = sorted(
        name for name in settings
        if name not in free and current[name] != then[name]
    )  # fmt: skip
    if differ:
        shown = ", ".join(f"{n}={then[n]!r} there, {settings[n]!r} here" for n in differ)
        raise TrainingError(
            f"{path} comes from a run with other settings ({shown}); use the same settings "
            "or train every kind"
        )
    report["training"] = {**then, **{name: current[name] for name in free}}
    return report


def _fit_segments(products: dict[str, _Product], t: SimTraining, report: dict[str, Any]) -> None:
    """Segment models for every product, with one k."""
    rows = {p: f.segment_rows for p, f in products.items() if f.segment_rows is not None}
    # Segments: one k for all products (segments describe customers, not devices): as
    # many as the training fleet has personas. The held-out score is agreement with the
    # personas, and the training fleet says how many there are; k by resampling
    # stability (what --influx uses, without labels) is reported beside it.
    curves = {p: stability(_space(p, r), seed=t.seed) for p, r in rows.items()}
    personas = {name for r in rows.values() for name in r.persona}
    k = len(personas)
    report["segments"] = {
        "k": k,
        "k_by_stability": choose_k(list(curves.values())),
        "stability": curves,
    }
    for p, r in rows.items():
        f, columns = products[p], segment_columns(p)
        f.segment = fit_segment(r.x, k, p, columns, personas=r.persona, seed=t.seed)
        f.segment_baselines = fit_segment_baselines(r.x, r.persona, p, columns, k, seed=t.seed)
        f.segment_reference = fit_segment_reference(r.x, r.persona, p, columns)


def _space(product: str, rows: CustomerRows) -> np.ndarray:
    """The training rows in the space the product's segments are found in."""
    x = np.asarray(rows.x, np.float64)
    return SegmentSpace(x, product, segment_columns(product), rows.persona).transform(x)
