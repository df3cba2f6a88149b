"""``twinsync train`` (also ``twinsync hub train``): fit, evaluate and sign the model set.

Training imports the simulator (labels come from its ground truth) and scikit-learn, so
it lives beside the hub, not in it: the hub serves and rolls out the files it writes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from cloud_hub import ensure_hub_key, load_hub_config
from protocol import TwinSyncError

__all__ = ["main", "parser"]


class _Parser(argparse.ArgumentParser):
    """One-line argument errors (exit 2), like the other commands."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def parser(prog: str) -> argparse.ArgumentParser:
    train = _Parser(
        prog=prog,
        description="Fit segment, churn and anomaly models per product, export them to ONNX "
        "with signed manifests, and score them on a held-out simulated fleet "
        "(needs the 'train' extra).",
    )
    train.add_argument("--config", type=Path, help="hub.toml (env TWINSYNC_HUB__* overrides)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--sim",
        action="store_true",
        help="train every model on a simulated fleet and score it on another",
    )
    source.add_argument(
        "--influx",
        metavar="BRAND",
        help="train segment models from BRAND's twin features in the configured InfluxDB",
    )
    source.add_argument(
        "--micro",
        type=Path,
        metavar="SEGMENTS_DIR",
        help="train micro-segment models (micro-<product>) inside the segments of the "
        "segment-<product> models in SEGMENTS_DIR, on two simulated training fleets "
        "(--seed and --seed + 1); writes them and micro-report.json only",
    )
    train.add_argument(
        "--kinds",
        nargs="+",
        choices=("segment", "churn", "anomaly"),
        metavar="KIND",
        help="with --sim: train, score and write only these kinds (segment, churn, "
        "anomaly; default all); their scores replace the earlier ones in OUT's report.json, "
        "which must come from a run with the same settings, and the other models stay",
    )
    train.add_argument(
        "--sub-personas",
        type=float,
        default=0.0,
        help="plant two habit variants inside every persona of the simulated fleets "
        "(firmware_sim PopulationSpec.sub_personas; default 0: none)",
    )
    train.add_argument("--out", type=Path, required=True, help="output directory")
    train.add_argument("--seed", type=int, default=1)
    train.add_argument("--devices", type=int, default=300)
    train.add_argument("--days", type=float, default=70.0)
    train.add_argument(
        "--eval-seed",
        type=int,
        nargs="+",
        default=[1001, 2002],
        metavar="SEED",
        help="held-out fleets to score on, one per seed (default: 1001 2002)",
    )
    train.add_argument("--eval-devices", type=int, default=200)
    train.add_argument(
        "--segment-fleets",
        type=int,
        default=4,
        metavar="N",
        help="training fleets the segment models learn from, seeds SEED..SEED+N-1 "
        "(default 4: one row per customer, and one fleet has few of each persona)",
    )
    train.add_argument(
        "--churn-fleets",
        type=int,
        default=3,
        metavar="N",
        help="training fleets the churn models learn from, seeds SEED..SEED+N-1 "
        "(default 3: one fleet has a few dozen churners of a product)",
    )
    train.add_argument(
        "--profile",
        choices=("realistic", "easy"),
        default="realistic",
        help="simulator profile of the training and held-out fleets (default: realistic)",
    )
    train.add_argument("--version", type=int, default=1, help="version of every model written")
    train.add_argument(
        "--unsigned",
        action="store_true",
        help="no signature (only for the defaults shipped inside the package)",
    )
    return train


