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
    assert names == {"fleet.json", "signals.jsonl", "points.jsonl", "twins.json", "summary.json"}
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
