"""``twinsync hub train --sim`` on small fleets: artefacts, signatures, the held-out
report (every score beside its baselines, the targets), and rows that are exactly what
a device computes.

The quality targets are measured on the full default training run (the realistic
profile) and reported in docs/models.md; here a small, fast run on the easy profile must
produce working, signed, correctly shaped models whose scores beat chance clearly, and a
report with every part docs/models.md quotes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cloud_hub import load_hub_config
from firmware_sim import DAY_MS, FaultSpec, Fleet, FleetSpec
from protocol import (
    ANOMALY_FEATURES,
    PRODUCTS,
    Coverage,
    FeatureState,
    LocalTime,
    ModelManifest,
    SigningKey,
    feature_names,
)
from twinsync.cli import main as twinsync_main
from twinsync.training import (
    SimTraining,
    anomaly_rows,
    auc_interval,
    churn_columns,
    customer_rows,
    cutoffs,
    dense_fleet,
    fit_anomaly,
    fit_churn,
    fit_segment,
    replay,
    segment_columns,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SigningKey]:
    tmp = tmp_path_factory.mktemp("train")
    (tmp / "hub.toml").write_text('[keys]\nsecrets_dir = "secrets"\n')
    code = twinsync_main(
        ["hub", "train", "--config", str(tmp / "hub.toml"), "--sim", "--out", str(tmp / "models"),
         "--devices", "100", "--days", "42", "--eval-devices", "60", "--eval-seed", "1001",
         "--profile", "easy", "--segment-fleets", "2", "--version", "2"]
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


def test_held_out_scores_beat_chance_and_their_baselines_are_beside_them(
    trained: tuple[Path, SigningKey],
) -> None:
    out, _ = trained
    report = json.loads((out / "report.json").read_text())
    assert 3 <= report["segments"]["k"] <= 8
    held = report["evaluation"]["1001"]
    assert set(held) == set(PRODUCTS)
    for product, scores in held.items():
        seg, churn, anomaly = scores["segment"], scores["churn"], scores["anomaly"]
        # every score has its baselines beside it
        assert set(seg["baselines"]) == {"kmeans_1", "kmeans_2", "rule_1", "rule_2"}
        assert 0 <= seg["reference_accuracy"] <= 1
        assert {"7", "14"} <= set(churn["by_lead"])
        for entry in churn["by_lead"].values():
            assert {"auc", "ap", "baseline_auc", "baseline_ap", "ceiling_auc"} <= set(entry)
            assert entry["ceiling_auc"] >= 0.5
        assert "baseline_precision_at_rate" in churn
        assert len(anomaly["baselines"]) == 2
        # per alert beside per reading, for the model and each baseline
        for scored in (anomaly, *anomaly["baselines"].values()):
            assert {"precision", "false_per_device_day", "by_size"} <= set(scored["alerts"])
        assert "per_reading" in report["targets"]["1001"][product]["anomaly_precision_every_size"]
        assert set(report["targets"]["1001"][product]) >= {
            "segment_accuracy",
            "churn_auc_7d",
            "anomaly_recall_every_size",
        }
        # the easy fleet: personas without variation, one churn ramp, large spikes
        assert seg["accuracy"] > 0.8, product
        assert anomaly["recall"] > 0.9, product
        assert anomaly["precision"] > 0.9, product
    assert held["wearable"]["churn"]["by_lead"]["7"]["auc"] > 0.8
    manifest = report["models"]["churn-wearable"]
    assert manifest["heldout_auc_7d"] == pytest.approx(
        held["wearable"]["churn"]["by_lead"]["7"]["auc"]
    )


_TRAIN_ARGS = ["--devices", "100", "--days", "42", "--eval-devices", "60", "--eval-seed", "1001",
               "--segment-fleets", "2", "--profile", "easy"]  # fmt: skip


def test_retraining_one_kind_rewrites_its_models_and_scores_only(
    trained: tuple[Path, SigningKey], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--kinds churn``: new churn models, their scores replace the old ones in the
    report; every other file is byte for byte what the whole run wrote."""
    first, key = trained
    out = tmp_path / "models"
    out.mkdir()
    for f in first.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    old = json.loads((out / "report.json").read_text())
    config = ["hub", "train", "--config", str(first.parent / "hub.toml"), "--sim"]

    # Other settings than the report's: refused before any training, nothing written.
    code = twinsync_main([*config, "--out", str(out), "--kinds", "churn", *_TRAIN_ARGS[:-2]])
    assert code == 2
    err = capsys.readouterr().err
    assert "profile='easy' there, 'realistic' here" in err
    assert "same settings" in err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    # No earlier report to amend.
    code = twinsync_main(
        [*config, "--out", str(tmp_path / "empty"), "--kinds", "churn", *_TRAIN_ARGS]
    )
    assert code == 2
    assert "train every kind first" in capsys.readouterr().err
    assert twinsync_main(["hub", "train", "--influx", "b", "--kinds", "churn", "--out", "x"]) == 2
    assert "--kinds goes with --sim" in capsys.readouterr().err

    code = twinsync_main(
        [*config, "--out", str(out), "--kinds", "churn", "--version", "3", *_TRAIN_ARGS]
    )
    assert code == 0
    assert "retrained churn in" in capsys.readouterr().out
    after = {f.name: f.read_bytes() for f in out.iterdir()}
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {"report.json"} | {
        f"churn-{p}.{ext}" for p in PRODUCTS for ext in ("onnx", "manifest.json")
    }
    for product in PRODUCTS:
        manifest = ModelManifest.from_json((out / f"churn-{product}.manifest.json").read_text())
        manifest.verify({key.kid: key.public})
        manifest.check_file((out / f"churn-{product}.onnx").read_bytes())
        assert manifest.version == 3
    new = json.loads((out / "report.json").read_text())
    assert new["training"] == {**old["training"], "version": 3}
    assert new["segments"] == old["segments"]
    assert [run["kinds"] for run in new["retrained"]] == [["churn"]]
    for product in PRODUCTS:
        was, now = old["evaluation"]["1001"][product], new["evaluation"]["1001"][product]
        assert now["segment"] == was["segment"]
        assert now["anomaly"] == was["anomaly"]
        assert now["churn"]["by_lead"]["7"]["positives"] > 0
        assert new["models"][f"churn-{product}"]["ref"] == f"churn-{product}@3"
        assert new["models"][f"segment-{product}"] == old["models"][f"segment-{product}"]
    assert (
        new["targets"]["1001"]["coffee"]["churn_auc_7d"]["value"]
        == (new["evaluation"]["1001"]["coffee"]["churn"]["by_lead"]["7"]["auc"])
    )


