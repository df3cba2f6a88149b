"""The NDJSON ingest interface, in-process and in a real ``twinsync edge run`` process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge_agent import Agent
from twinsync.services import LocalServices, free_port

from .conftest import Acker, Bundle
from .test_pipeline import sig
from .test_sync import _wait


async def test_malformed_lines_pipelining_and_unix_socket(
    bundle: Bundle, services: LocalServices, tmp_path: Path
) -> None:
    sock = tmp_path / "ingest.sock"
    cfg = bundle.config(
        services.mosquitto.port, ingest={"port": free_port(), "unix_socket": str(sock)}
    )
    async with Agent(cfg) as agent:
        reader, writer = await asyncio.open_connection("127.0.0.1", cfg.ingest.port)
        lines = [
            sig(1, "coffee.brew", 1).model_dump_json().encode(),
            b"{not json",
            b'{"seq": 7, "ts": 1}',
            b"x" * 10_000,
            sig(2, "coffee.brew", 1).model_dump_json().encode(),
            sig(2, "coffee.brew", 1).model_dump_json().encode(),
        ]
        writer.write(b"\n".join(lines) + b"\n")  # pipelined in one write
        await writer.drain()
        replies = [json.loads(await reader.readline()) for _ in lines]
        # Malformed lines also say why (tests/edge/test_ingest_errors.py checks the words).
        details = [reply.pop("detail", None) for reply in replies]
        assert [d is not None for d in details] == [False, True, True, True, False, False]
        assert replies == [
            {"seq": 1, "status": "accepted", "reason": None},
            {"seq": None, "status": "rejected", "reason": "malformed"},
            {"seq": None, "status": "rejected", "reason": "malformed"},
            {"seq": None, "status": "rejected", "reason": "malformed"},
            {"seq": 2, "status": "accepted", "reason": None},
            {"seq": 2, "status": "duplicate", "reason": None},
        ]
        writer.close()
        await writer.wait_closed()
        ur, uw = await asyncio.open_unix_connection(str(sock))
        uw.write(sig(3, "coffee.brew", 1).model_dump_json().encode() + b"\n")
        assert json.loads(await ur.readline())["status"] == "accepted"
        uw.close()
        await uw.wait_closed()
        assert agent.stats["accepted"] == 3


def _spawn(bundle: Bundle, mqtt_port: int, ingest_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TWINSYNC_EDGE__MQTT__PORT": str(mqtt_port),
        "TWINSYNC_EDGE__INGEST__PORT": str(ingest_port),
        "TWINSYNC_EDGE__SYNC__FLUSH_INTERVAL_MS": "5",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "twinsync", "edge", "run", "--config", str(bundle.toml)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
    )


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    deadline = time.monotonic() + 15
    while True:
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < deadline, "agent ingest port never opened"
            await asyncio.sleep(0.1)


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    bundle: Bundle, services: LocalServices, acker_factory
) -> None:
    mqtt_port, ingest_port = services.mosquitto.port, free_port()
    acker: Acker = acker_factory(bundle, mqtt_port)
    total = 400
    proc = _spawn(bundle, mqtt_port, ingest_port)
    try:
        reader, writer = await _connect(ingest_port)
        for i in range(1, total + 1):
            writer.write(sig(i, "coffee.brew", 1).model_dump_json().encode() + b"\n")
        await writer.drain()
        replies = 0
        while replies < 150:  # kill while later lines are still being committed
            assert json.loads(await reader.readline())["status"] == "accepted"
            replies += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        writer.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc = _spawn(bundle, mqtt_port, ingest_port)
    try:
        reader, writer = await _connect(ingest_port)
        # Firmware re-sends everything not confirmed; confirmed-but-resent ones are dups.
        for i in range(1, total + 1):
            writer.write(sig(i, "coffee.brew", 1).model_dump_json().encode() + b"\n")
        await writer.drain()
        statuses = [json.loads(await reader.readline())["status"] for _ in range(total)]
        assert statuses[:replies] == ["duplicate"] * replies
        assert set(statuses) <= {"duplicate", "accepted"}
        writer.close()
        await _wait(lambda: len(acker.unique_ops()) >= total, limit_s=20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    totals = sorted(op.value for _, op in acker.unique_ops())
    assert totals == list(range(1, total + 1))
