"""Ground truth: what the agents must answer and what InfluxDB and the API must end up with.

Computed independently of ``edge_agent`` from the rules in docs/architecture.md ("Signals
and the twin"), using only ``protocol``'s pure pieces (validation, pseudonym, HLC, merge).
Tests compare the agents' replies, InfluxDB and the hub's API against it point by point.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from protocol import (
    HybridClock,
    Scalar,
    SchemaError,
    SignalIn,
    TwinState,
    check_signal_value,
    pseudonymize,
    signal_spec,
)

from ._errors import SimulationError
from ._fleet import Fleet

__all__ = ["GroundTruth", "Outcome", "Point", "normalise_value"]

#: (brand, device, twin, ts_ns, field, value): exactly one InfluxDB point.
Point = tuple[str, str, str, int, str, Scalar]
#: (firmware seq, status, reason): the agent's reply to one signal.
Outcome = tuple[int, Literal["accepted", "duplicate", "rejected"], str | None]

DEFAULT_MAX_SIGNAL_AGE_MS = 7 * 86_400_000
DEFAULT_MAX_CLOCK_AHEAD_MS = 300_000


@dataclass
class GroundTruth:
    """Expected replies, points and twin states of one fleet run."""

    brand: str
    #: every point measurement ``twin`` must hold, nothing more
    expected_points: set[Point] = field(default_factory=set)
    #: device id -> one outcome per signal sent, in sending order
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    #: twin id -> the merged state of all its ops
    twins: dict[str, TwinState] = field(default_factory=dict)
    #: every raw subject id (for privacy scans: none may appear outside a device)
    subjects: list[str] = field(default_factory=list)
    #: raw subject -> twin id
    twin_of: dict[str, str] = field(default_factory=dict)
    #: device id -> the signals the outcomes refer to (not a copy: the fleet's lists)
    signals: dict[str, Sequence[SignalIn]] = field(default_factory=dict)
    #: device id -> signal indices before which the device reboots
    reboots: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def compute(
        cls,
        fleet: Fleet,
        brand_key: bytes,
        epoch: int,
        *,
        now_ms: int,
        max_signal_age_ms: int = DEFAULT_MAX_SIGNAL_AGE_MS,
        max_clock_ahead_ms: int = DEFAULT_MAX_CLOCK_AHEAD_MS,
        devices: Iterable[str] | None = None,
    ) -> GroundTruth:
        """Apply the agent's per-signal rules to the fleet's streams (or only ``devices``).

        ``now_ms`` stands for the agents' wall clock during the run: every signal must be
        judged against the same window, so run within a few minutes of computing.
        """
        wanted = None if devices is None else set(devices)
        streams = {
            d.device_id: fleet.signals(d.device_id)
            for d in fleet.devices
            if wanted is None or d.device_id in wanted
        }
        truth = cls.from_signals(
            fleet.spec.brand,
            streams,
            brand_key,
            epoch,
            now_ms=now_ms,
            max_signal_age_ms=max_signal_age_ms,
            max_clock_ahead_ms=max_clock_ahead_ms,
            subjects=[c.subject for c in fleet.customers],
        )
        truth.reboots = {d: list(fleet.reboots(d)) for d in streams}
        return truth

    @classmethod
    def from_signals(
        cls,
        brand: str,
        streams: Mapping[str, Sequence[SignalIn]],
        brand_key: bytes,
        epoch: int,
        *,
        now_ms: int,
        max_signal_age_ms: int = DEFAULT_MAX_SIGNAL_AGE_MS,
        max_clock_ahead_ms: int = DEFAULT_MAX_CLOCK_AHEAD_MS,
        subjects: Iterable[str] = (),
    ) -> GroundTruth:
        """Ground truth of hand-made streams: device id -> signals in sending order."""
        truth = cls(brand, subjects=list(subjects))
        for subject in truth.subjects:
            truth.twin_of[subject] = pseudonymize(brand_key, epoch, subject)
        window = (now_ms - max_signal_age_ms, now_ms + max_clock_ahead_ms)
        for device_id, signals in streams.items():
            truth.signals[device_id] = signals
            truth._device(device_id, signals, brand_key, epoch, window)
        return truth

    def _device(
        self,
        device_id: str,
        signals: Sequence[SignalIn],
        brand_key: bytes,
        epoch: int,
        window: tuple[int, int],
    ) -> None:
        clock = HybridClock()
        last_seq = -1
        last: dict[tuple[str, str], Scalar] = {}
        outcomes = self.outcomes.setdefault(device_id, [])
        for sig in signals:
            if sig.seq <= last_seq:  # rule 1: duplicate, nothing else happens
                outcomes.append((sig.seq, "duplicate", None))
                continue
            last_seq = sig.seq  # the seq is consumed even if the signal is rejected
            try:  # rule 2: name, value, then timestamp
                spec = signal_spec(sig.name)
                value = check_signal_value(spec, sig.value)
            except SchemaError as exc:
                outcomes.append((sig.seq, "rejected", exc.reason))
                continue
            if not window[0] <= sig.ts <= window[1]:
                outcomes.append((sig.seq, "rejected", "timestamp"))
                continue
            outcomes.append((sig.seq, "accepted", None))  # rule 3
            twin = self.twin_of.get(sig.subject)
            if twin is None:
                twin = self.twin_of[sig.subject] = pseudonymize(brand_key, epoch, sig.subject)
                self.subjects.append(sig.subject)
            hlc = clock.stamp(sig.ts)
            key = (twin, spec.field)
            new: Scalar
            if spec.kind == "counter":
                zero: Scalar = 0.0 if spec.type == "float" else 0
                new = last.get(key, zero) + value  # type: ignore[operator]
            elif key in last and last[key] == value:
                continue
            else:
                new = value
            last[key] = new
            if not spec.shared:
                continue  # rule 4: kept on the device (data minimisation), never sent
            self.expected_points.add((self.brand, device_id, twin, hlc.to_ns(), spec.field, new))
            self.twins.setdefault(twin, TwinState()).apply(device_id, hlc.pack(), spec.field, new)

    def twin_values(self, twin: str) -> dict[str, Scalar]:
        """Expected merged values of one twin (what the hub's API must return)."""
        try:
            return self.twins[twin].values()
        except KeyError:
            raise SimulationError(f"no twin {twin!r} in the ground truth") from None

    def counts(self) -> dict[str, int]:
        """Signals by outcome: accepted, duplicate, rejected, and ``rejected:<reason>``."""
        c: Counter[str] = Counter()
        for outcomes in self.outcomes.values():
            for _, status, reason in outcomes:
                c[status] += 1
                if reason:
                    c[f"rejected:{reason}"] += 1
        return dict(sorted(c.items()))

    def device_points(self, device_id: str) -> set[Point]:
        """The points one device must have produced."""
        return {p for p in self.expected_points if p[1] == device_id}

    # -- files ---------------------------------------------------------------------------
    def write(self, directory: Path) -> None:
        """Write signals.jsonl, points.jsonl, twins.json and summary.json to ``directory``.

        signals.jsonl holds raw subjects (it is the firmware's input); keep it with the
        same care as real customer data.
        """
        from ._files import write_truth

        write_truth(self, Path(directory))

    @classmethod
    def load(cls, directory: Path) -> GroundTruth:
        """Read what :meth:`write` wrote; twin states are rebuilt from the points."""
        from ._files import read_truth

        return read_truth(cls, Path(directory))


def normalise_value(field_type: str, value: Any) -> Any:
    """InfluxDB JSON gives 21 for the float 21.0: compare in the catalog's type."""
    if field_type == "float" and not isinstance(value, bool):
        return float(value)
    return value
