"""Device swarm (table 1) and scale-out (table 4): many devices, each its own identity
and connection, against hub processes on a secured broker.

One measurement (:func:`drive`): the devices connect (each: CONNECT with its own
account, SUBSCRIBE to its downlinks, a retained online status), build their deltas
(sealed, signed), the hubs settle (the statuses are verified and stored), then the
clock runs from the first delta released until the last one is acked by the hub, which
acks only what InfluxDB holds. CPU of each process (hubs, broker, influxd, generators)
is counted over exactly that interval, so "hub CPU per value" is the hubs' own cost.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ._swarm_devices import Plan
from ._swarm_fleet import Swarm, Usage, Workers

__all__ = [
    "Drive",
    "connect",
    "drive",
    "max_sustained",
    "paced",
    "percentile",
    "scale_out",
    "sustained",
    "swarm_sizes",
]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Drive:
    """What one measured run did and cost."""

    devices: int
    hubs: int
    ops: int
    connected: int
    connect_seconds: float
    deltas: int
    values: int
    seconds: float
    resent: int
    rejected: int
    bad_acks: int
    ack_p50_ms: float
    ack_p99_ms: float
    usage: Usage
    hub_deltas: float
    hub_values: float
    hub_rejected: float
    broker_rss: int
    hub_rss_hwm: int
    loadavg: tuple[float, float, float]
    rate: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def deltas_per_s(self) -> float:
        return self.deltas / self.seconds

    @property
    def values_per_s(self) -> float:
        return self.values / self.seconds

    def cpu_per_value_us(self, role: str = "hub") -> float:
        return self.usage.cpu.get(role, 0.0) / max(self.values, 1) * 1e6

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(deltas_per_s=self.deltas_per_s, values_per_s=self.values_per_s)
        return out


def connect(workers: Workers, expected: int) -> tuple[int, float]:
    """Connect every device; raise if the broker did not take them all."""
    answers = workers.call("connect")
    connected = sum(a["connected"] for a in answers)
    if connected < expected:
        errors = [e for a in answers for e in a["errors"]]
        raise RuntimeError(f"only {connected}/{expected} devices connected: {errors[:3]}")
    return connected, max(a["seconds"] for a in answers)


def settle(swarm: Swarm, quiet_s: float = 1.5, timeout_s: float = 120) -> None:
    """Wait until the hubs have taken every queued message (statuses after a connect
    storm) and nothing new arrives for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    last, since = -1.0, time.monotonic()
    while time.monotonic() - since < quiet_s:
        m = swarm.hub_metrics()
        seen = m.get("twinsync_hub_messages_total", 0.0)
        if seen != last or m.get("twinsync_hub_queue_depth", 0.0) > 0:
            last, since = seen, time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError("the hubs did not settle (messages keep arriving)")
        time.sleep(0.25)


def drive(
    swarm: Swarm,
    workers: Workers,
    *,
    devices: int,
    plan: Plan,
    rate: float | None,
    connected: tuple[int, float],
    timeout_s: float = 900,
) -> Drive:
    """Build ``plan`` on every device, release it (flat out, or ``rate`` deltas/s over
    all devices) and measure until every delta is acked."""
    built = sum(a["built"] for a in workers.call("build", plan))
    settle(swarm)
    sampler = swarm.sampler(workers)
    m0 = swarm.hub_metrics()
    per_worker = None if rate is None else rate / len(workers.pids)
    workers.call("start", per_worker)
    deadline = time.monotonic() + timeout_s
    latencies: list[float] = []
    while True:
        time.sleep(0.25)
        stats = workers.stats()
        latencies += stats["latency"]
        sampler.sample()
        if stats["acked"] + stats["rejected"] >= built:
            break
        if stats["connected"] < connected[0]:
            raise RuntimeError(f"devices lost their connection: {stats}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every delta was acked within {timeout_s}s: {stats}")
    usage = sampler.done()
    m1 = swarm.hub_metrics()
    # From the first delta published to the last ack (the sampler's interval also holds
    # the start-up of the release and this loop's polling).
    seconds = stats["last_acked"] - stats["first_sent"]
    return Drive(
        devices=devices,
        hubs=len(swarm.hubs),
        ops=plan.ops,
        connected=connected[0],
        connect_seconds=connected[1],
        deltas=stats["acked"],
        values=stats["acked_ops"],
        seconds=seconds,
        resent=stats["resent"],
        rejected=stats["rejected"],
        bad_acks=stats["bad_acks"],
        ack_p50_ms=percentile(latencies, 0.5) * 1000,
        ack_p99_ms=percentile(latencies, 0.99) * 1000,
        usage=usage,
        hub_deltas=m1.get("twinsync_hub_deltas_written_total", 0)
        - m0.get("twinsync_hub_deltas_written_total", 0),
        hub_values=m1.get("twinsync_hub_ops_written_total", 0)
        - m0.get("twinsync_hub_ops_written_total", 0),
        hub_rejected=m1.get("twinsync_hub_rejected_total", 0)
        - m0.get("twinsync_hub_rejected_total", 0),
        broker_rss=usage.rss_peak.get("broker", 0),
        hub_rss_hwm=swarm.hub_high_water(),
        loadavg=os.getloadavg(),
        rate=rate,
    )


