"""Table 2: end-to-end latency, a signal into a real edge agent until the hub's API
returns it, while the swarm loads the hub at a share of its measured maximum.

The probe is a real ``twinsync edge run`` process (its own provisioned identity, account
and outbox, sealing its deltas) fed one signal at a time over its ingest socket. Three
instants per signal:

- **in**: the signal line is written to the agent's socket;
- **wire**: the agent's delta for it reaches the broker (an observer subscribed to the
  probe's delta topic with a hub-role account sees the PUBLISH);
- **read**: ``GET /v1/brands/{brand}/twins/{twin}/history`` first returns the value
  (polled every ``poll_ms``).

in → wire is the agent: its flush window (``sync.flush_interval_ms``, 200 ms by default:
it waits that long for more signals to share a delta), the SQLite commit, sealing and
signing; it is reported on its own. wire → read is the rest of the system: broker, hub
verify and batch window (``influx.batch_max_wait_ms``), the InfluxDB write, and the API
read. The load is the swarm's devices, paced round-robin, for as long as the probe runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt

from cloud_hub import ApiKeys
from protocol import Channel, open_envelope, pseudonymize, topic
from twinsync.services import free_port

from ._swarm import connect, percentile, settle
from ._swarm_devices import Plan
from ._swarm_fleet import BRAND, Swarm

__all__ = ["PROBE", "latency"]

#: the probe device (provisioned with the swarm, a thermostat)
PROBE = "probe-0"
_FIELD = "thermostat.temperature_c"
_SUBJECT = "latency-probe@example.com"


class _Observer:
    """Records when each of the probe's deltas (by seq) reaches the broker."""

    def __init__(self, port: int, password: str) -> None:
        self.seen: dict[int, float] = {}
        self.cond = threading.Condition()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bench-wire", clean_session=True
        )
        self.client.username_pw_set("bench-wire", password)
        self.client.on_message = self._on
        ready = threading.Event()
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(
            topic(BRAND, PROBE, Channel.DELTA), qos=0
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("the latency observer could not subscribe")

    def _on(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        at = time.perf_counter()
        seq = open_envelope(bytes(msg.payload)).envelope.seq
        with self.cond:
            self.seen.setdefault(seq, at)
            self.cond.notify_all()

    def first_after(self, t0: float, timeout: float = 10.0) -> float:
        """When the first delta published after ``t0`` was seen."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                times = [t for t in self.seen.values() if t >= t0]
                if times:
                    return min(times)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("the probe's delta never reached the broker")
                self.cond.wait(left)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class _Probe:
    """A real agent process for the probe device, fed over loopback TCP."""

    def __init__(self, bundle: Path) -> None:
        self.port = free_port()
        original = bundle / "agent.toml.provisioned"
        if not original.exists():
            original.write_text((bundle / "agent.toml").read_text())
        text = original.read_text().replace("[ingest]\nport = 0", f"[ingest]\nport = {self.port}")
        (bundle / "agent.toml").write_text(text + "\n[models]\nenabled = false\n")
        self.log = (bundle / "agent.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twinsync", "edge", "run", "--config", "agent.toml"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=bundle,
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # {"ingest_port": n}: listening
        # The firmware's counter: above anything an earlier run of this outbox accepted.
        self.seq = time.time_ns() // 1_000_000

    async def __aenter__(self) -> _Probe:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def signal(self, value: float) -> tuple[float, float]:
        """Send one signal; (time written, time the agent replied accepted)."""
        self.seq += 1
        line = {
            "seq": self.seq,
            "ts": time.time_ns() // 1_000_000,
            "subject": _SUBJECT,
            "name": _FIELD,
            "value": value,
        }
        t_in = time.perf_counter()
        self.writer.write(json.dumps(line).encode() + b"\n")
        await self.writer.drain()
        reply = json.loads(await self.reader.readline())
        if reply.get("status") != "accepted":
            raise RuntimeError(f"the probe agent refused a signal: {reply}")
        return t_in, time.perf_counter()

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 30)
        self.log.close()


async def _readable(session: aiohttp.ClientSession, url: str, value: float, poll_s: float) -> float:
    """When the API first returned ``value`` (polled every ``poll_s``)."""
    try:
        async with asyncio.timeout(30):
            while True:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        points = (await resp.json())["points"]
                        if any(abs(p["value"] - value) < 1e-9 for p in points):
                            return time.perf_counter()
                await asyncio.sleep(poll_s)
    except TimeoutError:
        raise RuntimeError(f"value {value} not readable through the API within 30 s") from None


async def _probe_run(
    swarm: Swarm, observer: _Observer, token: str, samples: int, poll_s: float, start: float
) -> dict[str, list[float]]:
    bundle = swarm.bundles[PROBE]
    twin = pseudonymize((bundle / "brand.key").read_bytes(), 1, _SUBJECT)
    since = time.time_ns() // 1_000_000 - 60_000
    url = (
        f"{swarm.hubs[0].url}/v1/brands/{BRAND}/twins/{twin}/history"
        f"?field={_FIELD}&start={since}&limit=10000"
    )
    out: dict[str, list[float]] = {"agent": [], "accepted": [], "system": [], "total": []}
    headers = {"Authorization": f"Bearer {token}"}
    async with _Probe(bundle) as probe, aiohttp.ClientSession(headers=headers) as session:
        for i in range(samples + 3):
            value = round(start + i * 0.01, 2)
            t_in, t_acc = await probe.signal(value)
            t_wire = await asyncio.to_thread(observer.first_after, t_in)
            t_read = await _readable(session, url, value, poll_s)
            if i >= 3:  # the first deltas also pay the agent's connect and status
                out["agent"].append(t_wire - t_in)
                out["accepted"].append(t_acc - t_in)
                out["system"].append(t_read - t_wire)
                out["total"].append(t_read - t_in)
            await asyncio.sleep(random.uniform(0.05, 0.15))
    return out


def latency(
    swarm: Swarm,
    *,
    devices: int,
    max_rate: float,
    shares: tuple[float, ...] = (0.1, 0.5),
    ops: int,
    samples: int,
    procs: int,
    poll_ms: int = 10,
) -> list[dict[str, Any]]:
    """For each share of ``max_rate``: the swarm paced at it, the probe measured."""
    swarm.start_hubs(1)
    token = ApiKeys(swarm.root / "registry.sqlite").create(BRAND, "bench-latency", ["read"])[1]
    password = (swarm.secrets / "mqtt-hub.password").read_text().strip()
    rows = []
    specs = swarm.device_specs(devices)
    with swarm.workers(specs, min(procs, devices)) as workers:
        held = connect(workers, devices)
        for n, share in enumerate(shares):
            rate = max_rate * share
            seconds = samples * 0.8 + 20  # more than the probe needs; stopped after it
            per_device = max(1, int(rate * seconds / devices) + 1)
            now = time.time_ns() // 1_000_000
            workers.call("build", Plan(per_device, ops, now - 1000, per_device * 5, 500 + n))
            settle(swarm)
            observer = _Observer(swarm.port, password)
            try:
                workers.call("start", rate / len(workers.pids))
                time.sleep(2)  # the load is on before the first probe
                times = asyncio.run(
                    _probe_run(swarm, observer, token, samples, poll_ms / 1000, 20 + n)
                )
                loaded = workers.stats()
            finally:
                observer.close()
                workers.call("stop")
            deadline = time.monotonic() + 120
            while True:
                s = workers.stats()
                if s["acked"] + s["rejected"] >= s["sent"] or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            row = {
                "share": share,
                "rate": rate,
                "devices": held[0],
                "samples": len(times["total"]),
                "poll_ms": poll_ms,
                "generator_resent": loaded["resent"],
                "loadavg": os.getloadavg(),
            }
            for key, values in times.items():
                row[f"{key}_p50_ms"] = percentile(values, 0.5) * 1000
                row[f"{key}_p99_ms"] = percentile(values, 0.99) * 1000
            rows.append(row)
            print(
                f"latency at {share:.0%} of max ({rate:,.0f} deltas/s over {held[0]:,} devices): "
                f"wire→API p50 {row['system_p50_ms']:.0f} ms p99 {row['system_p99_ms']:.0f} ms; "
                f"agent (flush window) p50 {row['agent_p50_ms']:.0f} ms; total p99 "
                f"{row['total_p99_ms']:.0f} ms (load {row['loadavg'][0]:.2f})",
                flush=True,
            )
    return rows
