"""Every malformed line on a real agent's ingest socket is answered with the documented
reply plus a ``detail`` naming the wrong key and what it must be; nothing changes, the
connection stays open, the line is counted and logged, and neither the reply nor the log
repeats a value (it may be the raw customer id) or, in the log, a made-up key name."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent import Agent
from twinsync.services import LocalServices

from .conftest import Bundle

RAW_ID = "alice@example.com"  # a customer id firmware might put anywhere by mistake


def _line(**fields: object) -> bytes:
    good: dict[str, object] = {
        "seq": 1,
        "ts": int(time.time() * 1000),
        "subject": "cust-7",
        "name": "coffee.brew",
        "value": 1,
    }
    good.update(fields)
    return json.dumps({k: v for k, v in good.items() if v is not _DROP}).encode()


_DROP = object()

# line -> what the detail must say (substrings)
CASES: dict[str, tuple[bytes, list[str]]] = {
    "seq_string": (
        _line(seq="x"),
        ["seq must be a non-negative integer (the firmware's own per-device counter)",
         "got a string"],
    ),
    "seq_negative": (_line(seq=-1), ["seq must be a non-negative integer",
                                     "greater than or equal to 0"]),
    "seq_bool": (_line(seq=True), ["seq must be a non-negative integer", "got true/false"]),
    "ts_fraction": (_line(ts=1.5), ["ts must be an integer (the device clock, Unix ms)",
                                     "got a number with a fraction"]),
    "subject_number": (_line(subject=12345678), ["subject must be a string", "got an integer"]),
    "subject_empty": (_line(subject=""), ["subject must be a string of 1 to 256 characters",
                                          "at least 1 character"]),
    "name_too_long": (_line(name="x" * 65), ["name must be a string of 1 to 64 characters",
                                             "at most 64 characters"]),
    "value_null": (_line(value=None), ["value must be a number, true/false or a string",
                                       "got null"]),
    "value_object": (_line(value={"a": RAW_ID}), ["value must be", "got an object"]),
    "missing_keys": (_line(subject=_DROP, value=_DROP), ["missing subject, value",
                                                        'a signal is {"seq", "ts", "subject"']),
    "unknown_key": (_line(sequence=1), ['unknown key "sequence"']),
    "bad_json": (b'{"seq": 1, "ts": ', ["not valid JSON: ", "at line 1 column 17"]),
    "not_an_object": (b"[1, 2, 3]", ["a request line must be one JSON object, got an array"]),
    "several_at_once": (
        _line(seq="1", ts=_DROP, colour="red"),
        ["seq must be a non-negative integer", "missing ts", 'unknown key "colour"'],
    ),
}  # fmt: skip


@pytest.fixture
async def agent_socket(
    bundle: Bundle, services: LocalServices, tmp_path: Path
) -> AsyncIterator[tuple[Agent, str]]:
    sock = str(tmp_path / "in.sock")
    async with Agent(bundle.config(services.mosquitto.port, ingest={"unix_socket": sock})) as a:
        yield a, sock


async def _ask(sock: str, *lines: bytes) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(sock)
    try:
        writer.write(b"".join(line + b"\n" for line in lines))
        await writer.drain()
        return [json.loads(await reader.readline()) for _ in lines]
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_malformed_line_names_the_wrong_key(
    case: str, agent_socket: tuple[Agent, str], caplog: pytest.LogCaptureFixture
) -> None:
    agent, sock = agent_socket
    caplog.set_level(logging.WARNING, logger="edge_agent.ingest")
    line, expected = CASES[case]
    good = _line(seq=5)
    bad, after = await _ask(sock, line, good)  # one connection: it stays open
    detail = bad.pop("detail")
    assert bad == {"seq": None, "status": "rejected", "reason": "malformed"}
    for part in expected:
        assert part in detail, detail
    assert "\n" not in detail
    assert "cust-7" not in detail
    assert RAW_ID not in detail
    assert after == {"seq": 5, "status": "accepted", "reason": None}
    # Nothing of the malformed line counted as a signal; it was logged (and counted).
    assert agent.stats["accepted"] == 1
    assert agent.stats["rejected"] == 0
    logged = [r.getMessage() for r in caplog.records if "malformed ingest line" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].startswith("malformed ingest line (1 so far): ")


async def test_an_overlong_line_names_the_limit(agent_socket: tuple[Agent, str]) -> None:
    _agent, sock = agent_socket
    (reply,) = await _ask(sock, b'{"seq": 1, "subject": "' + b"x" * 5000 + b'"}')
    assert reply == {
        "seq": None,
        "status": "rejected",
        "reason": "malformed",
        "detail": "line longer than ingest.max_line_bytes (4096 bytes); nothing of it was used",
    }


async def test_the_log_never_holds_a_raw_id_or_a_made_up_key(
    agent_socket: tuple[Agent, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A key is whatever firmware wrote: the reply (to the sender) names it, the log must
    not, in case a buggy firmware keyed a line by the customer id."""
    _agent, sock = agent_socket
    caplog.set_level(logging.DEBUG)
    (reply,) = await _ask(sock, _line(**{RAW_ID: 1, "subject": 7}))
    assert f'unknown key "{RAW_ID}"' in reply["detail"]
    assert "subject must be a string" in reply["detail"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "malformed ingest line" in text
    assert "1 unknown key (names not logged)" in text
    assert RAW_ID not in text