def _plan(deltas_per_device: int, ops: int, seed: int) -> Plan:
    now = time.time_ns() // 1_000_000
    # HLCs within the last minutes, 5 ms apart per device: unique points, well inside
    # the hub's accepted window.
    return Plan(deltas_per_device, ops, now - 1000, deltas_per_device * 5, seed)


def sustained(result: Drive) -> bool:
    """A paced run the hub kept up with: at least 95 % of the offered rate acked over the
    run, and no delta waited for an ack past the agents' ack timeout (no resends)."""
    assert result.rate is not None
    return result.deltas_per_s >= 0.95 * result.rate and result.resent == 0


def paced(
    swarm: Swarm,
    workers: Workers,
    held: tuple[int, float],
    *,
    devices: int,
    rate: float,
    seconds: float,
    ops: int,
    seed: int,
) -> Drive:
    """``rate`` deltas/s spread round-robin over the devices for ``seconds``."""
    per_device = max(1, math.ceil(rate * seconds / devices))
    return drive(
        swarm,
        workers,
        devices=devices,
        plan=_plan(per_device, ops, seed),
        rate=rate,
        connected=held,
    )


def swarm_sizes(
    swarm: Swarm,
    sizes: list[int],
    *,
    rates: list[float],
    seconds: float,
    ops: int,
    procs: int,
) -> dict[int, list[Drive]]:
    """Table 1: for each size, that many devices connected at once (one hub), driven at
    each of ``rates`` deltas/s in turn for ``seconds``, until a rate is not sustained."""
    out: dict[int, list[Drive]] = {}
    swarm.start_hubs(1)
    for size in sizes:
        out[size] = []
        specs = swarm.device_specs(size)
        with swarm.workers(specs, min(procs, size)) as workers:
            held = connect(workers, size)
            for n, rate in enumerate(rates):
                result = paced(
                    swarm,
                    workers,
                    held,
                    devices=size,
                    rate=rate,
                    seconds=seconds,
                    ops=ops,
                    seed=size + n,
                )
                out[size].append(result)
                print(
                    f"swarm {size:,} devices at {rate:,.0f} deltas/s: "
                    f"{result.deltas_per_s:,.0f} deltas/s, {result.values_per_s:,.0f} "
                    f"values/s, hub {result.cpu_per_value_us():.1f} µs CPU/value, ack p99 "
                    f"{result.ack_p99_ms:,.0f} ms, resent {result.resent}, broker RSS "
                    f"{result.broker_rss / 2**20:.0f} MiB, load {result.loadavg[0]:.2f}",
                    flush=True,
                )
                if not sustained(result):
                    break
    return out


def max_sustained(results: list[Drive]) -> float:
    """The highest offered rate the hub sustained (0 when none was)."""
    return max((r.rate or 0.0 for r in results if sustained(r)), default=0.0)


def scale_out(
    swarm: Swarm, *, devices: int, total: int, ops: int, procs: int, hubs: tuple[int, ...] = (1, 2)
) -> list[Drive]:
    """Table 4: the same flat-out load against 1, then 2 hub instances on the shared
    subscription."""
    out = []
    specs = swarm.device_specs(devices)
    for n, count in enumerate(hubs):
        swarm.start_hubs(count)
        with swarm.workers(specs, min(procs, devices)) as workers:
            held = connect(workers, devices)
            result = drive(
                swarm,
                workers,
                devices=devices,
                plan=_plan(max(2, math.ceil(total / devices)), ops, seed=100 + n),
                rate=None,
                connected=held,
            )
        out.append(result)
        cpu = ", ".join(
            f"{role} {s / result.usage.seconds:.2f}" for role, s in result.usage.cpu.items()
        )
        print(
            f"scale-out, {count} hub(s): {result.values_per_s:,.0f} values/s, "
            f"{result.deltas_per_s:,.0f} deltas/s; CPU {cpu}",
            flush=True,
        )
    return out
