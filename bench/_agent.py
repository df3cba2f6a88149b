"""One real ``twinsync edge run`` process per product, fed a simulated stream.

Measures what a device pays: CPU seconds and resident memory of the agent process per
signal, and the MQTT bytes its twin deltas cost per signal, with a real hub acking; each
with the on-device models off and on (``[models] enabled``), since the model runtime is
a large share of the agent's memory.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import paho.mqtt.client as mqtt
import psutil

from cloud_hub import Hub, load_hub_config, provision_devices
from firmware_sim import ExternalFeeder, FaultSpec, Fleet, FleetSpec, SimDevice
from protocol import Ack, SignalIn, Status, TwinSyncError, decode_body, open_envelope
from twinsync.services import free_port

__all__ = ["AgentResult", "agent_costs"]

_BRAND = "benchedge"
# MQTT 3.1.1 PUBLISH framing beyond topic and payload: fixed header (~3 B for these sizes),
# the topic length prefix (2 B) and the QoS 1 packet id (2 B); PUBACK is 4 B.
_PUBLISH_OVERHEAD = 3 + 2 + 2
_PUBACK = 4
_DAY_MS = 86_400_000


@dataclass
class AgentResult:
    """Costs of one agent process over its stream."""

    product: str
    mode: str
    #: ``[models] enabled`` in the agent's config
    models_enabled: bool
    #: models the agent reported serving in its last status (``name@version``)
    models: tuple[str, ...]
    signals: int
    accepted: int
    cpu_s: float
    rss_peak: int
    #: peak of the private (anonymous) part of the RSS; the rest is shared-library code
    #: and data mapped from files, which the kernel can drop and re-read
    anon_peak: int
    #: the kernel's high-water mark of the RSS (VmHWM), start-up included: loading the
    #: models needs the runtime's start-up code resident until the store releases it
    rss_hwm: int
    threads: int
    deltas: int
    uplink_bytes: int
    downlink_bytes: int


@dataclass
class _Wire:
    """Counts MQTT bytes per device from a '#' subscription on the broker."""

    port: int
    up: dict[str, int] = field(default_factory=dict)
    down: dict[str, int] = field(default_factory=dict)
    deltas: dict[str, int] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-wire")
        self._client.on_message = self._on
        self._client.connect("127.0.0.1", self.port)
        self._client.subscribe(f"ts/v1/{_BRAND}/#", qos=1)
        self._client.loop_start()
        time.sleep(0.2)

    def _on(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        device, channel = parts[3], parts[4]
        size = len(msg.topic) + len(msg.payload) + _PUBLISH_OVERHEAD + _PUBACK
        with self._lock:
            if channel in ("delta", "status"):
                self.up[device] = self.up.get(device, 0) + size
                if channel == "delta":
                    self.deltas[device] = self.deltas.get(device, 0) + 1
                else:
                    self._status(device, bytes(msg.payload))
            else:
                self.down[device] = self.down.get(device, 0) + size
                if channel == "ack":
                    env = open_envelope(bytes(msg.payload)).envelope
                    ack = decode_body("ack", env.body)
                    assert isinstance(ack, Ack)
                    top = max([*ack.seqs, *(r.seq for r in ack.rejected)], default=0)
                    self.acked[device] = max(self.acked.get(device, 0), top)

    def _status(self, device: str, payload: bytes) -> None:
        # Keeps the models the device reports serving; a status that does not decode
        # (e.g. an empty retained message) says nothing about them.
        try:
            status = decode_body("status", open_envelope(payload).envelope.body)
        except TwinSyncError:
            return
        if isinstance(status, Status):
            self.models[device] = tuple(status.models)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _prepare(bundle: Path, tmp: Path, models: bool, max_age_s: int) -> tuple[int, IO[bytes]]:
    """Give the bundle a fixed ingest port, the models switch and the oldest signal age it
    accepts; open the agent's log."""
    port = free_port()
    text = bundle.read_text().replace("[ingest]\nport = 0", f"[ingest]\nport = {port}")
    text += f"\n[models]\nenabled = {'true' if models else 'false'}\n"
    text += f"\n[validation]\nmax_signal_age_s = {max_age_s}\n"
    bundle.write_text(text)
    return port, (tmp / f"{bundle.parent.name}.log").open("ab")


def _memory(ps: psutil.Process) -> tuple[int, int]:
    """(RSS, its anonymous part) of a process: statm's "shared" is the rest, the pages
    mapped from files (shared-library code and read-only data)."""
    mem = ps.memory_info()
    return mem.rss, mem.rss - mem.shared


