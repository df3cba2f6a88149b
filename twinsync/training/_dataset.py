"""Training and evaluation rows from a simulated fleet, through the agent's own feature code.

Signals are replayed per device in time order exactly as an agent accepts them (invalid
ones skipped), into :class:`protocol.FeatureState` per customer and
:class:`protocol.SignalBaseline` per gauge; feature vectors are snapshotted at cut-off
times. Labels come from firmware_sim's ground truth (personas, churn dates, injected
anomalies), which a real fleet does not have: that is what the simulator is for.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from firmware_sim import Fleet, SimDevice
from protocol import (
    FeatureState,
    SchemaError,
    SignalBaseline,
    check_signal_value,
    is_baselined,
    signal_spec,
)

__all__ = ["AnomalyRows", "CustomerRows", "anomaly_rows", "customer_rows"]

DAY_MS = 86_400_000


@dataclass
class CustomerRows:
    """Feature vectors of (device, customer) pairs of one product at cut-off times."""

    product: str
    x: list[list[float]] = field(default_factory=list)
    persona: list[str] = field(default_factory=list)
    #: days from the cut-off until the customer churns (None: does not churn in the data)
    days_to_churn: list[float | None] = field(default_factory=list)
    subject: list[str] = field(default_factory=list)
    cutoff_ms: list[int] = field(default_factory=list)


@dataclass
class AnomalyRows:
    """One row per gauge reading: anomaly features and whether it was injected."""

    x: list[list[float]] = field(default_factory=list)
    injected: list[bool] = field(default_factory=list)


def _accepted(
    fleet: Fleet, device_id: str
) -> Iterable[tuple[str, int, str, float | int | str | bool, int]]:
    """(name, true ts, subject, value, seq) of the signals an agent accepts, in time order."""
    skew = fleet.device_map[device_id].skew_ms
    rows = []
    seen: set[int] = set()
    for s in fleet.signals(device_id):
        if s.seq in seen:  # a duplicate send: the agent answers "duplicate" and moves on
            continue
        seen.add(s.seq)
        try:
            value = check_signal_value(signal_spec(s.name), s.value)
        except SchemaError:
            continue
        ts = s.ts - skew
        if not fleet.start_ms <= ts < fleet.end_ms:
            continue
        rows.append((s.name, ts, s.subject, value, s.seq))
    rows.sort(key=lambda r: r[1])
    return rows


def customer_rows(
    fleet: Fleet,
    product: str,
    cutoffs: Iterable[int],
    *,
    before_churn_days: float | None = None,
    min_history_days: float = 7.0,
    active_only: bool = False,
    devices: Collection[SimDevice] | None = None,
) -> CustomerRows:
    """Vectors of every customer of every ``product`` device at each cut-off time.

    With ``before_churn_days``, churners get one extra snapshot that many days before
    their churn date (the evaluation point of the churn model), if that lies inside the
    simulated window: after its end every device falls silent, which would look like
    churn. ``active_only`` leaves out customers who have started to disengage (segments
    describe habits they no longer have). ``devices``: only these of the fleet's devices.
    """
    out = CustomerRows(product)
    base_cutoffs = sorted(cutoffs)
    for dev in fleet.devices:
        if dev.product != product or (devices is not None and dev not in devices):
            continue
        states: dict[str, FeatureState] = {}
        points: list[tuple[int, str | None]] = [(t, None) for t in base_cutoffs]
        if before_churn_days is not None:
            for subject in dev.users:
                churn = fleet.customer(subject).churn_ms
                if churn is None:
                    continue
                at = churn - int(before_churn_days * DAY_MS)
                if fleet.start_ms <= at < fleet.end_ms:
                    points.append((at, subject))
        points.sort(key=lambda p: p[0])
        signals = list(_accepted(fleet, dev.device_id))
        i = 0
        for cut, only in points:
            while i < len(signals) and signals[i][1] < cut:
                name, ts, subject, value, _seq = signals[i]
                state = states.get(subject)
                if state is None:
                    state = states[subject] = FeatureState(product)
                state.update(name, ts, value)
                i += 1
            for subject, fs in states.items():
                if only is not None and subject != only:
                    continue
                if fs.first_ms is None or cut - fs.first_ms < min_history_days * DAY_MS:
                    continue
                customer = fleet.customer(subject)
                if (
                    active_only
                    and customer.disengage_ms is not None
                    and cut >= customer.disengage_ms
                ):
                    continue  # winding down: no longer shows the habits of a segment
                out.x.append(fs.vector(cut))
                out.persona.append(customer.persona)
                out.days_to_churn.append(
                    None if customer.churn_ms is None else (customer.churn_ms - cut) / DAY_MS
                )
                out.subject.append(subject)
                out.cutoff_ms.append(cut)
    return out


def anomaly_rows(
    fleet: Fleet,
    products: Iterable[str] | None = None,
    devices: Collection[SimDevice] | None = None,
) -> AnomalyRows:
    """Every accepted gauge reading of the fleet (or of ``devices``), labelled."""
    wanted = set(products) if products is not None else None
    out = AnomalyRows()
    for dev in fleet.devices:
        if wanted is not None and dev.product not in wanted:
            continue
        if devices is not None and dev not in devices:
            continue
        injected = fleet.anomalies(dev.device_id)
        baselines: dict[str, SignalBaseline] = {}
        for name, _ts, _subject, value, seq in _accepted(fleet, dev.device_id):
            if not is_baselined(name) or isinstance(value, bool | str):
                continue
            baseline = baselines.get(name)
            if baseline is None:
                baseline = baselines[name] = SignalBaseline(name)
            out.x.append(baseline.observe(float(value)))
            out.injected.append(seq in injected)
    return out
