"""``twinsync sim``: generate a simulated fleet and its ground truth as files.

    twinsync sim generate --seed 7 --devices 100 --days 1 --out sim/ --bundle b/agent.toml
    twinsync sim generate --profile realistic --set churn.monthly_rate=0.05 --out sim/
    twinsync sim stats --seed 7 --devices 100 --profile realistic

``--profile`` picks the easy fleet (the default) or the realistic one; ``--set
FIELD=VALUE`` (repeatable) sets any field of ``FleetSpec`` or its parts, dotted
(``sensors.loss=0.2``, ``population.timezones=["Asia/Tokyo"]``; values are JSON, else
text), after the profile and the shortcuts (``--loss``, ``--timezones``, ...).
``generate`` writes fleet.json (households, customers with personas, blends, churn and
life events, devices with zones and clocks), labels.json (per device: anomaly labels,
genuine events, outages, clock, sensor faults, real users of shared devices),
signals.jsonl (every signal with the agent's expected reply), points.jsonl, twins.json
and summary.json. Twin ids need the brand key the agents use: pass a device bundle
(``--bundle``) or a key file (``--brand-key``); without either a fresh random key is
written to ``<out>/brand.key``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from protocol import TwinSyncError

from ._bundles import bundle_identity
from ._errors import SimulationError
from ._fleet import Fleet
from ._knobs import FaultSpec
from ._profiles import PROFILES
from ._spec import DAY_MS, FleetSpec
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
    common.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="easy",
        help="easy (default: personas without variation, UTC, perfect sensors) or realistic "
        "(real-world mess at plausible levels; docs/simulation.md)",
    )
    common.add_argument(
        "--no-faults",
        action="store_true",
        help="no firmware faults (glitches, absurd stamps, duplicates, skew, reboots, "
        "anomalies); other knobs of the profile stay",
    )
    knobs = common.add_argument_group("knobs (after the profile)")
    knobs.add_argument(
        "--churn-monthly",
        type=float,
        metavar="RATE",
        help="full churn per customer and 30 days (churn.monthly_rate)",
    )
    knobs.add_argument(
        "--anomaly-rate",
        type=float,
        metavar="RATE",
        help="anomalies started per gauge reading (faults.anomaly_rate)",
    )
    knobs.add_argument(
        "--loss", type=float, metavar="SHARE", help="share of signals never sent (sensors.loss)"
    )
    knobs.add_argument(
        "--novel-share",
        type=float,
        metavar="SHARE",
        help="share of customers with a novel persona (population.novel_share)",
    )
    knobs.add_argument(
        "--timezones",
        metavar="ZONE,...",
        help="zones households live in, e.g. Europe/Berlin,Asia/Tokyo (population.timezones)",
    )
    knobs.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       dest="settings",
                       help="any field of FleetSpec or its parts, e.g. sensors.noise=2 or "
                       "life.seasons=false (JSON values; repeatable)")  # fmt: skip
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


_SHORTCUTS = {
    "churn_monthly": "churn.monthly_rate",
    "anomaly_rate": "faults.anomaly_rate",
    "loss": "sensors.loss",
    "novel_share": "population.novel_share",
}


def _value(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return tuple(value) if isinstance(value, list) else value


def _set(spec: Any, path: str, value: Any) -> Any:
    """``spec`` with the dotted field ``path`` replaced by ``value`` (a new dataclass)."""
    head, _, rest = path.partition(".")
    names = {f.name for f in dataclasses.fields(spec)}
    if head not in names:
        where = type(spec).__name__
        raise SimulationError(
            f"--set {path}: {where} has no field {head!r}; it has {', '.join(sorted(names))}"
        )
    if rest:
        inner = getattr(spec, head)
        if not dataclasses.is_dataclass(inner):
            raise SimulationError(f"--set {path}: {head} is a value, not a group of fields")
        value = _set(inner, rest, value)
    try:
        return dataclasses.replace(spec, **{head: value})
    except TypeError as exc:
        raise SimulationError(f"--set {path}: {exc}") from None


def spec_from_args(args: argparse.Namespace) -> FleetSpec:
    """The FleetSpec the arguments describe (profile, then shortcuts, then ``--set``)."""
    spec = FleetSpec(**PROFILES[args.profile]())
    spec = dataclasses.replace(
        spec, seed=args.seed, devices=args.devices, days=args.days, start_ms=args.start_ms,
        brand=args.brand,
    )  # fmt: skip
    if args.no_faults:
        spec = dataclasses.replace(spec, faults=FaultSpec.none())
    settings: list[tuple[str, Any]] = [
        (path, getattr(args, name))
        for name, path in _SHORTCUTS.items()
        if getattr(args, name) is not None
    ]
    if args.timezones is not None:
        zones = tuple(z.strip() for z in args.timezones.split(",") if z.strip())
        settings.append(("population.timezones", zones))
    for item in args.settings:
        path, sep, text = item.partition("=")
        if not sep or not path:
            raise SimulationError(f"--set {item!r}: give FIELD=VALUE, e.g. sensors.loss=0.2")
        settings.append((path.strip(), _value(text.strip())))
    for path, value in settings:
        spec = _set(spec, path, value)
    return spec


def _fleet(args: argparse.Namespace) -> Fleet:
    return Fleet.generate(spec_from_args(args))


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
    (args.out / "labels.json").write_text(json.dumps(fleet.labels(), indent=1))
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
    partial = sum(any(p.partial for p in c.product_churn) for c in fleet.customers)
    blended = sum(c.blend is not None for c in fleet.customers)
    print(
        f"  {len(fleet.customers)} customers, {churners} churners, {partial} leaving one "
        f"product, {blended} blended: "
        + ", ".join(f"{name} {count}" for name, count in sorted(personas.items()))
    )
    zones = Counter(h.tz for h in fleet.households)
    print(f"  {len(fleet.households)} households in {len(zones)} zones: "
          + ", ".join(f"{z} {n}" for z, n in zones.most_common(5)))  # fmt: skip
    kinds: Counter[str] = Counter()
    genuine: Counter[str] = Counter()
    for d in fleet.devices:
        t = fleet.truth(d.device_id)
        kinds.update(f"{a.kind}/{a.size}" for a in t.anomalies.values())
        genuine.update(g.kind for g in t.genuine)
    print(
        "  anomalous signals: "
        + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none")
    )
    print(
        "  genuine events: " + (", ".join(f"{k} {n}" for k, n in sorted(genuine.items())) or "none")
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
