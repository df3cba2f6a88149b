"""``twinsync hub train --sim`` on a small fleet: artefacts, signatures, held-out scores.

The quality targets (ARI, churn AUC, anomaly precision/recall) are measured on the full
default training run and reported in docs/models.md; here a small, fast run must still
produce working, signed, correctly shaped models whose scores beat chance clearly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cloud_hub import load_hub_config
from firmware_sim import DAY_MS, FaultSpec, Fleet, FleetSpec
from protocol import ANOMALY_FEATURES, PRODUCTS, ModelManifest, SigningKey, feature_names
from twinsync.cli import main as twinsync_main
from twinsync.training import (
    auc_interval,
    churn_columns,
    customer_rows,
    cutoffs,
    fit_churn,
    fit_segment,
    segment_columns,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SigningKey]:
    tmp = tmp_path_factory.mktemp("train")
    (tmp / "hub.toml").write_text('[keys]\nsecrets_dir = "secrets"\n')
    code = twinsync_main(
        ["hub", "train", "--config", str(tmp / "hub.toml"), "--sim", "--out", str(tmp / "models"),
         "--devices", "100", "--days", "42", "--eval-devices", "60", "--version", "2"]
    )  # fmt: skip
    assert code == 0
    config = load_hub_config(tmp / "hub.toml", environ={})
    key = SigningKey.from_bytes((config.keys.secrets_dir / "hub.key").read_bytes())
    return tmp / "models", key


def test_every_model_is_signed_hashed_and_runs(trained: tuple[Path, SigningKey]) -> None:
    out, key = trained
    for product in PRODUCTS:
        for kind in ("segment", "churn", "anomaly"):
            manifest = ModelManifest.from_json(
                (out / f"{kind}-{product}.manifest.json").read_text()
            )
            manifest.verify({key.kid: key.public})
            data = (out / f"{kind}-{product}.onnx").read_bytes()
            manifest.check_file(data)
            assert manifest.version == 2
            expected = ANOMALY_FEATURES if kind == "anomaly" else feature_names(product)
            assert manifest.inputs == expected
            session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
            assert [i.name for i in session.get_inputs()] == ["features"]
            output = {"segment": "label", "churn": "probabilities", "anomaly": "scores"}[kind]
            assert [o.name for o in session.get_outputs()] == [output]
            row = np.zeros((3, len(expected)), np.float32)
            (result,) = session.run([output], {"features": row})
            assert np.all(np.isfinite(result))
            if kind == "churn":
                assert np.allclose(result.sum(axis=1), 1.0, atol=1e-4)


def test_held_out_scores_beat_chance(trained: tuple[Path, SigningKey]) -> None:
    out, _ = trained
    report = json.loads((out / "report.json").read_text())
    models = report["models"]
    assert 3 <= report["segments"]["k"] <= 8
    assert models["segment-wearable"]["heldout_ari"] > 0.6
    assert models["segment-tv"]["heldout_ari"] > 0.6
    churn = models["churn-wearable"]
    assert churn["heldout_auc_7d"] > 0.8
    assert churn["heldout_auc_7d_low"] <= churn["heldout_auc_7d"] <= churn["heldout_auc_7d_high"]
    assert churn["heldout_auc_7d_twin"] > 0.8  # the highest risk over a customer's products
    for product in PRODUCTS:
        assert models[f"anomaly-{product}"]["heldout_recall"] > 0.9, product
        assert models[f"anomaly-{product}"]["heldout_precision"] > 0.9, product


# -- evaluation and model inputs (no training run) --------------------------------------
def _fleet(**kw: object) -> Fleet:
    spec = {"seed": 4, "devices": 24, "days": 30, "start_ms": 1_767_225_600_000, **kw}
    return Fleet.generate(FleetSpec(**spec, faults=FaultSpec.none()))  # type: ignore[arg-type]


def test_churners_are_scored_inside_the_simulated_window_only() -> None:
    """After the window every device falls silent: a snapshot there would look like churn."""
    fleet = _fleet(churn_fraction=1.0)
    rows = customer_rows(fleet, "coffee", [], before_churn_days=7, min_history_days=0)
    assert rows.x
    assert all(fleet.start_ms <= t < fleet.end_ms for t in rows.cutoff_ms)
    late = [c for c in fleet.customers if c.churn_ms and c.churn_ms - 7 * DAY_MS >= fleet.end_ms]
    assert late  # the fleet has churners whose evaluation point lies beyond the window
    assert not {c.subject for c in late} & set(rows.subject)


def test_snapshots_fall_at_any_time_of_day() -> None:
    fleet = _fleet()
    cuts = cutoffs(fleet, 1.0, seed=1)
    assert cuts == cutoffs(fleet, 1.0, seed=1)
    assert cuts == sorted(cuts)
    assert all(fleet.start_ms + 14 * DAY_MS <= t < fleet.end_ms for t in cuts)
    assert len(cuts) == 16
    hours = {t % DAY_MS // 3_600_000 for t in cuts}
    assert len(hours) > 8  # agents score at every hour, not at midnight


def test_auc_interval_resamples_customers() -> None:
    rng = np.random.default_rng(0)
    truth = [True] * 30 + [False] * 300
    groups = [f"c{i}" for i in range(30)] + [f"n{i // 10}" for i in range(300)]
    assert auc_interval(truth, np.r_[np.ones(30), np.zeros(300)], groups) == (1.0, 1.0, 1.0)
    auc, low, high = auc_interval(truth, rng.random(330), groups)
    assert low < auc < high
    assert low < 0.5 < high


def test_models_read_only_their_columns() -> None:
    """Churn reads the comparisons with the usual self; segments, the habits."""
    names = feature_names("coffee")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, len(names)))
    y = x[:, names.index("uses_vs_usual_7d")] < -0.5
    churn = fit_churn(x.tolist(), y.tolist(), churn_columns("coffee"))
    segment = fit_segment(x.tolist(), 3, segment_columns("coffee"), seed=1)
    read_by_churn = [names[i] for i in churn_columns("coffee")]
    read_by_segments = [names[i] for i in segment_columns("coffee")]
    assert "share_morning" not in read_by_churn
    assert "habit_strength" in read_by_segments
    assert not set(read_by_churn) & set(read_by_segments)
    for fitted, output, ignored in (
        (churn, "probabilities", read_by_segments),
        (segment, "label", read_by_churn),
    ):
        session = ort.InferenceSession(fitted.onnx, providers=["CPUExecutionProvider"])
        other = x.copy()
        for name in ignored:
            other[:, names.index(name)] = rng.normal(size=len(x)) * 100
        (a,) = session.run([output], {"features": x.astype(np.float32)})
        (b,) = session.run([output], {"features": other.astype(np.float32)})
        assert np.array_equal(a, b)
