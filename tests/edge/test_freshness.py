"""The device's memory of applied hub commands (edge_agent.testing.DownlinkFreshness) on
a real SQLite file: per-target order, the floor, the user's own changes, twins met later,
restarts, key rotation, erasure and the size bound. End-to-end attacks:
tests/hub/test_downlink_replay.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.testing import (
    COMMAND_WINDOW_MS,
    FIRST_CONTACT_SLACK_MS,
    DownlinkFreshness,
    Outbox,
)
from protocol import Desired, packb

ANN, BOB = "1-" + "a" * 32, "1-" + "b" * 32
T0 = 1_800_000_000_000


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite"


@pytest.fixture
def fresh(path: Path) -> Iterator[DownlinkFreshness]:
    db = sqlite3.connect(path, isolation_level=None)
    f = DownlinkFreshness(db)
    f.observe(T0)
    yield f
    db.close()


def test_a_target_takes_only_newer_commands(fresh: DownlinkFreshness) -> None:
    assert fresh.refusal(ANN, "purpose", "marketing", T0 + 5, "r1") == ""
    fresh.applied(ANN, "purpose", ["marketing"], T0 + 5, "r1")
    assert fresh.refusal(ANN, "purpose", "marketing", T0 + 5, "r1") == "not_newer"  # replay
    assert fresh.refusal(ANN, "purpose", "marketing", T0 + 4, "r9") == "not_newer"
    # Same ms, another request: a total order every device agrees on.
    assert fresh.refusal(ANN, "purpose", "marketing", T0 + 5, "r2") == ""
    assert fresh.refusal(ANN, "purpose", "marketing", T0 + 6, "r0") == ""
    # Other targets are independent: a late command about them is still taken.
    assert fresh.refusal(ANN, "purpose", "analytics", T0 + 1, "r0") == ""
    assert fresh.refusal(BOB, "purpose", "marketing", T0 + 1, "r0") == ""
    assert fresh.refusal(ANN, "field", "marketing", T0 + 1, "r0") == ""
    # Recording an older one never lowers the mark.
    fresh.applied(ANN, "purpose", ["marketing"], T0 + 1, "r0")
    assert fresh.refusal(ANN, "purpose", "marketing", T0 + 4, "r9") == "not_newer"


def test_the_floor_refuses_what_predates_first_contact_and_the_window(
    fresh: DownlinkFreshness,
) -> None:
    assert fresh.floor_ms == T0 - FIRST_CONTACT_SLACK_MS
    assert fresh.refusal(ANN, "purpose", "marketing", T0 - FIRST_CONTACT_SLACK_MS, "r") == "stale"
    assert fresh.refusal(ANN, "purpose", "marketing", T0 - FIRST_CONTACT_SLACK_MS + 1, "r") == ""
    later = T0 + COMMAND_WINDOW_MS + 1000
    fresh.observe(later)
    fresh.observe(T0)  # an old message never moves hub time back
    assert fresh.hub_ms == later
    assert fresh.floor_ms == later - COMMAND_WINDOW_MS
    assert fresh.refusal(BOB, "field", "coffee.strength", T0 + 999, "r") == "stale"


def test_the_users_own_change_beats_hub_commands_issued_before_it(
    fresh: DownlinkFreshness,
) -> None:
    fresh.applied(ANN, "purpose", ["marketing"], T0 + 100, "grant")
    fresh.observe(T0 + 100)
    fresh.local(ANN, "purpose", ["personalization", "marketing"])
    for request in ("0", "f" * 32, "zzz"):
        assert fresh.refusal(ANN, "purpose", "personalization", T0 + 99, request) == "not_newer"
    assert fresh.refusal(ANN, "purpose", "marketing", T0 + 100, "grant") == "not_newer"
    # A hub command of the very millisecond the device last heard from the hub: applied.
    assert fresh.refusal(ANN, "purpose", "personalization", T0 + 100, "0") == ""


def test_a_command_about_a_twin_met_later_is_not_taken_again(
    fresh: DownlinkFreshness, path: Path
) -> None:
    fresh.unknown([BOB], T0 + 50, "grant")
    assert fresh.refusal(BOB, "purpose", "marketing", T0 + 50, "grant") == "not_newer"
    assert fresh.refusal(BOB, "field", "coffee.strength", T0 + 49, "x") == "not_newer"
    assert fresh.refusal(BOB, "purpose", "marketing", T0 + 51, "later") == ""
    stored = b"".join(f.read_bytes() for f in path.parent.glob(f"{path.name}*"))
    assert BOB.encode() not in stored  # a digest only: not the other customer's twin id


def test_marks_survive_a_restart(fresh: DownlinkFreshness, path: Path) -> None:
    fresh.applied(ANN, "field", ["coffee.strength"], T0 + 7, "suppress")
    fresh.set_version("model", 4)
    fresh.set_version("desired", 9, packb(Desired(version=9, settings={"m": 1}).to_wire()))
    fresh.set_version("desired", 3, b"old")  # a lower version never replaces it
    again = DownlinkFreshness(sqlite3.connect(path, isolation_level=None))
    assert again.hub_ms == T0
    assert again.floor_ms == T0 - FIRST_CONTACT_SLACK_MS
    assert again.refusal(ANN, "field", "coffee.strength", T0 + 7, "suppress") == "not_newer"
    assert (again.version("model"), again.version("desired")) == (4, 9)
    assert again.desired() == Desired(version=9, settings={"m": 1})
    stats: dict[str, int] = {}
    assert again.admits("model", 4, stats)  # the same set again (e.g. its retained copy)
    assert not again.admits("model", 3, stats)
    assert not again.admits("desired", 8, stats)
    assert stats == {"downlinks_refused": 2}


def test_key_rotation_and_erasure_carry_or_drop_the_marks(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", 1 << 20, 86_400_000)
    fresh = outbox.freshness
    fresh.observe(T0)
    fresh.applied(ANN, "purpose", ["marketing"], T0 + 3, "withdraw")
    fresh.rename(ANN, BOB)
    assert fresh.refusal(BOB, "purpose", "marketing", T0 + 2, "grant") == "not_newer"
    assert fresh.refusal(ANN, "purpose", "marketing", T0 + 2, "grant") == ""
    fresh.unknown([ANN], T0 + 4, "x")
    fresh.forget([ANN, BOB])
    rows = outbox._db.execute("SELECT COUNT(*) FROM downlink_marks").fetchone()[0]
    assert rows == 0
    outbox.close()


def test_the_marks_are_bounded_and_the_floor_keeps_what_they_refused(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    fresh = DownlinkFreshness(db, max_marks=50)
    fresh.observe(T0)
    for i in range(120):
        fresh.unknown([f"1-{i:032x}"], T0 + i, f"r{i}")
    kept = db.execute("SELECT COUNT(*) FROM downlink_marks").fetchone()[0]
    assert kept <= 50
    # Whatever was dropped is refused by the raised floor instead.
    assert fresh.refusal(f"1-{0:032x}", "purpose", "marketing", T0, "r0") == "stale"
    assert fresh.floor_ms >= T0 + 120 - 50
    # Hub time moving past the window prunes what the window refuses anyway.
    fresh.observe(T0 + COMMAND_WINDOW_MS + 10_000)
    assert db.execute("SELECT COUNT(*) FROM downlink_marks").fetchone()[0] == 0
    db.close()
