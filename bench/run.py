"""``twinsync bench``: hub ingest, agent costs and their references, twin queries, and
the scale sections (device swarm, end-to-end latency, backlog drain, scale-out, hub vs a
Node-RED-style flow), from one run.

Everything runs against private mosquitto and influxd instances started here (the scale
sections add a broker secured as deployed). Figures are reported as ratios against
references measured in the same run (raw InfluxDB batched writes of the same line shape,
raw broker QoS 1 throughput of the same payload size, a flow with no twin semantics),
because absolute rates on shared 2-core machines are noise. ``--sections`` picks parts;
each prints the load average it ran under.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twinsync.services import LocalServices

from ._agent import agent_costs
from ._drain import drain
from ._hub_ingest import hub_ingest
from ._latency import PROBE, latency
from ._models import model_costs
from ._nodered import seal_costs
from ._query import query_bench
from ._reference import RawBroker, RawInflux, twin_lines
from ._swarm import max_sustained, scale_out, swarm_sizes
from ._swarm_fleet import Swarm, raise_fd_limit
from ._tables import (
    drain_table,
    index_cost_table,
    latency_table,
    query_table,
    scale_out_table,
    seal_cost_table,
    swarm_table,
    table,
    throughput_table,
)
from ._throughput import throughput

__all__ = ["main"]

#: every section, in the order they run; ``--sections`` picks some
SECTIONS = (
    "hub",
    "agents",
    "models",
    "throughput",
    "query",
    "swarm",
    "latency",
    "drain",
    "scaleout",
)
_SWARM_SECTIONS = ("swarm", "latency", "drain", "scaleout")

#: the issue's memory budget for an agent with its product's models loaded and running
_RSS_TARGET_MIB = 80


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="twinsync bench",
        description="Measure hub ingest and agent costs against raw InfluxDB and broker rates.",
    )
    p.add_argument("--deltas", type=int, default=20_000, help="deltas per hub run (20000)")
    p.add_argument(
        "--ops",
        default="1,10,100,1000",
        help="ops per delta, one hub run each (default 1,10,100,1000)",
    )
    p.add_argument(
        "--values", type=int, default=2_000_000, help="cap on field values per hub run (2M)"
    )
    p.add_argument("--devices", type=int, default=200, help="devices in hub runs (200)")
    p.add_argument("--raw-lines", type=int, default=2_000_000, help="lines for raw InfluxDB (2M)")
    p.add_argument("--agent-days", type=float, default=7.0, help="simulated days per agent (7)")
    p.add_argument("--json", type=Path, help="also write the figures here as JSON")
    p.add_argument(
        "--train", action="store_true", help="also time a small `hub train --sim` (~2 min)"
    )
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated parts to run (default all: {','.join(SECTIONS)})",
    )
    query = p.add_argument_group("query section")
    query.add_argument("--query-twins", type=int, default=100_000, help="twins indexed (100000)")
    query.add_argument("--query-runs", type=int, default=200, help="runs per query (200)")
    query.add_argument(
        "--index-deltas",
        type=int,
        default=20_000,
        help="deltas per ingest run with/without (20000)",
    )
    scale = p.add_argument_group("scale sections")
    scale.add_argument("--swarm", default="100,1000,10000", help="swarm sizes (100,1000,10000)")
    scale.add_argument(
        "--swarm-rates",
        default="1000,2000,3000,4000,5000,6000",
        help="paced deltas/s tried per size, until one is not sustained",
    )
    scale.add_argument("--swarm-seconds", type=float, default=15, help="per paced run (15)")
    scale.add_argument("--swarm-ops", type=int, default=5, help="ops per swarm delta (5)")
    scale.add_argument("--swarm-procs", type=int, default=2, help="generator processes (2)")
    scale.add_argument(
        "--latency-max",
        type=float,
        default=0,
        help="deltas/s taken as the max load (default: the swarm section's, at its largest size)",
    )
    scale.add_argument("--latency-samples", type=int, default=100, help="probe signals (100)")
    scale.add_argument("--drain-devices", type=int, default=1000, help="(1000)")
    scale.add_argument("--drain-hours", type=float, default=24, help="offline time (24)")
    scale.add_argument(
        "--drain-interval", type=float, default=60, help="seconds between backlog deltas (60)"
    )
    scale.add_argument("--drain-ops", type=int, default=2, help="ops per backlog delta (2)")
    scale.add_argument("--scaleout-devices", type=int, default=1000, help="(1000)")
    scale.add_argument("--scaleout-deltas", type=int, default=60_000, help="per run (60000)")
    scale.add_argument(
        "--throughput-deltas", type=int, default=20_000, help="per hub/flow run (20000)"
    )
    return p


async def _bench(args: argparse.Namespace, tmp: Path, figures: dict[str, Any]) -> None:
    """Run the chosen sections, filling ``figures`` as each one ends."""
    sections = set(args.sections.split(","))
    with LocalServices(tmp / "services") as svc:
        print(f"services: mosquitto :{svc.mosquitto.port}, influxd {svc.influxd.url}", flush=True)
        if "hub" in sections:
            await _hub_section(args, tmp, svc, figures)
        if "agents" in sections:
            influx = svc.influxd.hub_settings("bench")
            for a in await agent_costs(
                tmp / "agents", svc.mosquitto.port, influx, days=args.agent_days
            ):
                figures["agents"].append(a.__dict__)
                on = f"models on: {', '.join(a.models) or 'none serving'}"
                print(
                    f"agent {a.product} ({a.mode}, "
                    f"{on if a.models_enabled else 'models off'}): "
                    f"{a.signals:,} signals, peak RSS {a.rss_peak / 2**20:.1f} MiB",
                    flush=True,
                )
        if "throughput" in sections:
            figures["throughput"] = await throughput(
                tmp / "throughput",
                svc.mosquitto.port,
                svc.influxd.hub_settings("bench"),
                deltas=args.throughput_deltas,
                devices=args.devices,
            )
            figures["seal_costs"] = await asyncio.to_thread(seal_costs)
        if "query" in sections:
            await _query_section(args, tmp, svc, figures)
        if sections & set(_SWARM_SECTIONS):
            await asyncio.to_thread(_scale, args, sections, tmp, svc, figures)
    if "models" in sections:
        figures["models"] = await asyncio.to_thread(model_costs)
    if args.train:
        figures["training"] = await asyncio.to_thread(_train_time, tmp / "train")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _scale(
    args: argparse.Namespace,
    sections: set[str],
    tmp: Path,
    svc: LocalServices,
    figures: dict[str, Any],
) -> None:
    """The swarm-based sections, on one provisioned fleet and one secured broker."""
    sizes = _ints(args.swarm)
    wanted = [*sizes, args.drain_devices, args.scaleout_devices]
    procs = args.swarm_procs
    with Swarm(tmp / "swarm", svc, max(wanted), extra=[(PROBE, "thermostat")]) as swarm:
        figures["idle_broker_rss"] = swarm.idle_broker_rss
        if "swarm" in sections:
            runs = swarm_sizes(
                swarm,
                sizes,
                rates=[float(r) for r in args.swarm_rates.split(",")],
                seconds=args.swarm_seconds,
                ops=args.swarm_ops,
                procs=procs,
            )
            figures["swarm"] = {str(k): [d.as_dict() for d in v] for k, v in runs.items()}
            figures["swarm_max"] = max_sustained(runs[max(sizes)])
        if "latency" in sections:
            top = args.latency_max or figures.get("swarm_max") or 2000.0
            figures["latency"] = latency(
                swarm,
                devices=max(sizes),
                max_rate=top,
                ops=args.swarm_ops,
                samples=args.latency_samples,
                procs=procs,
            )
        if "drain" in sections:
            figures["drain"] = drain(
                swarm,
                devices=args.drain_devices,
                hours=args.drain_hours,
                interval_s=args.drain_interval,
                ops=args.drain_ops,
                procs=procs,
            )
        if "scaleout" in sections:
            figures["scaleout"] = [
                d.as_dict()
                for d in scale_out(
                    swarm,
                    devices=args.scaleout_devices,
                    total=args.scaleout_deltas,
                    ops=args.swarm_ops,
                    procs=procs,
                )
            ]
        swarm.stop_hubs()


async def _hub_section(
    args: argparse.Namespace, tmp: Path, svc: LocalServices, figures: dict[str, Any]
) -> None:
    """Hub ingest per delta size, against raw InfluxDB and the raw broker."""
    ops_list = _ints(args.ops)
    raw_lines = twin_lines(args.raw_lines)
    influx = svc.influxd.hub_settings("bench")  # url and credentials; runs pick databases
    raw_influx = await RawInflux(
        svc.influxd.url, "bench_raw", svc.influxd.username, svc.influxd.password
    ).run(raw_lines)
    figures["raw_influx_lines_per_s"] = raw_influx
    print(f"raw InfluxDB: {raw_influx:,.0f} lines/s (1 field per line)", flush=True)
    broker = RawBroker("127.0.0.1", svc.mosquitto.port)
    for ops in ops_list:
        r = await hub_ingest(
            tmp / f"hub{ops}",
            svc.mosquitto.port,
            influx,
            devices=args.devices,
            deltas=max(args.devices, min(args.deltas, args.values // ops)),
            ops_per_delta=ops,
        )
        raw_broker = await asyncio.to_thread(
            broker.run, int(r.payload_bytes), min(args.deltas, 20_000)
        )
        figures["hub"].append(
            {
                **r.__dict__,
                "values_per_s": r.values_per_s,
                "lines_per_s": r.lines_per_s,
                "deltas_per_s": r.deltas_per_s,
                "raw_broker_msgs_per_s": raw_broker,
            }
        )
        print(
            f"hub ingest, {ops} ops/delta: {r.values_per_s:,.0f} values/s, "
            f"{r.deltas_per_s:,.0f} deltas/s (raw broker {raw_broker:,.0f} msg/s)",
            flush=True,
        )


#: (ops per delta, customers per device) of the ingest runs with and without the index
_INDEX_SHAPES = ((10, 1), (10, 50), (100, 1))


async def _query_section(
    args: argparse.Namespace, tmp: Path, svc: LocalServices, figures: dict[str, Any]
) -> None:
    """The twin query index: hub ingest with it against the same run without it (twice
    each, alternating, best of each), then queries over ``--query-twins`` twins."""
    influx = svc.influxd.hub_settings("bench")
    runs = []
    for ops, per_device in _INDEX_SHAPES:
        for attempt in range(2):
            for index in (True, False):
                r = await hub_ingest(
                    tmp / f"ix{ops}-{per_device}-{attempt}-{index}",
                    svc.mosquitto.port,
                    influx,
                    devices=args.devices,
                    deltas=args.index_deltas,
                    ops_per_delta=ops,
                    tag=f"_ix{per_device}_{attempt}_{int(index)}",
                    index=index,
                    twins_per_device=per_device,
                )
                runs.append(
                    {**r.__dict__, "values_per_s": r.values_per_s, "per_device": per_device}
                )
                print(
                    f"hub ingest {ops} ops/delta, {per_device} customers/device, index "
                    f"{'on' if index else 'off'}: {r.values_per_s:,.0f} values/s",
                    flush=True,
                )
    figures["index_cost"] = runs
    figures["query"] = await asyncio.to_thread(
        query_bench, tmp / "query", twins=args.query_twins, runs=args.query_runs
    )
    for q in figures["query"]["results"]:
        print(f"{q['backend']:10} {q['label']:45} p50 {q['p50']:.1f} ms p99 {q['p99']:.1f} ms")


def _train_time(out: Path) -> dict[str, float]:
    """One small `hub train --sim` run: seconds per 1,000 trained customer-device pairs."""
    from twinsync.training import SimTraining, train_from_sim

    setup = SimTraining(devices=150, days=42, eval_devices=60)
    report = train_from_sim(out, None, setup)
    return {
        "seconds": report["seconds"],
        "twins": report["twins_trained"],
        "per_1000": report["seconds"] / report["twins_trained"] * 1000,
    }


def _report(f: dict[str, Any], args: argparse.Namespace) -> str:
    parts = []
    if f["hub"]:
        parts.append(_hub_report(f))
    if f["agents"]:
        parts.append(_agents_report(f))
    if "models" in f:
        parts.append(_models_report(f))
    if "throughput" in f:
        parts += [throughput_table(f["throughput"]), seal_cost_table(f["seal_costs"])]
    if "index_cost" in f:
        parts.append(index_cost_table(f["index_cost"], args.devices))
    if "query" in f:
        parts.append(query_table(f["query"]))
    if "swarm" in f:
        parts.append(swarm_table(f["swarm"], args.swarm_ops, f["idle_broker_rss"]))
    if "latency" in f:
        parts.append(latency_table(f["latency"]))
    if "drain" in f:
        parts.append(drain_table(f["drain"]))
    if "scaleout" in f:
        parts.append(scale_out_table(f["scaleout"]))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    parts.append(f"{f['date']}; load average at the end (1, 5, 15 min): {load}")
    return "\n\n".join(parts)


def _hub_report(f: dict[str, Any]) -> str:
    raw = f["raw_influx_lines_per_s"]
    hub_rows = [
        [
            str(h["ops_per_delta"]),
            f"{h['payload_bytes']:,.0f}",
            f"{h['values_per_s']:,.0f}",
            f"{h['lines_per_s']:,.0f}",
            f"{h['deltas_per_s']:,.0f}",
            f"{h['values_per_s'] / raw:.0%}",
            f"{h['lines_per_s'] / raw:.0%}",
            f"{h['raw_broker_msgs_per_s']:,.0f}",
            f"{h['deltas_per_s'] / h['raw_broker_msgs_per_s']:.0%}",
        ]
        for h in f["hub"]
    ]
    return table(
        f"Hub ingest end to end (durable in InfluxDB, signatures verified); "
        f"raw InfluxDB reference: {raw:,.0f} lines/s of 1 field",
        [
            "ops/delta",
            "bytes/delta",
            "values/s",
            "lines/s",
            "deltas/s",
            "values vs raw",
            "lines vs raw",
            "raw broker msg/s",
            "deltas vs broker",
        ],
        hub_rows,
    )


def _agents_report(f: dict[str, Any]) -> str:
    agent_rows = [
        [
            a["product"],
            a["mode"],
            _models_cell(a),
            f"{a['signals']:,}",
            f"{a['deltas']:,}",
            f"{a['cpu_s'] / a['signals'] * 1e6:,.0f}",
            f"{a['rss_peak'] / 2**20:.1f}",
            f"{a['anon_peak'] / 2**20:.1f}",
            f"{a['rss_hwm'] / 2**20:.1f}",
            str(a["threads"]),
            f"{a['uplink_bytes'] / max(a['accepted'], 1):.1f}",
            f"{a['downlink_bytes'] / max(a['accepted'], 1):.1f}",
        ]
        for a in f["agents"]
    ]
    return table(
        "Edge agent process (twinsync edge run) fed over its ingest socket, real hub acking; "
        f"RSS target with models on: {_RSS_TARGET_MIB} MiB",
        [
            "product",
            "feed",
            "models",
            "signals",
            "deltas",
            "CPU µs/signal",
            "peak RSS MiB",
            "anon MiB",
            "start-up peak MiB",
            "threads",
            "up B/signal",
            "down B/signal",
        ],
        agent_rows,
    )


def _models_report(f: dict[str, Any]) -> str:
    m = f["models"]
    model_rows = [
        [product, kind, f"{t[0]:.1f}", f"{t[1]:.1f}"]
        for product, kinds in sorted(m["products"].items())
        for kind, t in kinds.items()
    ]
    models = table(
        "Default models in one process (onnxruntime's C API via ctypes, 1 thread), "
        "single-row predictions",
        ["product", "model", "median µs", "p99 µs"],
        model_rows,
    )
    models += "\n\n" + table(
        "Agent-sized process (edge imports, then ModelStore), RSS and its anonymous part",
        ["loaded", "RSS MiB", "anon MiB", "threads"],
        [
            [label, f"{mem[0] / 2**20:.1f}", f"{mem[1] / 2**20:.1f}", str(mem[2])]
            for label, mem in (
                ("edge imports", m["mem_base"]),
                ("+ libonnxruntime, OrtEnv", m["mem_runtime"]),
                ("+ one product's 4 models", m["mem_one_product"]),
                ("+ all 16 models", m["mem_all"]),
            )
        ],
    )
    if m.get("python_modules"):
        models += f"\nloaded despite the C API: {', '.join(m['python_modules'])}"
    if "training" in f:
        t = f["training"]
        models += (
            f"\nhub training: {t['per_1000']:.0f} s per 1,000 customer-device pairs "
            f"({t['twins']:.0f} pairs, {t['seconds']:.0f} s, simulation and evaluation included)"
        )
    return models


def _models_cell(a: dict[str, Any]) -> str:
    if not a["models_enabled"]:
        return "off"
    # "on" with fewer than 3 serving means a model was refused: the RSS is not comparable.
    return f"on ({len(a['models'])})"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``twinsync bench``; prints the table, returns the exit code."""
    args = _parser().parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        print(
            f"twinsync bench: unknown section(s) {', '.join(sorted(unknown))}; "
            f"choose from {','.join(SECTIONS)}",
            file=sys.stderr,
        )
        return 2
    # 10,000 device connections: the broker and the generators inherit this limit.
    raise_fd_limit(65536)
    figures: dict[str, Any] = {"hub": [], "agents": [], "date": time.strftime("%Y-%m-%d")}
    try:
        with tempfile.TemporaryDirectory(prefix="twinsync-bench-") as tmp:
            asyncio.run(_bench(args, Path(tmp), figures))
    finally:
        # What the sections that finished measured is kept, even if a later one failed.
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
    print()
    print(_report(figures, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
