"""The README's demo command, run for real (small fleet, exits after its summary)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from twinsync.cli import main as twinsync_main


def test_demo_runs_a_fleet_and_prints_where_to_look(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twinsync", "demo", "--devices", "100", "--days", "0.25",
         "--api-port", "0", "--workdir", str(tmp_path), "--exit"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    match = re.search(r"(\d+) twins from 100 devices", out)
    assert match, out
    assert int(match.group(1)) > 10
    assert re.search(r"hub: [\d,]+ deltas, [\d,]+ field values written, 0 messages rejected", out)
    assert re.search(r"export TS_KEY=tsk_[0-9a-f]{12}_[\w-]{43}$", out, re.M)
    bearer = r'curl -H "Authorization: Bearer \$TS_KEY" '
    assert re.search(bearer + r"http://127\.0\.0\.1:\d+/v1/brands/acme/twins/1-[0-9a-f]{32}", out)
    assert len(re.findall(r"^  1-[0-9a-f]{16}", out, re.M)) == 12  # the summary table rows
    assert re.search(r"^Dashboard: http://127\.0\.0\.1:\d+/dashboard/  \(brand acme", out, re.M)
    # the strategy lab's experiment, finished, with its uplift's interval and the truth
    assert re.search(
        r"^Experiment exp-[0-9a-f]{12} \(loyalty discount\): (\d+) treated \((\d+) shown the "
        r"offer on a device\), \d+ holdout, finished$",
        out,
        re.M,
    ), out
    experiment = re.search(r"^Experiment .*: (\d+) treated \((\d+) shown", out, re.M)
    assert experiment
    # every treated customer saw the offer through the signed downlink and an agent
    assert int(experiment.group(2)) == int(experiment.group(1)) > 5
    assert re.search(r"uplift -?[\d.]+ % \[-?[\d.]+ %, -?[\d.]+ %\] \(the simulator's true", out)
    assert re.search(
        r"^  the finished experiment: http://127\.0\.0\.1:\d+/dashboard/#experiments$", out, re.M
    )
    assert "disconnected from broker (" not in proc.stderr  # a clean stop is not a warning
    assert (tmp_path / "hub.toml").is_file()


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert twinsync_main(["--help"]) == 0
    listing = capsys.readouterr().out
    for name in ("edge", "hub", "sim", "demo", "bench"):
        assert re.search(rf"^  {name}\s+\S", listing, re.M), name
        with pytest.raises(SystemExit) as exc:
            twinsync_main([name, "--help"])
        assert exc.value.code == 0
        assert f"twinsync {name}" in capsys.readouterr().out
    assert twinsync_main(["nope"]) == 2