def test_a_setting_newer_than_the_report_counts_as_its_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report from before ``sub_personas`` existed (like the shipped one was): `make
    models`' settings still match it, so its kinds can be retrained alone. Only the
    setting every kind depends on is named: the number of segment fleets may change
    when the segments are what is retrained."""
    shipped = Path(__file__).parents[2] / "edge_agent" / "models" / "report.json"
    report = json.loads(shipped.read_text())
    report["training"].pop("sub_personas", None)
    (tmp_path / "report.json").write_text(json.dumps(report))
    code = twinsync_main(
        ["hub", "train", "--sim", "--unsigned", "--kinds", "segment", "--days", "69",
         "--segment-fleets", "2", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "(days=70.0 there, 69.0 here)" in err


# -- evaluation and model inputs (no training run) --------------------------------------
def test_the_dense_anomaly_fleet_is_of_the_training_side_only() -> None:
    """The TV's extra anomaly rows come from a fleet of its own seed: never the training
    fleet's, never a held-out one, with ``dense_factor`` times the devices."""
    t = SimTraining(seed=3, devices=8, days=7.0)
    dense = dense_fleet(t)
    assert "tv" in t.dense_products
    assert "tv" in t.anomaly_eval_all
    assert dense.spec.seed not in (t.seed, *t.eval_seeds)
    assert len(dense.devices) == round(8 * t.dense_factor)
    assert dense.spec.faults.anomaly_rate == FleetSpec.realistic().faults.anomaly_rate


def _fleet(**kw: object) -> Fleet:
    spec = {"seed": 4, "devices": 24, "days": 30, "start_ms": 1_767_225_600_000, **kw}
    return Fleet.generate(FleetSpec(**spec, faults=FaultSpec.none()))  # type: ignore[arg-type]


def test_churners_are_scored_inside_the_simulated_window_only() -> None:
    """After the window every device falls silent: a snapshot there would look like churn."""
    fleet = _fleet(churn_fraction=1.0)
    rows = customer_rows(fleet, "coffee", [], before_churn_days=(7,), min_history_days=0)
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
    churn = fit_churn(x.tolist(), y.tolist(), "coffee", churn_columns("coffee"))
    segment = fit_segment(x.tolist(), 3, "coffee", segment_columns("coffee"), seed=1)
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


