"""``twinsync hub train``: fit, export, sign and evaluate the model set.

From a simulated fleet (``--sim``), whose ground truth also scores the models on a fleet
and seed they were not trained on. The output directory gets, per model,
``<kind>-<product>.onnx`` and ``<kind>-<product>.manifest.json`` (the layout of the
default models shipped in ``edge_agent/models``) plus ``report.json``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from sklearn.preprocessing import StandardScaler

from firmware_sim import FaultSpec, Fleet, FleetSpec
from protocol import (
    ANOMALY_FEATURES,
    PRODUCTS,
    ModelKind,
    ModelManifest,
    SigningKey,
    feature_names,
    sha256_hex,
)

from ._dataset import DAY_MS, CustomerRows, anomaly_rows, customer_rows
from ._fit import (
    Fitted,
    ari,
    auc_interval,
    choose_k,
    churn_columns,
    fit_anomaly,
    fit_churn,
    fit_segment,
    precision_recall,
    segment_columns,
    stability,
)

__all__ = ["SimTraining", "train_from_sim"]

#: churn models predict churning within this many days
HORIZON_DAYS = 14
#: the churn model is scored this many days before each churn
LEAD_DAYS = 7
#: no prediction before a customer has this much history
MIN_HISTORY_DAYS = 14


@dataclass(frozen=True)
class SimTraining:
    """What to simulate for training and for the held-out evaluation.

    Segments and anomalies are scored on the held-out fleet's first ``eval_devices``
    devices; churn on ``churn_eval_factor`` times as many of the same fleet (seed and
    all), since a fleet of 200 devices has only 10-25 churners per product whose
    evaluation point falls inside the simulated window.
    """

    seed: int = 1
    devices: int = 300
    days: float = 70.0
    eval_seed: int = 1001
    eval_devices: int = 200
    anomaly_rate: float = 0.01
    churn_fraction: float = 0.3
    version: int = 1
    churn_eval_factor: int = 3


def _fleet(seed: int, devices: int, days: float, t: SimTraining) -> Fleet:
    faults = FaultSpec(anomaly_rate=t.anomaly_rate, reboots_per_day=0.0)
    spec = FleetSpec(
        seed=seed,
        devices=devices,
        days=days,
        start_ms=1_767_225_600_000,  # 2026-01-01: a fixed window keeps training reproducible
        churn_fraction=t.churn_fraction,
        faults=faults,
    )
    return Fleet.generate(spec)


def cutoffs(fleet: Fleet, every_days: float, seed: int) -> list[int]:
    """Snapshot times from ``MIN_HISTORY_DAYS`` on, one per ``every_days`` at a random time.

    Agents score at any hour, so the rows must not all be at midnight (the day's usage
    so far, the hours since the last use, depend on the time of day).
    """
    rng = random.Random(f"cutoffs:{seed}:{every_days}")
    step = int(every_days * DAY_MS)
    first = fleet.start_ms + MIN_HISTORY_DAYS * DAY_MS
    times = (t + rng.randrange(step) for t in range(first, fleet.end_ms, step))
    return [t for t in times if t < fleet.end_ms]


def _churn_label(days_to_churn: float | None) -> bool:
    return days_to_churn is not None and 0 < days_to_churn <= HORIZON_DAYS


def _session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _run(model: bytes, output: str, x: list[list[float]]) -> np.ndarray:
    out: np.ndarray = _session(model).run([output], {"features": np.asarray(x, np.float32)})[0]
    return out


def _write(
    out: Path,
    kind: ModelKind,
    product: str,
    fitted: Fitted,
    inputs: tuple[str, ...],
    key: SigningKey | None,
    version: int,
    horizon: int = 0,
) -> ModelManifest:
    name = f"{kind}-{product}"
    manifest = ModelManifest(
        name=name,
        version=version,
        kind=kind,
        product=product,
        inputs=inputs,
        sha256=sha256_hex(fitted.onnx),
        size=len(fitted.onnx),
        metrics={k: round(v, 4) for k, v in fitted.metrics.items() if np.isfinite(v)},
        threshold=fitted.threshold,
        horizon_days=horizon,
        created_ms=time.time_ns() // 1_000_000,
    )
    if key is not None:
        manifest = manifest.sign(key)
    (out / f"{name}.onnx").write_bytes(fitted.onnx)
    (out / f"{name}.manifest.json").write_text(manifest.to_json() + "\n")
    return manifest


#: (customer, snapshot time) -> (churns LEAD_DAYS later, predicted risk), of one product
_Scored = dict[tuple[str, int], tuple[bool, float]]


def _churn(
    train: Fleet, held: Fleet, product: str, t: SimTraining
) -> tuple[Fitted, dict[str, float], _Scored]:
    """Fit on daily snapshots of ``train``; score 7 days before each churn in ``held``."""
    rows = customer_rows(
        train, product, cutoffs(train, 1.0, t.seed), min_history_days=MIN_HISTORY_DAYS
    )
    keep = [i for i, d in enumerate(rows.days_to_churn) if d is None or d > 0]
    churn = fit_churn(
        [rows.x[i] for i in keep],
        [_churn_label(rows.days_to_churn[i]) for i in keep],
        churn_columns(product),
    )
    # Positives: each churner LEAD_DAYS before churning; negatives: weekly snapshots of
    # the customers who do not churn.
    ev = customer_rows(
        held, product, cutoffs(held, 7.0, t.eval_seed), before_churn_days=LEAD_DAYS,
        min_history_days=MIN_HISTORY_DAYS,
    )  # fmt: skip
    pos = [i for i, d in enumerate(ev.days_to_churn) if d is not None and abs(d - LEAD_DAYS) < 1e-6]
    neg = [i for i, d in enumerate(ev.days_to_churn) if d is None]
    if not (pos and neg):
        return churn, {}, {}
    p = _run(churn.onnx, "probabilities", [ev.x[i] for i in pos + neg])[:, 1]
    truth = [True] * len(pos) + [False] * len(neg)
    customers = [ev.subject[i] for i in pos + neg]
    auc, low, high = auc_interval(truth, p, customers, seed=t.eval_seed)
    churn.metrics["heldout_auc_7d"] = auc
    churn.metrics["heldout_positives"] = float(len(pos))
    scored = {
        (ev.subject[i], ev.cutoff_ms[i]): (y, float(risk))
        for i, y, risk in zip(pos + neg, truth, p, strict=True)
    }
    return churn, {"heldout_auc_7d_low": low, "heldout_auc_7d_high": high}, scored


def _twin_level(scored: dict[str, _Scored], seed: int) -> dict[str, dict[str, float]]:
    """Per product: the AUC if a customer's risk were the highest over their products.

    Not what a device reports (each device scores its own product): what a hub that
    combined the ``<product>.churn_risk`` fields of a twin could reach.
    """
    highest: dict[tuple[str, int], float] = {}
    for rows in scored.values():
        for key, (_, risk) in rows.items():
            highest[key] = max(risk, highest.get(key, 0.0))
    out = {}
    for product, rows in scored.items():
        if not rows:
            continue
        keys = list(rows)
        auc, low, high = auc_interval(
            [rows[k][0] for k in keys],
            np.asarray([highest[k] for k in keys]),
            [customer for customer, _ in keys],
            seed=seed,
        )
        out[product] = {
            "heldout_auc_7d_twin": auc,
            "heldout_auc_7d_twin_low": low,
            "heldout_auc_7d_twin_high": high,
        }
    return out


def train_from_sim(
    out: Path, key: SigningKey | None, t: SimTraining = SimTraining()
) -> dict[str, Any]:
    """Train every model on one simulated fleet, score it on another; return the report.

    One product at a time, each from fresh fleet objects (a fleet caches the signals it
    generated): only one product's streams are held in memory at once.
    """
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {"training": t.__dict__, "models": {}}
    evaluated = set(_fleet(t.eval_seed, t.eval_devices, t.days, t).devices)
    seg_rows: dict[str, CustomerRows] = {}
    held_seg: dict[str, CustomerRows] = {}
    scored: dict[str, _Scored] = {}
    for product in sorted(PRODUCTS):
        train = _fleet(t.seed, t.devices, t.days, t)
        held = _fleet(t.eval_seed, t.eval_devices * t.churn_eval_factor, t.days, t)
        # Segments: one snapshot per active customer at the end of the window.
        seg_rows[product] = customer_rows(
            train, product, [train.end_ms], min_history_days=MIN_HISTORY_DAYS, active_only=True
        )
        held_seg[product] = customer_rows(
            held,
            product,
            [held.end_ms],
            min_history_days=MIN_HISTORY_DAYS,
            active_only=True,
            devices=evaluated,
        )

        # Churn: daily snapshots, label = churns within the horizon.
        churn, interval, scored[product] = _churn(train, held, product, t)
        inputs = feature_names(product)
        m = _write(out, "churn", product, churn, inputs, key, t.version, HORIZON_DAYS)
        report["models"][m.name] = {"ref": m.ref, **churn.metrics, **interval}

        # Anomaly: every gauge reading.
        arows = anomaly_rows(train, [product])
        if arows.x:
            anomaly = fit_anomaly(arows.x, arows.injected, seed=t.seed)
            hrows = anomaly_rows(held, [product], devices=evaluated)
            scores = _run(anomaly.onnx, "scores", hrows.x)[:, 0]
            prec, rec = precision_recall(
                scores >= anomaly.threshold, np.asarray(hrows.injected, dtype=bool)
            )
            anomaly.metrics.update(heldout_precision=prec, heldout_recall=rec)
            anomaly.metrics["heldout_injected"] = float(sum(hrows.injected))
            m = _write(out, "anomaly", product, anomaly, ANOMALY_FEATURES, key, t.version)
            report["models"][m.name] = {"ref": m.ref, "threshold": m.threshold, **anomaly.metrics}
        del train, held  # and the signals they cached
    for product, twin in _twin_level(scored, t.eval_seed).items():
        report["models"][f"churn-{product}"].update(twin)
    # Segments: one k for all products.
    curves = {
        p: stability(
            StandardScaler().fit_transform(np.asarray(r.x, np.float32)[:, segment_columns(p)]),
            seed=t.seed,
        )
        for p, r in seg_rows.items()
    }
    k = choose_k(list(curves.values()))
    report["segments"] = {"k": k, "stability": curves}
    for product in sorted(PRODUCTS):
        segment = fit_segment(seg_rows[product].x, k, segment_columns(product), seed=t.seed)
        labels = _run(segment.onnx, "label", held_seg[product].x).tolist()
        segment.metrics["heldout_ari"] = ari(labels, held_seg[product].persona)
        m = _write(out, "segment", product, segment, feature_names(product), key, t.version)
        report["models"][m.name] = {
            "ref": m.ref,
            **segment.metrics,
            "rows": len(held_seg[product].x),
        }
    report["seconds"] = time.perf_counter() - started
    report["twins_trained"] = sum(len(r.x) for r in seg_rows.values())
    write_report(out, report)
    return report


def write_report(out: Path, report: dict[str, Any]) -> None:
    """``report.json`` beside the models (what was trained, on what, and how it scored)."""
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
