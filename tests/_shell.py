"""Typing documented commands into a real shell, as an operator would (tests/deploy).

``Shell`` is one bash process commands are written to; each command's output goes to its
own file and its exit status is read back, so shell state (``cd``, ``umask``, variables
such as ``KEY=$(...)``, background jobs) carries from one command to the next exactly as
in a terminal. Only the processes a session starts in the background are stopped at the
end, by their recorded pids.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

from _markdown import REPO, blocks

from twinsync.services import Influxd

__all__ = ["Shell", "backgrounded", "checkout", "influx_setup", "set_toml"]

_BACKGROUND = re.compile(r"(?<![&|])&\s*(#[^'\"]*)?$")


def backgrounded(text: str) -> bool:
    """Whether a command line ends by putting its job in the background (``cmd &``)."""
    return bool(_BACKGROUND.search(text.rstrip().splitlines()[-1]))


class Shell:
    """One bash process that commands are typed into, like an operator's terminal."""

    def __init__(
        self, name: str, cwd: Path, workdir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name, self.dir = name, workdir / f"shell-{name}"
        self.dir.mkdir(parents=True)
        self.pids: list[int] = []
        self._n = 0
        self._log = (self.dir / "bash.log").open("w")
        self._proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            text=True,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("TWINSYNC_")},
                **(env or {}),
            },
        )

    def run(self, text: str, timeout: float = 300) -> tuple[int, str, Path]:
        """Type ``text``; return its exit status, its output and its output file."""
        self._n += 1
        out, rc, pid = (self.dir / f"{kind}.{self._n}" for kind in ("out", "rc", "pid"))
        assert self._proc.stdin is not None
        self._proc.stdin.write(
            # The status is captured first, the pid written before the status file
            # appears (the status file is what this side waits for).
            f"{{\n{text}\n}} > {out} 2>&1\n__rc=$?; echo $! > {pid}; "
            f"echo $__rc > {rc}.tmp; mv {rc}.tmp {rc}\n"
        )
        self._proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while not rc.exists():
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise AssertionError(f"[{self.name}] no end of {text!r} within {timeout}s")
            time.sleep(0.05)
        if backgrounded(text):
            self.pids.append(int(pid.read_text()))
        return int(rc.read_text()), out.read_text(), out

    def close(self) -> None:
        for pid in self.pids:  # only what this session started
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for pid in self.pids:
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._log.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def checkout(dest: Path) -> Path:
    """A copy of the repository's files as a checkout has them (tracked and new files,
    nothing ignored: no venv, no caches, no build directories)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        name = raw.decode()
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def set_toml(path: Path, section: str, values: dict[str, object]) -> None:
    """Set ``key = value`` lines in ``[section]`` as an operator's editor would."""
    lines = path.read_text().splitlines()
    start = lines.index(f"[{section}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for key, value in values.items():
        literal = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
        pattern = re.compile(rf"^#?\s*{re.escape(key)}\s*=")
        for i in range(start + 1, end):
            if pattern.match(lines[i]):
                lines[i] = f"{key} = {literal}"
                break
        else:
            lines.insert(end, f"{key} = {literal}")
            end += 1
    path.write_text("\n".join(lines) + "\n")
    tomllib.loads(path.read_text())  # still valid TOML


def influx_setup(influxd: Influxd, passwords: dict[str, str]) -> dict[str, str]:
    """Run deploy/README.md's InfluxDB statements (its ``sql`` block) as the admin, each
    ``CREATE USER`` with the password ``passwords`` gives that user (the README's are
    placeholders; a user not in ``passwords`` gets a random one). Fail if the README
    does not make a user of ``passwords``; return every user's password."""
    (sql,) = [b for b in blocks(REPO / "deploy/README.md") if b.lang == "sql"]
    made: dict[str, str] = {}
    for statement in (s.strip() for s in sql.code.splitlines() if s.strip()):
        user = re.match(r'CREATE USER "([^"]+)" WITH PASSWORD', statement)
        if user:
            name = user.group(1)
            made[name] = passwords.get(name) or secrets.token_hex(16)
            statement = re.sub(r"'[^']*'", f"'{made[name]}'", statement)  # noqa: PLW2901
        influxd.query(statement)
    missing = sorted(set(passwords) - set(made))
    assert missing == [], f"deploy/README.md does not create the users {missing}"
    return made