def test_rows_are_what_the_device_computes_on_its_own_clock_and_zone() -> None:
    """No correction with what only the simulator knows: a skewed clock stays skewed, a
    device left on UTC counts UTC days, and the vector is exactly an agent's."""
    spec = FleetSpec.realistic(seed=7, devices=40, days=21, start_ms=1_767_225_600_000)
    spec = dataclasses.replace(
        spec,
        faults=dataclasses.replace(spec.faults, skew_fraction=1.0, reboots_per_day=0.0),
    )
    fleet = Fleet.generate(spec)
    dev = next(d for d in fleet.devices if d.product == "coffee" and len(d.users) == 1)
    truth = fleet.truth(dev.device_id)
    assert truth.clock.offset_ms != 0
    signals = replay(fleet, dev.device_id)
    sent = {s.seq: s.ts for s in fleet.signals(dev.device_id)}
    assert all(r.ts == sent[r.seq] for r in signals)  # the device's stamps, uncorrected
    cut = fleet.end_ms - DAY_MS // 3
    rows = customer_rows(fleet, "coffee", [cut], min_history_days=7)
    mine = [i for i, d in enumerate(rows.device) if d == dev.device_id]
    assert len(mine) == 1
    clock = LocalTime(dev.tz)  # what the agent is configured with, not the household's
    coverage = Coverage(clock)
    state = FeatureState("coffee", clock, coverage)
    for r in signals:
        if r.ts >= cut:
            break
        coverage.observe(r.ts)
        state.update(r.name, r.ts, r.value)
    assert rows.x[mine[0]] == state.vector(cut)
    # the same device configured with another zone computes other features
    other = FeatureState("coffee", LocalTime("+09:00"))
    for r in signals:
        if r.ts < cut:
            other.update(r.name, r.ts, r.value)
    assert other.vector(cut) != rows.x[mine[0]]


def test_the_anomaly_models_trees_take_bounded_steps() -> None:
    """A leaf of rows the trees are already sure about, with one contrary label in it,
    gets a Newton step of sum / ~0 (hundreds here, 1e100 and more on a training fleet):
    float32 infinities in ONNX, and a NaN where two meet. The cap keeps every step at
    most 10 (1.0 after the learning rate) and every score finite."""
    rng = np.random.default_rng(2)
    n = len(ANOMALY_FEATURES)
    x = rng.normal(0.0, 1.0, (4000, n))
    stuck = x[:, ANOMALY_FEATURES.index("run_vs_usual")] > 1.5
    y = (stuck ^ (rng.random(4000) < 0.003)).tolist()  # a few labels the other way
    fitted = fit_anomaly(x.tolist(), y, seed=1)
    model = onnx.load_from_string(fitted.onnx)
    (trees,) = [node for node in model.graph.node if node.op_type == "TreeEnsembleClassifier"]
    weights = next(a.floats for a in trees.attribute if a.name == "class_weights")
    assert np.all(np.isfinite(weights))
    assert np.max(np.abs(weights)) <= 1.0 + 1e-6
    session = ort.InferenceSession(fitted.onnx, providers=["CPUExecutionProvider"])
    probe = np.r_[x, np.full((1, n), 1e6), np.full((1, n), -1e6)].astype(np.float32)
    (scores,) = session.run(["scores"], {"features": probe})
    assert np.all(np.isfinite(scores))
    flagged = scores[: len(x), 0] >= fitted.threshold
    assert np.mean(flagged == stuck) > 0.99


def test_a_capped_tree_leaves_the_rest_to_the_later_trees() -> None:
    """Water-level spikes on clean coffee machines (the easy fleet): some trees' leaves
    there are steps of 1e100 or more. Capped after the fit, the later trees had been
    fitted as if those steps were taken, and the capped sum stayed below even odds: the
    model flagged 27 % of the spikes it was trained on (and 25 % of a held-out fleet's).
    Re-estimated tree by tree on the capped sum, the steps add up."""
    spec = FleetSpec(
        seed=4, devices=40, days=28, start_ms=1_767_225_600_000,
        faults=FaultSpec(anomaly_rate=0.01, reboots_per_day=0.0),
    )  # fmt: skip
    fleet = Fleet.generate(spec)
    rows = anomaly_rows(fleet, ["coffee"])
    assert sum(rows.injected) > 100
    fitted = fit_anomaly(rows.x, rows.injected, seed=1)
    session = ort.InferenceSession(fitted.onnx, providers=["CPUExecutionProvider"])
    (scores,) = session.run(["scores"], {"features": np.asarray(rows.x, np.float32)})
    flagged = scores[:, 0] >= fitted.threshold
    truth = np.asarray(rows.injected)
    assert np.mean(flagged[truth]) > 0.95
    assert np.mean(truth[flagged]) > 0.95
