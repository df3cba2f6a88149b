"""Table 5: one hub process against the broker and a Node-RED-style flow, same run.

For each delta size: the hub with plain signed deltas (every signature checked), the hub
with sealed deltas (the seal authenticates the device after its first signed delta:
cloud_hub/ingest/_verify.py), the flow reference (bench._nodered) on the same plain
envelopes, and the broker drained by a subscriber that only counts. All of them drain
messages queued in the consumer's persistent session, so they are timed alike. The raw
broker figure of the hub ingest table (publisher and subscriber in one process at once)
is measured too; it is bounded by that one Python process, not by mosquitto.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloud_hub import provision_devices

from ._hub_ingest import hub_ingest, messages, publish_all
from ._nodered import BrokerDrain, FlowReference
from ._reference import RawBroker

__all__ = ["throughput"]


async def _flow(
    tmp: Path, port: int, influx: Mapping[str, str], *, devices: int, deltas: int, ops: int
) -> dict[str, Any]:
    await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
    bundles = provision_devices(
        tmp / "registry.sqlite",
        tmp / "secrets",
        "bench",
        [(f"coffee-{i:05d}", "coffee") for i in range(devices)],
        tmp / "bundles",
        "127.0.0.1",
        port,
    )
    batch = await asyncio.to_thread(messages, bundles, deltas, ops, 7, False)
    # The same messages, twice: drained by a bare counting subscriber (the broker's
    # ceiling for a paho consumer), then by the flow.
    sink = BrokerDrain(port, influx, f"bench_sink_{ops}")
    await asyncio.to_thread(sink.subscribe_once)
    await asyncio.to_thread(publish_all, port, batch)
    drained = await asyncio.to_thread(sink.count, len(batch))
    flow = FlowReference(port, influx, f"bench_flow_{ops}")
    await asyncio.to_thread(flow.subscribe_once)
    await asyncio.to_thread(publish_all, port, batch)
    seconds, received, lines = await flow.drain(deltas * ops)
    return {
        "broker_drain_per_s": len(batch) / drained,
        "messages": received,
        "lines": lines,
        "deltas_per_s": received / seconds,
        "values_per_s": deltas * ops / seconds,
        "bytes": sum(len(p) for _t, p in batch) / len(batch),
    }


async def throughput(
    tmp: Path,
    port: int,
    influx: Mapping[str, str],
    *,
    deltas: int,
    devices: int,
    ops_list: tuple[int, ...] = (1, 10),
) -> list[dict[str, Any]]:
    """Hub (plain, sealed), flow reference and raw broker, per delta size."""
    rows = []
    broker = RawBroker("127.0.0.1", port)
    for ops in ops_list:
        row: dict[str, Any] = {"ops": ops}
        for sealed in (False, True):
            r = await hub_ingest(
                tmp / f"tp{ops}{'s' if sealed else 'p'}",
                port,
                influx,
                devices=devices,
                deltas=deltas,
                ops_per_delta=ops,
                seed=11,
                sealed=sealed,
                tag="_tp",
            )
            row["sealed" if sealed else "plain"] = {
                "deltas_per_s": r.deltas_per_s,
                "values_per_s": r.values_per_s,
                "bytes": r.payload_bytes,
            }
        row["flow"] = await _flow(
            tmp / f"flow{ops}", port, influx, devices=devices, deltas=deltas, ops=ops
        )
        size = int(row["sealed"]["bytes"])
        row["broker_msgs_per_s"] = await asyncio.to_thread(broker.run, size, min(deltas, 20_000))
        row["loadavg"] = os.getloadavg()
        row["at"] = time.strftime("%Y-%m-%d %H:%M")
        rows.append(row)
        print(
            f"throughput, {ops} ops/delta: hub sealed {row['sealed']['deltas_per_s']:,.0f}, "
            f"plain {row['plain']['deltas_per_s']:,.0f}, flow {row['flow']['deltas_per_s']:,.0f}, "
            f"broker drain {row['flow']['broker_drain_per_s']:,.0f} deltas/s "
            f"(load {row['loadavg'][0]:.2f})",
            flush=True,
        )
    return rows
