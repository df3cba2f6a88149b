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
from cloud_hub.cli import main as hub_main
from protocol import ANOMALY_FEATURES, PRODUCTS, ModelManifest, SigningKey, feature_names


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SigningKey]:
    tmp = tmp_path_factory.mktemp("train")
    (tmp / "hub.toml").write_text('[keys]\nsecrets_dir = "secrets"\n')
    code = hub_main(
        ["train", "--config", str(tmp / "hub.toml"), "--sim", "--out", str(tmp / "models"),
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
    assert models["churn-wearable"]["heldout_auc_7d"] > 0.8
    for product in PRODUCTS:
        assert models[f"anomaly-{product}"]["heldout_recall"] > 0.9, product
        assert models[f"anomaly-{product}"]["heldout_precision"] > 0.9, product
