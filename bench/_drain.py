"""Table 3: backlog drain. Devices that were offline for a day reconnect at once, each
with a full outbox, and the clock runs until the hub has acked (so stored) all of it.

Each device's outbox holds what an agent makes offline: one delta per ``interval_s``
(an agent seals a delta per flush that has ops; 60 s is ~4x the ~300 signals a day a
simulated product sends, firmware_sim), of ``ops`` ops, HLCs spread over the last
``hours``. Reconnecting, every device sends its oldest ``inflight`` deltas and the next
as acks come back, as the agent does. Timed from the first CONNECT to the last ack.
Then every device's points in InfluxDB are counted against what it built, and a few
devices' points are compared one by one (time, field, value).
"""

from __future__ import annotations

import os
import time
from typing import Any

from ._swarm import percentile
from ._swarm_devices import Plan
from ._swarm_fleet import BRAND, Swarm

__all__ = ["drain", "stored_ops"]

_SAMPLED = 3


def stored_ops(swarm: Swarm, database: str) -> dict[str, int]:
    """Twin points per device in ``database`` (every field counted)."""
    result = swarm.services.influxd.query(
        f"SELECT count(*) FROM \"twin\" WHERE brand='{BRAND}' GROUP BY device", database
    )
    out: dict[str, int] = {}
    for series in result[0].get("series", []):
        out[series["tags"]["device"]] = sum(v or 0 for v in series["values"][0][1:])
    return out


def _stored_points(swarm: Swarm, database: str, device: str) -> set[tuple[int, str, Any]]:
    result = swarm.services.influxd.query(
        f"SELECT * FROM \"twin\" WHERE brand='{BRAND}' AND device='{device}'", database
    )
    out = set()
    for series in result[0].get("series", []):
        columns = series["columns"]
        for row in series["values"]:
            for column, value in zip(columns[1:], row[1:], strict=True):
                if value is not None and "." in column:  # field columns, not tags
                    out.add((row[0], column, value))
    return out


def drain(
    swarm: Swarm,
    *,
    devices: int,
    hours: float,
    interval_s: float,
    ops: int,
    procs: int,
    timeout_s: float = 3600,
) -> dict[str, Any]:
    """Build the backlogs, reconnect every device at once, time the drain, check it."""
    database = "swarm_drain"
    swarm.start_hubs(1, database)
    specs = swarm.device_specs(devices)
    sample = frozenset(s.device for s in specs[:_SAMPLED])
    per_device = int(hours * 3600 / interval_s)
    now = time.time_ns() // 1_000_000
    span = int(hours * 3_600_000)
    with swarm.workers(specs, min(procs, devices)) as workers:
        built_at = time.perf_counter()
        built = sum(
            a["built"]
            for a in workers.call("build", Plan(per_device, ops, now - 60_000, span, 7, sample))
        )
        build_s = time.perf_counter() - built_at
        sampler = swarm.sampler(workers)
        m0 = swarm.hub_metrics()
        reconnect = time.time()
        answers = workers.call("connect")
        connected = sum(a["connected"] for a in answers)
        if connected < devices:
            raise RuntimeError(f"only {connected}/{devices} devices reconnected")
        workers.call("start", None)
        deadline = time.monotonic() + timeout_s
        latencies: list[float] = []
        while True:
            time.sleep(0.5)
            stats = workers.stats()
            latencies += stats["latency"]
            sampler.sample()
            if stats["acked"] + stats["rejected"] >= built:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the backlog did not drain within {timeout_s}s: {stats}")
        usage = sampler.done()
        seconds = stats["last_acked"] - reconnect
        m1 = swarm.hub_metrics()
        collected = workers.call("collect")
    hwm = swarm.hub_high_water()
    sent_ops: dict[str, int] = {}
    samples: dict[str, list[tuple[int, str, Any]]] = {}
    for c in collected:
        sent_ops.update(c["built_ops"])
        samples.update(c["sample"])
    stored = stored_ops(swarm, database)
    missing = {d: n - stored.get(d, 0) for d, n in sent_ops.items() if stored.get(d, 0) != n}
    mismatched = [
        d for d, ops_ in samples.items() if _stored_points(swarm, database, d) != set(ops_)
    ]
    result = {
        "devices": devices,
        "hours": hours,
        "interval_s": interval_s,
        "ops_per_delta": ops,
        "deltas": built,
        "values": sum(sent_ops.values()),
        "build_seconds": build_s,
        "seconds": seconds,
        "real_time_ratio": hours * 3600 / seconds,
        "deltas_per_s": built / seconds,
        "values_per_s": sum(sent_ops.values()) / seconds,
        "resent": stats["resent"],
        "rejected": stats["rejected"],
        "hub_replays": m1.get("twinsync_hub_rejected_total", 0)
        - m0.get("twinsync_hub_rejected_total", 0),
        "ack_p50_ms": percentile(latencies, 0.5) * 1000,
        "ack_p99_ms": percentile(latencies, 0.99) * 1000,
        "stored_values": sum(stored.get(d, 0) for d in sent_ops),
        "devices_missing_values": len(missing),
        "missing_example": dict(list(missing.items())[:3]),
        "sampled_devices_checked": len(samples),
        "sampled_devices_mismatched": mismatched,
        "hub_rss_hwm": hwm,
        "hub_rss_peak": usage.rss_peak.get("hub", 0),
        "broker_rss_peak": usage.rss_peak.get("broker", 0),
        "cpu": usage.cpu,
        "loadavg": os.getloadavg(),
    }
    print(
        f"drain: {devices:,} devices x {hours:g} h ({built:,} deltas, {result['values']:,} "
        f"values) in {seconds:,.0f} s = {result['real_time_ratio']:,.0f}x real time; "
        f"stored {result['stored_values']:,}, devices missing values: {len(missing)}, "
        f"sampled mismatches: {len(mismatched)}; hub RSS high-water "
        f"{hwm / 2**20:.0f} MiB (load {result['loadavg'][0]:.2f})",
        flush=True,
    )
    return result
