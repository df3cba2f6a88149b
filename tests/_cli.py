"""Running the real ``twinsync`` console command as an operator would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def twinsync_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m twinsync``."""
    script = Path(sys.executable).with_name("twinsync")
    return [str(script)] if script.exists() else [sys.executable, "-m", "twinsync"]


def run_twinsync(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``twinsync *args`` to completion; ``env`` is added to this process's environment."""
    return subprocess.run(
        [*twinsync_command(), *args],
        env={**os.environ, **(env or {})},
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert ``proc`` failed the way a configuration error must (exit 2, one line on
    stderr, no traceback) and return that line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    return lines[0]
