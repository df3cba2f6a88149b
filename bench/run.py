"""``twinsync bench``: hub ingest, agent costs and their references, from one run.

Everything runs against private mosquitto and influxd instances started here. Figures
are reported as ratios against references measured in the same run (raw InfluxDB
batched writes of the same line shape, raw broker QoS 1 throughput of the same payload
size), because absolute rates on shared 2-core machines are noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twinsync.services import LocalServices

from ._agent import agent_costs
from ._hub_ingest import hub_ingest
from ._models import model_costs
from ._reference import RawBroker, RawInflux, twin_lines

__all__ = ["main"]

#: the issue's memory budget for an agent with its product's 3 models loaded and running
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
    return p


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = cells
    return "  ".join(
        [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
    )


def _table(title: str, header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = [title, _row(header, widths), _row(["-" * w for w in widths], widths)]
    out += [_row(r, widths) for r in rows]
    return "\n".join(out)


async def _bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    ops_list = [int(x) for x in args.ops.split(",") if x]
    figures: dict[str, Any] = {"hub": [], "agents": []}
    with LocalServices(tmp / "services") as svc:
        print(f"services: mosquitto :{svc.mosquitto.port}, influxd {svc.influxd.url}", flush=True)
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
        for a in await agent_costs(
            tmp / "agents", svc.mosquitto.port, influx, days=args.agent_days
        ):
            figures["agents"].append(a.__dict__)
            on = f"models on: {', '.join(a.models) or 'none serving'}"
            print(
                f"agent {a.product} ({a.mode}, {on if a.models_enabled else 'models off'}): "
                f"{a.signals:,} signals, peak RSS {a.rss_peak / 2**20:.1f} MiB",
                flush=True,
            )
    figures["models"] = await asyncio.to_thread(model_costs)
    if args.train:
        figures["training"] = await asyncio.to_thread(_train_time, tmp / "train")
    return figures


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


def _report(f: dict[str, Any]) -> str:
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
    hub = _table(
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
    agents = _table(
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
    m = f["models"]
    model_rows = [
        [product, kind, f"{t[0]:.1f}", f"{t[1]:.1f}"]
        for product, kinds in sorted(m["products"].items())
        for kind, t in kinds.items()
    ]
    models = _table(
        "Default models in one process (onnxruntime's C API via ctypes, 1 thread), "
        "single-row predictions",
        ["product", "model", "median µs", "p99 µs"],
        model_rows,
    )
    models += "\n\n" + _table(
        "Agent-sized process (edge imports, then ModelStore), RSS and its anonymous part",
        ["loaded", "RSS MiB", "anon MiB", "threads"],
        [
            [label, f"{mem[0] / 2**20:.1f}", f"{mem[1] / 2**20:.1f}", str(mem[2])]
            for label, mem in (
                ("edge imports", m["mem_base"]),
                ("+ libonnxruntime, OrtEnv", m["mem_runtime"]),
                ("+ one product's 3 models", m["mem_one_product"]),
                ("+ all 12 models", m["mem_all"]),
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
    return f"{hub}\n\n{agents}\n\n{models}"


def _models_cell(a: dict[str, Any]) -> str:
    if not a["models_enabled"]:
        return "off"
    # "on" with fewer than 3 serving means a model was refused: the RSS is not comparable.
    return f"on ({len(a['models'])})"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``twinsync bench``; prints the table, returns the exit code."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="twinsync-bench-") as tmp:
        figures = asyncio.run(_bench(args, Path(tmp)))
    print()
    print(_report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
