"""Ground truth on disk: JSON Lines and JSON files that tests and notebooks can read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol import FIELDS, HLC, SignalIn, TwinState

from ._errors import SimulationError

if TYPE_CHECKING:
    from ._truth import GroundTruth

__all__ = ["read_truth", "write_truth"]

FORMAT = 1


def write_truth(truth: GroundTruth, directory: Path) -> None:
    """signals.jsonl, points.jsonl, twins.json, summary.json."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "signals.jsonl").open("w") as f:
        for device, signals in sorted(truth.signals.items()):
            outcomes = truth.outcomes.get(device, [])
            reboots = set(truth.reboots.get(device, ()))
            for i, (sig, (_, status, reason)) in enumerate(zip(signals, outcomes, strict=True)):
                row: dict[str, Any] = {"device": device, **sig.model_dump()}
                row |= {"status": status, "reason": reason, "reboot": i in reboots}
                f.write(json.dumps(row) + "\n")  # NaN glitches are written as NaN
    with (directory / "points.jsonl").open("w") as f:
        for p in sorted(truth.expected_points, key=lambda p: (p[1], p[3], p[4], p[2])):
            f.write(json.dumps(list(p), allow_nan=False) + "\n")
    twins = {t: s.values() for t, s in sorted(truth.twins.items())}
    (directory / "twins.json").write_text(json.dumps(twins, indent=1, sort_keys=True))
    summary = {
        "format": FORMAT,
        "brand": truth.brand,
        "devices": len(truth.outcomes),
        "points": len(truth.expected_points),
        "twins": len(truth.twins),
        "subjects": len(truth.subjects),
        "signals": truth.counts(),
        "reboots": sum(len(r) for r in truth.reboots.values()),
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))


def read_truth(cls: type[GroundTruth], directory: Path) -> GroundTruth:
    """Inverse of :func:`write_truth` (the raw-subject -> twin map is not stored)."""
    try:
        summary = json.loads((directory / "summary.json").read_text())
        truth = cls(summary["brand"])
        with (directory / "points.jsonl").open() as f:
            for line in f:
                brand, device, twin, ts, fld, value = json.loads(line)
                if FIELDS[fld].type == "float":
                    value = float(value)
                truth.expected_points.add((brand, device, twin, ts, fld, value))
                truth.twins.setdefault(twin, TwinState()).apply(
                    device, HLC.from_ns(ts).pack(), fld, value
                )
        seen: set[str] = set()
        signals: dict[str, list[SignalIn]] = {}
        with (directory / "signals.jsonl").open() as f:
            for line in f:
                row = json.loads(line)
                device = row.pop("device")
                status, reason, reboot = row.pop("status"), row.pop("reason"), row.pop("reboot")
                sig = SignalIn.model_validate(row)
                stream = signals.setdefault(device, [])
                if reboot:
                    truth.reboots.setdefault(device, []).append(len(stream))
                stream.append(sig)
                truth.outcomes.setdefault(device, []).append((sig.seq, status, reason))
                if sig.subject not in seen:
                    seen.add(sig.subject)
                    truth.subjects.append(sig.subject)
        truth.signals = dict(signals)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SimulationError(f"cannot read ground truth from {directory}: {exc}") from exc
    return truth
