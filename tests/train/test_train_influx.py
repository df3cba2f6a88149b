"""``twinsync hub train --influx``: segment models learnt from the twins' feature fields.

The rows are what agents write (``<product>.f_<feature>`` per twin and device), put into
a real influxd; the learnt segments must recover the simulator's personas.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.metrics import adjusted_rand_score

from cloud_hub import load_hub_config
from cloud_hub.store import MEASUREMENT_OF
from firmware_sim import FaultSpec, Fleet, FleetSpec
from protocol import FEATURE_FIELDS, FeatureState, ModelManifest, feature_names, pseudonymize
from twinsync.cli import main as twinsync_main
from twinsync.services import Influxd, LocalServices


def _write_twin_features(
    influxd: Influxd, db: str, brand: str
) -> dict[str, list[tuple[list[float], str]]]:
    fleet = Fleet.generate(
        FleetSpec(
            seed=21,
            devices=160,
            days=30,
            # A fixed window: features depend on days and dayparts, so "now - 2 days" would
            # give different data (and a different training run) every time.
            start_ms=1_767_225_600_000,
            churn_fraction=0.0,
            faults=FaultSpec.none(),
        )
    )
    key = secrets.token_bytes(32)
    lines, truth = [], {}
    ts = fleet.end_ms * 1_000_000
    for dev in fleet.devices:
        states: dict[str, FeatureState] = {}
        for s in fleet.signals(dev.device_id):
            states.setdefault(s.subject, FeatureState(dev.product)).update(s.name, s.ts, s.value)
        for subject, fs in states.items():
            twin = pseudonymize(key, 1, subject)
            vector = [round(v, 4) for v in fs.vector(fleet.end_ms)]
            truth.setdefault(dev.product, []).append((vector, fleet.customer(subject).persona))
            for i, (name, value) in enumerate(zip(feature_names(dev.product), vector, strict=True)):
                field = FEATURE_FIELDS[(dev.product, name)]
                tags = f"brand={brand},device={dev.device_id},twin={twin}"
                lines.append(f"{MEASUREMENT_OF[field]},{tags} {field}={value!r} {ts + i}")
    influxd.query(f"CREATE DATABASE {db}")
    influxd.write(db, lines)
    return truth


def test_segments_learnt_from_influx_recover_personas(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    db, brand = f"tr{unique}", f"b{unique}"
    truth = _write_twin_features(services.influxd, db, brand)
    (tmp_path / "hub.toml").write_text(
        services.influxd.hub_toml(db) + '[keys]\nsecrets_dir = "secrets"\n'
    )
    out = tmp_path / "models"
    hub_toml = str(tmp_path / "hub.toml")
    train = ["hub", "train", "--config", hub_toml]
    assert twinsync_main([*train, "--influx", brand, "--out", str(out), "--version", "7"]) == 0
    config = load_hub_config(tmp_path / "hub.toml", environ={})
    from cloud_hub.registry import ensure_hub_key

    key = ensure_hub_key(config.keys.secrets_dir)
    report = json.loads((out / "report.json").read_text())
    assert report["segments"]["k"] == 5
    for product, rows in truth.items():
        manifest = ModelManifest.from_json((out / f"segment-{product}.manifest.json").read_text())
        manifest.verify({key.kid: key.public})
        data = (out / f"segment-{product}.onnx").read_bytes()
        manifest.check_file(data)
        assert manifest.version == 7
        held = report["models"][f"segment-{product}"]
        assert held["heldout_agreement"] > 0.6  # k-means itself is not perfectly stable
        assert held["heldout_silhouette"] > 0.1
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        x = np.asarray([r[0] for r in rows], np.float32)
        (labels,) = session.run(["label"], {"features": x})
        # 30 days of 160 devices: enough to find the personas, not to separate them all
        assert adjusted_rand_score([r[1] for r in rows], labels) > 0.7, product
    assert twinsync_main([*train, "--influx", "nobody", "--out", str(tmp_path / "none")]) == 1
