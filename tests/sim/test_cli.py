"""``twinsync sim``: generate files, print stats, help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware_sim import GroundTruth
from firmware_sim.cli import main

START = "1790000040000"


def test_generate_writes_fleet_and_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "brand.key").write_bytes(bytes(range(32)))
    (bundle / "agent.toml").write_text('[pseudonym]\nkey_file = "brand.key"\nepoch = 2\n')
    out = tmp_path / "out"
    argv = ["generate", "--seed", "3", "--devices", "5", "--days", "0.25", "--start-ms", START,
            "--now-ms", str(int(START) + 86_400_000), "--bundle", str(bundle / "agent.toml"),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "5 devices" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert names == {
        "fleet.json", "labels.json", "signals.jsonl", "points.jsonl", "twins.json", "summary.json"
    }  # fmt: skip
    truth = GroundTruth.load(out)
    assert truth.twins
    assert all(t.startswith("2-") for t in truth.twins)  # epoch from the bundle
    fleet = json.loads((out / "fleet.json").read_text())
    assert len(fleet["devices"]) == 5
    assert main(argv) == 0  # deterministic: same files again
    assert GroundTruth.load(out).expected_points == truth.expected_points


def test_generate_without_a_key_makes_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["generate", "--devices", "2", "--days", "0.1", "--out", str(out)]) == 0
    assert len((out / "brand.key").read_bytes()) == 32
    assert (out / "brand.key").stat().st_mode & 0o077 == 0


def test_stats_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--devices", "12", "--no-faults", "--start-ms", START]) == 0
    out = capsys.readouterr().out
    assert "signals/device" in out
    assert "customers" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "generate" in capsys.readouterr().out


def test_errors_are_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "--out", str(tmp_path), "--brand-key", str(tmp_path / "missing")])
    assert code == 2  # input errors exit 2, like every command's configuration errors
    assert "twinsync sim:" in capsys.readouterr().err
    assert main(["stats", "--brand", "Bad Brand"]) == 2


def test_generate_a_realistic_fleet_with_knobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "real"
    argv = ["generate", "--profile", "realistic", "--seed", "4", "--devices", "12",
            "--days", "2", "--start-ms", START, "--now-ms", str(int(START) + 3 * 86_400_000),
            "--loss", "0.2", "--timezones", "Asia/Tokyo,+05:30",
            "--set", "faults.anomaly_rate=0.02", "--set", "life.seasons=false",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["spec"]["sensors"]["loss"] == 0.2
    assert fleet["spec"]["faults"]["anomaly_rate"] == 0.02
    assert fleet["spec"]["life"]["seasons"] is False
    assert fleet["spec"]["churn"]["monthly_rate"] == 0.02  # the rest of the profile stays
    assert {h["tz"] for h in fleet["households"]} == {"Asia/Tokyo", "+05:30"}
    assert {d["tz"] for d in fleet["devices"]} <= {"Asia/Tokyo", "+05:30", "UTC"}
    labels = json.loads((out / "labels.json").read_text())
    assert set(labels) == {d["device_id"] for d in fleet["devices"]}
    anomalies = [a for device in labels.values() for a in device["anomalies"].values()]
    assert {a["kind"] for a in anomalies} >= {"spike", "level_shift", "stuck"}
    assert sum(device["lost"] for device in labels.values()) > 0
    assert main(["stats", "--profile", "realistic", "--devices", "12", "--start-ms", START]) == 0
    printed = capsys.readouterr().out
    assert "zones" in printed
    assert "anomalous signals:" in printed


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("sensors.volume=3", "SensorSpec has no field 'volume'"),
        ("seed.x=1", "seed is a value"),
        ("sensors.loss=1.5", "loss must be"),
        ("noequals", "give FIELD=VALUE"),
        ('population.timezones=["Nowhere/Land"]', "Nowhere/Land"),
    ],
)
def test_bad_settings_say_what_to_change(
    setting: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--devices", "2", "--set", setting]) == 2
    assert message in capsys.readouterr().err