def main(argv: Sequence[str] | None = None, *, prog: str = "twinsync train") -> int:
    """Entry point of ``twinsync train``."""
    args = parser(prog).parse_args(argv)
    if args.kinds and not args.sim:
        print(f"{prog}: --kinds goes with --sim (see '{prog} --help')", file=sys.stderr)
        return 2
    try:
        from . import (
            KINDS,
            SimTraining,
            fetch_features,
            train_from_sim,
            train_micro,
            train_segments,
        )
        from ._artefacts import write_report
    except ImportError as exc:
        print(f"{prog}: {exc}; install the extra: pip install 'twinsync[train]'", file=sys.stderr)
        return 2
    try:
        config = load_hub_config(args.config)
        key = None if args.unsigned else ensure_hub_key(config.keys.secrets_dir)
        if args.influx:
            data = asyncio.run(fetch_features(config, args.influx))
            report = train_segments(data, args.out, key, args.version, brand=args.influx)
            for name, why in sorted(report["skipped"].items()):
                print(f"segment-{name}: skipped, {why}")
            if not report["models"]:
                print(f"{prog}: no product had enough feature rows", file=sys.stderr)
                return 1
            _print_report(report, args.out)
            return 0
        setup = SimTraining(
            seed=args.seed,
            devices=args.devices,
            days=args.days,
            eval_seeds=tuple(args.eval_seed),
            eval_devices=args.eval_devices,
            segment_fleets=args.segment_fleets,
            churn_fleets=args.churn_fleets,
            profile=args.profile,
            sub_personas=args.sub_personas,
            version=args.version,
        )
        if args.micro:
            try:
                micro = train_micro(args.out, args.micro, key, args.version, setup)
            except OSError as exc:
                print(f"{prog}: cannot read the segment models: {exc}", file=sys.stderr)
                return 2
            write_report(args.out, micro, "micro-report.json")
            for product, entry in micro.items():
                print(f"micro-{product}: splits shipped in segments {entry['shipped_splits']}")
            return 0
        report = train_from_sim(args.out, key, setup, kinds=args.kinds or KINDS)
    except TwinSyncError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    _print_report(report, args.out)
    return 0


def _print_report(report: dict[str, Any], out: Path) -> None:
    if "evaluation" in report:
        _print_evaluation(report)
    else:
        width = max(map(len, report["models"]))
        for name, metrics in sorted(report["models"].items()):
            shown = ", ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in sorted(metrics.items())
            )
            print(f"{name.ljust(width)}  {shown}")
    segments = report["segments"]
    if "k_by_stability" in segments:  # --sim: as many segments as training personas
        why = f"the training fleet's personas; by stability alone {segments['k_by_stability']}"
    else:
        why = "best mean stability over products"
    print(f"segments: k={segments['k']} ({why})")
    if report.get("retrained"):  # this run trained some kinds only (the last entry)
        run = report["retrained"][-1]
        print(f"retrained {', '.join(run['kinds'])} in {run['seconds']:.0f} s; "
              f"report (other kinds kept): {out / 'report.json'}")  # fmt: skip
        return
    pairs = report.get("twins_trained")
    trained = f"trained on {pairs} customer-device pairs " if pairs else "trained "
    print(f"{trained}in {report['seconds']:.0f} s; report: {out / 'report.json'}")


def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _print_evaluation(report: dict[str, Any]) -> None:
    """One line per held-out seed and product: model (baseline) for each headline."""
    print(
        "held-out  product     segment acc (best 2-feat)  ARI   churn AUC 7d (base)  "
        "14d (base)   P@rate (base)  anomaly alert P / R, worst size"
    )
    for seed, products in report["evaluation"].items():
        for product, e in sorted(products.items()):
            seg, churn, anomaly = e["segment"], e["churn"], e["anomaly"]
            lead = churn.get("by_lead", {})
            l7, l14 = lead.get("7", {}), lead.get("14", {})
            sizes = anomaly.get("by_size", {})
            alerted = anomaly.get("alerts", {}).get("by_size", sizes)
            worst_p = min((v["precision"] for v in alerted.values()), default=None)
            worst_r = min((v["recall"] for v in sizes.values()), default=None)
            print(
                f"{seed:<9} {product:<11} {_f(seg.get('accuracy')):>5} "
                f"({_f(seg.get('best_2_feature_accuracy'))})"
                f"{'':14}{_f(seg.get('ari')):>5} "
                f"{_f(l7.get('auc')):>8} ({_f(l7.get('baseline_auc'))})"
                f"{_f(l14.get('auc')):>11} ({_f(l14.get('baseline_auc'))})"
                f"{_f(churn.get('precision_at_rate')):>8} "
                f"({_f(churn.get('baseline_precision_at_rate'))})"
                f"{_f(worst_p):>10} / {_f(worst_r)}"
            )
    missed = [
        f"{seed}/{product}/{name}"
        for seed, products in report["targets"].items()
        for product, targets in products.items()
        for name, entry in targets.items()
        if not entry["met"]
    ]
    print(f"targets not met: {', '.join(missed) if missed else 'none'}")