def _high_water_mark(pid: int) -> int:
    """The process's peak RSS since it started (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


async def _one(
    bundle: Path,
    product: str,
    signals: Sequence[SignalIn],
    wire: _Wire,
    tmp: Path,
    pace_s: float = 0.0,
    *,
    models: bool,
    max_age_s: int,
) -> AgentResult:
    device = bundle.parent.name
    port, log = _prepare(bundle, tmp, models, max_age_s)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "twinsync",
        "edge",
        "run",
        "--config",
        str(bundle),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    try:
        assert proc.stdout is not None
        await proc.stdout.readline()  # {"ingest_port": n}: listening
        ps = psutil.Process(proc.pid)
        cpu0 = sum(ps.cpu_times()[:2])
        peak, anon_peak = _memory(ps)
        feeder = ExternalFeeder(port, window=256, pace_s=pace_s)
        await feeder.grant(sorted({s.subject for s in signals}))
        feed = asyncio.create_task(feeder.feed(signals))
        while not feed.done():
            rss, anon = _memory(ps)
            peak, anon_peak = max(peak, rss), max(anon_peak, anon)
            await asyncio.sleep(0.05)
        await feed
        accepted = sum(1 for s, _ in feeder.results.values() if s == "accepted")
        # Drained: every delta the agent sent has its ack and nothing new is coming.
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 1.0:
            rss, anon = _memory(ps)
            peak, anon_peak = max(peak, rss), max(anon_peak, anon)
            sent = wire.deltas.get(device, 0)
            if sent != last or wire.acked.get(device, 0) < sent:
                last, quiet_since = sent, time.monotonic()
            await asyncio.sleep(0.05)
        cpu = sum(ps.cpu_times()[:2]) - cpu0
        threads = ps.num_threads()
        hwm = _high_water_mark(proc.pid)
    finally:
        proc.terminate()
        await proc.wait()
        log.close()
    return AgentResult(
        product,
        f"live, 1 signal / {pace_s * 1000:.0f} ms" if pace_s else "catch-up, flat out",
        models,
        wire.models.get(device, ()),
        len(signals),
        accepted,
        cpu,
        peak,
        anon_peak,
        hwm,
        threads,
        wire.deltas.get(device, 0),
        wire.up.get(device, 0),
        wire.down.get(device, 0),
    )


def _one_per_product(fleet: Fleet) -> list[SimDevice]:
    first: dict[str, SimDevice] = {}
    for d in fleet.devices:
        first.setdefault(d.product, d)
    return [first[p] for p in sorted(first)]


async def agent_costs(
    tmp: Path,
    mqtt_port: int,
    influx: Mapping[str, str],
    *,
    days: float,
    live_signals: int = 60,
    live_pace_s: float = 0.25,
    seed: int = 3,
) -> list[AgentResult]:
    """One agent process per product over ``days`` of its device's stream, flat out; then
    a fresh agent per product fed ``live_signals`` at ``live_pace_s`` (each its own delta,
    as on a device in normal use). Every run is made twice, models off and on, each time
    by a device of its own (a fresh outbox)."""
    await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
    config = load_hub_config(
        None,
        {
            "mqtt": {"port": mqtt_port, "client_id": "hub-bench-edge", "shared_group": "bedge"},
            "influx": {**influx, "database": "bench_edge"},
            "api": {"port": 0},
            "registry": {"path": str(tmp / "registry.sqlite")},
            "keys": {"secrets_dir": str(tmp / "secrets")},
        },
        environ={},
    )
    # The catch-up stream ends now (a device back after `days` offline): by default a fleet
    # starts 2 days ago, and the agent refuses signals from the future ("timestamp").
    now_ms = time.time_ns() // 1_000_000
    start_ms = (now_ms - int(days * _DAY_MS)) // 60_000 * 60_000 - 60_000
    # ... and so the agent must accept signals that old (its default is 7 days).
    max_age_s = int(days * _DAY_MS) // 1000 + 3600
    catch_up = Fleet.generate(
        FleetSpec(
            seed=seed,
            devices=12,
            days=days,
            start_ms=start_ms,
            brand=_BRAND,
            faults=FaultSpec.none(),
        )
    )
    live = Fleet.generate(
        FleetSpec(seed=seed + 1, devices=12, days=1, brand=_BRAND, faults=FaultSpec.none())
    )
    catch_up_devices, live_devices = _one_per_product(catch_up), _one_per_product(live)
    # Models switch -> (catch-up, live): bench device id -> the simulated device whose
    # stream it is fed.
    runs = {
        models: (
            {f"{_prefix(models)}{d.device_id}": d for d in catch_up_devices},
            {f"live-{_prefix(models)}{d.device_id}": d for d in live_devices},
        )
        for models in (False, True)
    }
    devices = [
        (device, d.product)
        for groups in runs.values()
        for group in groups
        for device, d in group.items()
    ]
    bundles = provision_devices(
        config.registry.path,
        config.keys.secrets_dir,
        _BRAND,
        devices,
        tmp / "bundles",
        "127.0.0.1",
        mqtt_port,
    )
    wire = _Wire(mqtt_port)
    results: list[AgentResult] = []
    try:
        async with Hub(config) as hub:
            await hub.ready.wait()
            for models, (catch_up_group, _) in runs.items():
                # One at a time: each process gets a quiet machine.
                for device, d in catch_up_group.items():
                    signals = catch_up.signals(d.device_id)
                    results.append(
                        await _one(
                            bundles[device],
                            d.product,
                            signals,
                            wire,
                            tmp,
                            models=models,
                            max_age_s=max_age_s,
                        )
                    )
            for models, (_, live_group) in runs.items():
                # One at a time as well, although live agents mostly sleep: a device runs
                # one agent, and agents side by side share the model runtime's pages,
                # which the kernel then cannot reclaim from any of them (edge_agent._pages).
                for device, d in live_group.items():
                    results.append(
                        await _one(
                            bundles[device],
                            d.product,
                            live.signals(d.device_id)[:live_signals],
                            wire,
                            tmp,
                            live_pace_s,
                            models=models,
                            max_age_s=max_age_s,
                        )
                    )
    finally:
        wire.close()
    return results


def _prefix(models: bool) -> str:
    return "m-" if models else ""
