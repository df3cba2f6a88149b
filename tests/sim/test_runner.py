"""FleetRunner and ExternalFeeder against in-process fakes (no broker, no real agent)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import pytest

from firmware_sim import (
    ExternalFeeder,
    FaultSpec,
    Fleet,
    FleetRunner,
    FleetSpec,
    GroundTruth,
    SimulationError,
    bundle_identity,
)
from protocol import SignalIn

NOW = 1_790_000_000_000
KEY = bytes(range(32))


class _Result(NamedTuple):
    seq: int | None
    status: str
    reason: str | None = None


class _FakeAgent:
    """Answers like the ground truth, keeping its firmware seq 'on disk' across restarts."""

    disk: ClassVar[dict[str, int]] = {}
    oracle: ClassVar[dict[tuple[str, int], tuple[str, str | None]]] = {}
    started: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    open_now: ClassVar[set[int]] = set()
    chunks: ClassVar[list[int]] = []
    wrong: ClassVar[set[tuple[str, int]]] = set()

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.device = config["device"]

    async def __aenter__(self) -> _FakeAgent:
        _FakeAgent.started.append((self.device, self.config))
        _FakeAgent.open_now.add(id(self))
        return self

    async def __aexit__(self, *exc: object) -> None:
        _FakeAgent.open_now.discard(id(self))

    async def ingest_many(self, signals: Sequence[SignalIn]) -> list[_Result]:
        assert id(self) in _FakeAgent.open_now
        _FakeAgent.chunks.append(len(signals))
        path = self.config["outbox"]["path"]
        out = []
        for s in signals:
            if s.seq <= _FakeAgent.disk.get(path, -1):
                out.append(_Result(s.seq, "duplicate"))
                continue
            _FakeAgent.disk[path] = s.seq
            status, reason = _FakeAgent.oracle[(self.device, s.seq)]
            if (self.device, s.seq) in _FakeAgent.wrong:
                status, reason = "rejected", "made_up"
            out.append(_Result(s.seq, status, reason))
        await asyncio.sleep(0)
        return out

    async def drained(self, timeout: float) -> bool:  # noqa: ASYNC109 - the Agent API
        return True

    # The runner records each simulated customer's consent before feeding signals.
    consents: ClassVar[dict[tuple[str, str], dict[str, bool]]] = {}

    def consent_state(self, subject: str) -> dict[str, bool]:
        return _FakeAgent.consents.get((self.device, subject), {"analytics": False})

    def set_consent(self, subject: str, purposes: dict[str, bool], notice: str) -> None:
        assert notice
        _FakeAgent.consents[(self.device, subject)] = dict(purposes)


@pytest.fixture
def fake_edge(monkeypatch: pytest.MonkeyPatch) -> type[_FakeAgent]:
    module = types.ModuleType("edge_agent")

    def load_config(path: Path, overrides: dict[str, Any], *, environ: dict[str, str]) -> Any:
        assert environ == {}
        # "device" is the device id here; the [device] settings the runner passes are kept
        # under "device_settings"
        settings = overrides.get("device", {})
        return {**overrides, "device": Path(path).parent.name, "device_settings": settings,
                "bundle": path}  # fmt: skip

    module.Agent = _FakeAgent  # type: ignore[attr-defined]
    module.load_config = load_config  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "edge_agent", module)
    for name in ("disk", "oracle", "open_now", "consents"):
        getattr(_FakeAgent, name).clear()
    _FakeAgent.started.clear()
    _FakeAgent.chunks.clear()
    _FakeAgent.wrong.clear()
    return _FakeAgent


def _setup(
    tmp_path: Path, spec: FleetSpec | None = None, **faults: Any
) -> tuple[Fleet, GroundTruth, dict[str, Path]]:
    if spec is None:
        spec = FleetSpec(
            seed=4, devices=6, start_ms=NOW - 2 * 86_400_000, faults=FaultSpec(**faults)
        )
    fleet = Fleet.generate(spec)
    truth = GroundTruth.compute(fleet, KEY, 1, now_ms=NOW)
    for d, outcomes in truth.outcomes.items():
        for seq, status, reason in outcomes:
            _FakeAgent.oracle.setdefault((d, seq), (status, reason))
    bundles = {
        d.device_id: tmp_path / "bundles" / d.device_id / "agent.toml" for d in fleet.devices
    }
    return fleet, truth, bundles


async def test_runner_feeds_everything_in_order_with_reboots(
    tmp_path: Path, fake_edge: type[_FakeAgent]
) -> None:
    fleet, truth, bundles = _setup(tmp_path, reboots_per_day=4, duplicate_rate=0.02)
    runner = FleetRunner(
        fleet, bundles, "127.0.0.1", 1884, tmp_path / "agents",
        chunk=64, agent_overrides={"sync": {"ack_timeout_s": 2.0}},
    )  # fmt: skip
    await runner.run()
    assert runner.mismatches(truth) == []
    reboots = sum(len(fleet.reboots(d)) for d in fleet.device_map)
    assert reboots > 0
    assert runner.reboots_done == reboots
    assert len(fake_edge.started) == len(bundles) + reboots
    assert max(fake_edge.chunks) <= 64
    device, config = fake_edge.started[0]
    assert config["mqtt"] == {"host": "127.0.0.1", "port": 1884}
    assert config["outbox"]["path"] == str(tmp_path / "agents" / device / "outbox.sqlite")
    assert config["sync"] == {"ack_timeout_s": 2.0}
    assert len(runner.agents) == len(bundles)  # still up for drain
    # Every simulated customer agreed to every optional purpose before their first signal.
    pairs = {(d, s.subject) for d in fleet.device_map for s in fleet.signals(d)}
    assert set(fake_edge.consents) >= pairs
    assert all(all(c.values()) and len(c) == 3 for c in fake_edge.consents.values())
    assert await runner.drain(1)
    await runner.close()
    assert not fake_edge.open_now
    assert not runner.agents


async def test_runner_reports_mismatches(tmp_path: Path, fake_edge: type[_FakeAgent]) -> None:
    fleet, truth, bundles = _setup(tmp_path)
    victim = fleet.devices[2].device_id
    fake_edge.wrong.add((victim, 7))
    runner = FleetRunner(fleet, bundles, "127.0.0.1", 1884, tmp_path / "agents")
    await runner.run(chunk=1000)
    await runner.close()
    (line,) = runner.mismatches(truth)
    assert line.startswith(f"{victim} #")
    assert "made_up" in line


async def test_runner_paces_by_simulated_time(tmp_path: Path, fake_edge: type[_FakeAgent]) -> None:
    fleet, truth, bundles = _setup(tmp_path, skew_fraction=0.5)
    runner = FleetRunner(fleet, bundles, "127.0.0.1", 1884, tmp_path / "agents")
    t0 = time.monotonic()
    await runner.run(speed=86_400 / 0.4)  # the whole day in 0.4 s
    elapsed = time.monotonic() - t0
    await runner.close()
    assert 0.3 < elapsed < 5
    assert runner.mismatches(truth) == []
    assert len(fake_edge.chunks) > 4 * len(bundles)  # fed bit by bit, not all at once


async def test_runner_tells_each_agent_its_zone_and_paces_by_true_time(
    tmp_path: Path, fake_edge: type[_FakeAgent]
) -> None:
    """A realistic fleet: each agent is configured with its device's zone ([device]
    timezone: features are local), and pacing maps drifting device clocks to true time."""
    spec = FleetSpec.realistic(seed=5, devices=12, days=0.5, start_ms=NOW - 2 * 86_400_000)
    fleet, truth, bundles = _setup(tmp_path, spec)
    assert any(d.tz != "UTC" for d in fleet.devices)
    runner = FleetRunner(fleet, bundles, "127.0.0.1", 1884, tmp_path / "agents")
    await runner.run(speed=86_400 / 0.2)
    await runner.close()
    assert runner.mismatches(truth) == []
    zones = {device: config["device_settings"] for device, config in fake_edge.started}
    for d in fleet.devices:
        want = {} if d.tz == "UTC" else {"timezone": d.tz}
        assert zones[d.device_id] == want


def test_runner_refuses_devices_without_bundles(tmp_path: Path) -> None:
    fleet = Fleet.generate(FleetSpec(seed=1, devices=3, start_ms=NOW))
    with pytest.raises(SimulationError):
        FleetRunner(fleet, {}, "127.0.0.1", 1883, tmp_path)


def test_bundle_identity(tmp_path: Path) -> None:
    (tmp_path / "brand.key").write_bytes(KEY)
    toml = tmp_path / "agent.toml"
    toml.write_text('[pseudonym]\nkey_file = "brand.key"\nepoch = 3\n')
    assert bundle_identity(toml) == (KEY, 3)
    with pytest.raises(SimulationError):
        bundle_identity(tmp_path / "missing.toml")


class _FlakyAgent:
    """An NDJSON ingest server that 'crashes' once: commits lines, then drops the socket."""

    def __init__(self, crash_after: int, unreplied: int) -> None:
        self.fw_seq = -1
        self.crash_after, self.unreplied = crash_after, unreplied
        self.crashed = False
        self.lines = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                self.lines += 1
                s = SignalIn.model_validate_json(line)
                status = "duplicate" if s.seq <= self.fw_seq else "accepted"
                self.fw_seq = max(self.fw_seq, s.seq)
                if not self.crashed and self.lines > self.crash_after:
                    if self.lines >= self.crash_after + self.unreplied:
                        self.crashed = True  # committed, never replied: then gone
                        writer.transport.abort()
                        return
                    continue
                writer.write(json.dumps({"seq": s.seq, "status": status, "reason": None}).encode())
                writer.write(b"\n")
                await writer.drain()
        finally:
            writer.close()


async def test_feeder_resends_after_a_crash_and_gets_duplicates() -> None:
    signals = [
        SignalIn(seq=i, ts=NOW, subject="ann@example.com", name="tv.volume", value=i % 100)
        for i in range(1, 501)
    ]
    agent = _FlakyAgent(crash_after=120, unreplied=10)
    server = await asyncio.start_server(agent.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        feeder = ExternalFeeder(port, window=32)
        await asyncio.wait_for(feeder.feed(signals, give_up_s=5), 10)
    assert set(feeder.results) == {s.seq for s in signals}
    assert feeder.reconnects == 1
    assert feeder.resent >= 10
    dups = {seq for seq, (status, _) in feeder.results.items() if status == "duplicate"}
    assert set(range(121, 131)) <= dups  # committed before the crash, replied on resend
    order = [r[0] or 0 for r in feeder.replies]
    assert order == sorted(order)


async def test_feeder_gives_up_on_a_dead_port() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    feeder = ExternalFeeder(port)
    signal = SignalIn(seq=1, ts=NOW, subject="a@b.c", name="tv.volume", value=1)
    with pytest.raises(SimulationError):
        await feeder.feed([signal], give_up_s=0.3)


async def test_close_stops_a_run_in_progress(tmp_path: Path, fake_edge: type[_FakeAgent]) -> None:
    fleet, _, bundles = _setup(tmp_path)
    runner = FleetRunner(fleet, bundles, "127.0.0.1", 1884, tmp_path / "agents", chunk=8)
    feed = asyncio.create_task(runner.run(speed=1.0))  # a day at real speed: never ends
    await asyncio.sleep(0.1)
    assert runner.agents
    await runner.close()
    assert feed.cancelled()
    assert not runner.agents
    assert not fake_edge.open_now
