"""Helpers of tests/store: where a test's store lives, and talking to worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_hub.store import StateStore, open_state_store

WORKER = Path(__file__).with_name("state_worker.py")


@dataclass(frozen=True)
class Target:
    """Where a test's store lives: ``state.url`` and the password (PostgreSQL)."""

    kind: str
    url: str
    password: str = ""

    def open(self, **kwargs: Any) -> StateStore:
        return open_state_store(self.url, password=self.password, **kwargs)

    def worker(self, *args: str) -> subprocess.Popen[str]:
        """``state_worker.py`` on this store in a subprocess (lines on stdin/stdout)."""
        return subprocess.Popen(
            [sys.executable, str(WORKER), self.url, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "STATE_PASSWORD": self.password},
        )


def read_json(proc: subprocess.Popen[str]) -> Any:
    """The next line a worker printed, as JSON (its stderr if it died instead)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        assert proc.stderr is not None
        raise AssertionError(f"worker ended without an answer: {proc.stderr.read()[-3000:]}")
    return json.loads(line)


def until(check: Callable[[], bool], within: float = 30.0) -> bool:
    """Poll ``check`` until it holds or ``within`` seconds pass; its last verdict. (The
    other side is another process or the database server: there is no event to await.)"""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
