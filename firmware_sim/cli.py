"""``twinsync sim``: generate a simulated fleet and its ground truth as files.

    twinsync sim generate --seed 7 --devices 100 --days 1 --out sim/ --bundle b/agent.toml
    twinsync sim stats --seed 7 --devices 100

``generate`` writes fleet.json (customers with personas and churn labels, devices),
signals.jsonl (every signal with the agent's expected reply), points.jsonl, twins.json
and summary.json. Twin ids need the brand key the agents use: pass a device bundle
(``--bundle``) or a key file (``--brand-key``); without either a fresh random key is
written to ``<out>/brand.key``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from protocol import TwinSyncError

from ._bundles import bundle_identity
from ._errors import SimulationError
from ._fleet import DAY_MS, FaultSpec, Fleet, FleetSpec
from ._truth import GroundTruth

__all__ = ["main", "parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2): what is wrong and where help is, no usage
    block to scroll past. Subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="twinsync sim", description="Simulated device fleets with known ground truth."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = _Parser(add_help=False)
    common.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    common.add_argument("--devices", type=int, default=100, help="devices (default 100)")
    common.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    common.add_argument("--brand", default="acme", help="brand id (default acme)")
    common.add_argument(
        "--start-ms",
        type=int,
        default=None,
        help="window start, Unix ms (default: now - 2 days, rounded to the minute)",
    )
    common.add_argument("--no-faults", action="store_true", help="a perfectly behaved fleet")
    gen = sub.add_parser(
        "generate", parents=[common], help="write fleet, signals and ground truth files"
    )
    gen.add_argument("--out", type=Path, required=True, help="output directory")
    key = gen.add_mutually_exclusive_group()
    key.add_argument("--bundle", type=Path, help="a device bundle's agent.toml (key + epoch)")
    key.add_argument("--brand-key", type=Path, help="the brand key file (32+ raw bytes)")
    gen.add_argument("--epoch", type=int, default=1, help="key epoch with --brand-key")
    gen.add_argument(
        "--now-ms",
        type=int,
        default=None,
        help="the agents' wall clock for the timestamp window (default: now)",
    )
    sub.add_parser("stats", parents=[common], help="print signal counts per product and persona")
    return parser


def _fleet(args: argparse.Namespace) -> Fleet:
    faults = FaultSpec.none() if args.no_faults else FaultSpec()
    return Fleet.generate(
        FleetSpec(
            seed=args.seed,
            devices=args.devices,
            days=args.days,
            start_ms=args.start_ms,
            brand=args.brand,
            faults=faults,
        )
    )


def _brand_key(args: argparse.Namespace) -> tuple[bytes, int]:
    if args.bundle is not None:
        return bundle_identity(args.bundle)
    if args.brand_key is not None:
        try:
            return args.brand_key.read_bytes(), args.epoch
        except OSError as exc:
            raise SimulationError(
                f"--brand-key {args.brand_key} cannot be read ({exc.strerror}): pass the "
                "brand key file of the agents, or --bundle with a device bundle's agent.toml"
            ) from exc
    args.out.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(args.out / "brand.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key, args.epoch


def _generate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    fleet = _fleet(args)
    key, epoch = _brand_key(args)
    now = args.now_ms if args.now_ms is not None else time.time_ns() // 1_000_000
    truth = GroundTruth.compute(fleet, key, epoch, now_ms=now)
    truth.write(args.out)
    (args.out / "fleet.json").write_text(json.dumps(fleet.describe(), indent=1))
    counts = truth.counts()
    print(
        f"{len(fleet.devices)} devices, {len(fleet.customers)} customers, "
        f"{sum(len(o) for o in truth.outcomes.values())} signals "
        f"({counts.get('accepted', 0)} accepted, {counts.get('duplicate', 0)} duplicate, "
        f"{counts.get('rejected', 0)} rejected), {len(truth.expected_points)} points, "
        f"{len(truth.twins)} twins -> {args.out} in {time.perf_counter() - started:.2f}s"
    )
    return 0


def _stats(args: argparse.Namespace) -> int:
    fleet = _fleet(args)
    per_product: Counter[str] = Counter()
    devices: Counter[str] = Counter()
    for d in fleet.devices:
        devices[d.product] += 1
        per_product[d.product] += len(fleet.signals(d.device_id))
    days = (fleet.end_ms - fleet.start_ms) / DAY_MS
    print(f"window {fleet.start_ms} .. {fleet.end_ms} ({days:g} days)")
    for product in sorted(devices):
        n = devices[product]
        print(f"  {product:<11} {n:4d} devices {per_product[product] / n:8.0f} signals/device")
    personas = Counter(c.persona for c in fleet.customers)
    churners = sum(c.churner for c in fleet.customers)
    print(
        f"  {len(fleet.customers)} customers, {churners} churners: "
        + ", ".join(f"{name} {count}" for name, count in sorted(personas.items()))
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``twinsync sim``; returns the exit code."""
    args = parser().parse_args(argv)
    try:
        return _generate(args) if args.command == "generate" else _stats(args)
    except TwinSyncError as exc:
        # Every error here comes from the arguments or the files they name: exit 2, as
        # for the other commands' configuration errors.
        print(f"twinsync sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"twinsync sim: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
