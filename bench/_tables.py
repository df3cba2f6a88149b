"""Plain-text tables for the bench's report, one function per scale section."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "drain_table",
    "index_cost_table",
    "latency_table",
    "query_table",
    "scale_out_table",
    "seal_cost_table",
    "swarm_table",
    "table",
    "throughput_table",
]

_MIB = 2**20


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = cells
    return "  ".join(
        [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
    )


def table(title: str, header: Sequence[str], rows: list[list[str]]) -> str:
    """``title``, then the header and rows in columns (the first left-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = [title, _row(header, widths), _row(["-" * w for w in widths], widths)]
    out += [_row(r, widths) for r in rows]
    return "\n".join(out)


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _cpu(d: dict[str, Any], role: str) -> str:
    return f"{d['usage']['cpu'].get(role, 0.0) / d['usage']['seconds']:.0%}"


def swarm_table(runs: dict[str, list[dict[str, Any]]], ops: int, idle_broker: int) -> str:
    """Table 1: per size, every paced rate tried."""
    rows = []
    for size, results in runs.items():
        for d in results:
            sustained = d["deltas_per_s"] >= 0.95 * d["rate"] and d["resent"] == 0
            rows.append(
                [
                    f"{int(size):,}",
                    _n(d["connected"]),
                    f"{d['connect_seconds']:.1f}",
                    _n(d["rate"]),
                    _n(d["deltas_per_s"]),
                    _n(d["values_per_s"]),
                    f"{d['usage']['cpu'].get('hub', 0) / max(d['values'], 1) * 1e6:.1f}",
                    f"{d['usage']['cpu'].get('hub', 0) / max(d['deltas'], 1) * 1e6:.0f}",
                    _cpu(d, "hub"),
                    _cpu(d, "broker"),
                    _cpu(d, "generator"),
                    _n(d["ack_p50_ms"]),
                    _n(d["ack_p99_ms"]),
                    _n(d["resent"]),
                    f"{d['broker_rss'] / _MIB:.0f}",
                    "yes" if sustained else "no",
                ]
            )
    return table(
        f"Device swarm: each device its own identity, broker account and connection; paced "
        f"{ops}-op sealed deltas, one hub; broker RSS idle with every account: "
        f"{idle_broker / _MIB:.0f} MiB",
        [
            "devices",
            "connections",
            "connect s",
            "offered/s",
            "deltas/s",
            "values/s",
            "hub CPU µs/value",
            "µs/delta",
            "hub CPU",
            "broker CPU",
            "generator CPU",
            "ack p50 ms",
            "ack p99 ms",
            "resent",
            "broker RSS MiB",
            "sustained",
        ],
        rows,
    )


def latency_table(rows: list[dict[str, Any]]) -> str:
    """Table 2."""
    return table(
        "End-to-end latency: signal into a real edge agent -> readable through the hub API, "
        "under swarm load (ms; 'agent' is in -> on the wire: the flush window, commit, seal)",
        [
            "load",
            "deltas/s",
            "devices",
            "samples",
            "wire->API p50",
            "p99",
            "agent p50",
            "p99",
            "total p50",
            "p99",
        ],
        [
            [
                f"{r['share']:.0%} of max",
                _n(r["rate"]),
                _n(r["devices"]),
                str(r["samples"]),
                _n(r["system_p50_ms"]),
                _n(r["system_p99_ms"]),
                _n(r["agent_p50_ms"]),
                _n(r["agent_p99_ms"]),
                _n(r["total_p50_ms"]),
                _n(r["total_p99_ms"]),
            ]
            for r in rows
        ],
    )


def drain_table(r: dict[str, Any]) -> str:
    """Table 3."""
    return table(
        f"Backlog drain: every device reconnects at once with {r['hours']:g} h of deltas "
        f"(one per {r['interval_s']:g} s, {r['ops_per_delta']} ops); first CONNECT to last ack",
        [
            "devices",
            "deltas",
            "values",
            "drain s",
            "x real time",
            "deltas/s",
            "values/s",
            "stored / sent",
            "devices short",
            "resent",
            "hub RSS high-water MiB",
            "broker RSS MiB",
        ],
        [
            [
                _n(r["devices"]),
                _n(r["deltas"]),
                _n(r["values"]),
                f"{r['seconds']:,.1f}",
                _n(r["real_time_ratio"]),
                _n(r["deltas_per_s"]),
                _n(r["values_per_s"]),
                f"{r['stored_values']:,} / {r['values']:,}",
                str(r["devices_missing_values"]),
                _n(r["resent"]),
                f"{r['hub_rss_hwm'] / _MIB:.0f}",
                f"{r['broker_rss_peak'] / _MIB:.0f}",
            ]
        ],
    )


def scale_out_table(runs: list[dict[str, Any]]) -> str:
    """Table 4: CPU as a share of one core, per role, over the measured interval."""
    return table(
        "Scale-out: the same flat-out swarm against 1 and 2 hub instances on the shared "
        "subscription; CPU per role in cores (the machine has 2)",
        [
            "hubs",
            "devices",
            "deltas/s",
            "values/s",
            "hub CPU",
            "broker CPU",
            "influxd CPU",
            "generator CPU",
            "all",
        ],
        [
            [
                str(d["hubs"]),
                _n(d["devices"]),
                _n(d["deltas_per_s"]),
                _n(d["values_per_s"]),
                *(
                    f"{d['usage']['cpu'].get(role, 0.0) / d['usage']['seconds']:.2f}"
                    for role in ("hub", "broker", "influxd", "generator")
                ),
                f"{sum(d['usage']['cpu'].values()) / d['usage']['seconds']:.2f}",
            ]
            for d in runs
        ],
    )


def throughput_table(rows: list[dict[str, Any]]) -> str:
    """Table 5."""
    return table(
        "One hub process vs a Node-RED/Telegraf-style flow (subscribe -> InfluxDB, no "
        "checks, acked on receipt) and the broker drained by a counting subscriber, same "
        "run, each draining a queued session (deltas/s)",
        [
            "ops/delta",
            "broker drain",
            "flow",
            "hub plain",
            "hub sealed",
            "sealed vs flow",
            "sealed vs broker",
            "plain vs flow",
            "sealed values/s",
            "pub+sub broker",
        ],
        [
            [
                str(r["ops"]),
                _n(r["flow"]["broker_drain_per_s"]),
                _n(r["flow"]["deltas_per_s"]),
                _n(r["plain"]["deltas_per_s"]),
                _n(r["sealed"]["deltas_per_s"]),
                f"{r['sealed']['deltas_per_s'] / r['flow']['deltas_per_s']:.0%}",
                f"{r['sealed']['deltas_per_s'] / r['flow']['broker_drain_per_s']:.0%}",
                f"{r['plain']['deltas_per_s'] / r['flow']['deltas_per_s']:.0%}",
                _n(r["sealed"]["values_per_s"]),
                _n(r["broker_msgs_per_s"]),
            ]
            for r in rows
        ],
    )


def seal_cost_table(rows: list[dict[str, Any]]) -> str:
    """What sealing and signing cost per delta, µs on one core."""
    return table(
        "Per delta, µs on one core: the device encodes, seals, signs; the hub decodes the "
        "envelope, checks the signature (first delta of a box key only, when sealed), "
        "finds the box key, opens, decodes the body",
        [
            "ops",
            "bytes plain/sealed",
            "encode",
            "seal",
            "sign",
            "envelope",
            "verify",
            "box key",
            "open",
            "body",
        ],
        [
            [
                str(r["ops"]),
                f"{r['plain_bytes']}/{r['sealed_bytes']}",
                *(
                    f"{r[k]:.1f}"
                    for k in (
                        "encode_us",
                        "seal_us",
                        "sign_us",
                        "decode_us",
                        "verify_us",
                        "parse_us",
                        "open_us",
                        "body_us",
                    )
                ),
            ]
            for r in rows
        ],
    )


def index_cost_table(runs: list[dict[str, Any]], devices: int) -> str:
    """Hub ingest with the twin query index against the same run without it."""
    best: dict[tuple[int, int, bool], dict[str, Any]] = {}
    for r in runs:
        key = (r["ops_per_delta"], r["per_device"], r["index"])
        if key not in best or r["values_per_s"] > best[key]["values_per_s"]:
            best[key] = r
    rows = []
    for ops, per_device in sorted({(k[0], k[1]) for k in best}):
        on, off = best[(ops, per_device, True)], best[(ops, per_device, False)]
        rows.append(
            [
                str(ops),
                _n(devices * per_device),
                _n(on["values_per_s"]),
                _n(off["values_per_s"]),
                f"{on['values_per_s'] / off['values_per_s']:.0%}",
                f"{on['index_seconds'] / on['seconds']:.0%}",
            ]
        )
    return table(
        "Twin query index at ingest (SQLite state store): hub ingest with the index vs the "
        f"same run without it ({devices} devices, best of 2 alternating runs each)",
        [
            "ops/delta",
            "twins",
            "values/s with",
            "values/s without",
            "with/without",
            "time in index",
        ],
        rows,
    )


def query_table(q: dict[str, Any]) -> str:
    """Twin query latencies per backend against the same run's one-twin lookup."""
    refs = {r["backend"]: r["p50"] for r in q["results"] if r["label"].startswith("reference")}
    rows = [
        [
            r["label"],
            r["backend"],
            _n(r["matches"]),
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            f"{r['p50'] / refs[r['backend']]:.0f}x",
        ]
        for r in q["results"]
    ]
    fill = ", ".join(f"{k} {v:.0f} s" for k, v in q["fill_s"].items())
    return table(
        f"Twin queries over {q['twins']:,} twins (a page of 100 and the count, {q['runs']} runs "
        f"each; filled through the index's writer in {fill})",
        ["query", "store", "matches", "p50 ms", "p99 ms", "p50 vs lookup"],
        rows,
    )
