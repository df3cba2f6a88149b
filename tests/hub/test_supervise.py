"""Supervision of the hub's loops (cloud_hub._supervise): restart on error, stay fatal on
a configuration error, let cancellation through. The loops here are real coroutines that
fail the way the hub's did (a SQLite file that cannot be opened)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from cloud_hub import ConfigError, Metrics
from cloud_hub.testing import supervise

_FAST = {"first_delay_s": 0.01, "max_delay_s": 0.02}


async def test_a_failing_loop_is_restarted_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    runs: list[str] = []
    steady = asyncio.Event()
    missing = tmp_path / "no-such-dir" / "registry.sqlite"

    async def loop() -> None:
        runs.append("start")
        if len(runs) <= 2:
            sqlite3.connect(f"file:{missing}?mode=rw", uri=True)  # fails: no such file
        steady.set()
        await asyncio.Event().wait()  # then runs until cancelled

    task = asyncio.create_task(supervise("relinks", loop, metrics, **_FAST))
    await asyncio.wait_for(steady.wait(), 10)
    assert runs == ["start"] * 3
    assert metrics.get("twinsync_hub_task_restarts_total", task="relinks") == 2
    assert "hub task relinks stopped (OperationalError" in caplog.text
    # Cancellation goes through: shutdown awaits the loop and nothing restarts it.
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == ["start"] * 3


async def test_a_loop_that_returns_is_started_again() -> None:
    metrics = Metrics()
    runs = 0
    again = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            again.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(supervise("feed", loop, metrics, **_FAST))
    await asyncio.wait_for(again.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert metrics.get("twinsync_hub_task_restarts_total", task="feed") == 1


async def test_a_configuration_error_stays_fatal(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()

    async def bad_config() -> None:
        raise ConfigError("cannot read mqtt.password_file /nope: No such file or directory")

    async def bad_config_in_a_group() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(bad_config())

    with caplog.at_level(logging.ERROR):
        with pytest.raises(ConfigError):
            await supervise("ingest", bad_config, metrics, **_FAST)
        with pytest.raises(ExceptionGroup):
            await supervise("ingest", bad_config_in_a_group, metrics, **_FAST)
    assert metrics.get("twinsync_hub_task_restarts_total") == 0
