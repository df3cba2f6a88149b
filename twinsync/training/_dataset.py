"""Training and evaluation rows from a simulated fleet, through the agent's own feature code.

Signals are replayed per device as its agent sees them: its own (skewed, drifting)
clock, its losses and outages, its household's time zone, duplicates and invalid
signals dropped as the agent drops them. Nothing is corrected with what only the
simulator knows (true clock offsets, true event times). Each device gets one
:class:`protocol.Coverage`, its customers one :class:`protocol.FeatureState` each and its
gauges one :class:`protocol.SignalBaseline` each, exactly as in
``edge_agent._infer.ModelRunner``; feature vectors are snapshotted at cut-off times of
the device's clock. Labels come from firmware_sim's ground truth (:mod:`._truth`),
which a real fleet does not have: that is what the simulator is for.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from firmware_sim import ChurnSpec, Fleet, SimDevice
from protocol import (
    Coverage,
    FeatureState,
    LocalTime,
    Scalar,
    SchemaError,
    SignalBaseline,
    check_signal_value,
    is_baselined,
    signal_spec,
)

from ._truth import Truth, device_zone

__all__ = [
    "COUNT_DAYS",
    "AnomalyRows",
    "CustomerRows",
    "Replayed",
    "anomaly_rows",
    "customer_rows",
    "replay",
    "segment_rows",
]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# The agent refuses signals stamped far from its clock (1970, 2100); the simulator's
# skewed and drifting clocks stay within this of the window.
_CLOCK_MARGIN_MS = 2 * DAY_MS
# A device that reports on its own and said nothing for this long is off: its agent
# scores nobody then, so there is no row.
_OFF_AFTER_MS = HOUR_MS
#: whole days of reported uses each customer row carries for the count ceiling (the
#: feature window: a model sees no further back, but for the usual rate)
COUNT_DAYS = 28


@dataclass
class CustomerRows:
    """Feature vectors of (device, customer) pairs of one product at cut-off times."""

    product: str
    x: list[list[float]] = field(default_factory=list)
    persona: list[str] = field(default_factory=list)
    #: days from the cut-off until the customer churns this product (None: not in the data)
    days_to_churn: list[float | None] = field(default_factory=list)
    subject: list[str] = field(default_factory=list)
    device: list[str] = field(default_factory=list)
    cutoff_ms: list[int] = field(default_factory=list)
    #: the customer's true engagement with the product at the cut-off (ground truth:
    #: 1.0 unless winding down; the churn ceiling, never a model input)
    engagement: list[float] = field(default_factory=list)
    #: how plainly the device shows the customer's persona (ground truth:
    #: :meth:`._truth.Truth.segment_group`)
    group: list[str] = field(default_factory=list)
    #: uses the device reported for the customer in each of the :data:`COUNT_DAYS` whole
    #: days (24 h on the device's clock) before the cut-off, the latest first: what the
    #: count ceiling (:mod:`._count_ceiling`) sees; never a model input
    daily_uses: list[list[int]] = field(default_factory=list)
    #: the customer's usual uses per day on the device (ground truth: their reported
    #: uses over the whole window before they started to wind down, per day of it)
    usual_rate: list[float] = field(default_factory=list)
    #: how the fleet's customers churn (the count ceiling's prior over ramps)
    churn_spec: ChurnSpec | None = None

    def extend(self, other: CustomerRows) -> None:
        """Append ``other``'s rows (another fleet's of the same product)."""
        assert other.product == self.product
        if self.churn_spec is None:
            self.churn_spec = other.churn_spec
        for name in ("x", "persona", "days_to_churn", "subject", "device", "cutoff_ms",
                     "engagement", "group", "daily_uses", "usual_rate"):  # fmt: skip
            getattr(self, name).extend(getattr(other, name))


_COLUMNS = ("x", "injected", "size", "kind", "episode", "event", "signal", "device", "ts")


@dataclass
class AnomalyRows:
    """One row per gauge reading: anomaly features, and what the simulator knows of it."""

    x: list[list[float]] = field(default_factory=list)
    injected: list[bool] = field(default_factory=list)
    #: size class of an injected anomaly ("" for a genuine reading)
    size: list[str] = field(default_factory=list)
    #: kind of an injected anomaly ("" for a genuine reading)
    kind: list[str] = field(default_factory=list)
    #: the anomaly a reading belongs to ("<device>:<episode>"; "" for a genuine one): a
    #: level shift or a stuck sensor spans many readings
    episode: list[str] = field(default_factory=list)
    #: a genuine large event (not an anomaly: a window opened, a refill)
    event: list[bool] = field(default_factory=list)
    signal: list[str] = field(default_factory=list)
    device: list[str] = field(default_factory=list)
    #: the reading's time on the device's clock (ms): alerts group readings by it
    ts: list[int] = field(default_factory=list)
    #: anomalies none of whose readings the anomaly model scores (out-of-pattern brews
    #: or TV sessions: no gauge), episode -> (size, kind); they count as missed
    unscored: dict[str, tuple[str, str]] = field(default_factory=dict)

    def extend(self, other: AnomalyRows) -> None:
        """Append ``other``'s rows (another fleet's: episodes are keyed by device)."""
        for name in _COLUMNS:
            getattr(self, name).extend(getattr(other, name))
        self.unscored.update(other.unscored)


@dataclass(frozen=True)
class Replayed:
    """A signal as the agent accepts it: device-clock time, subject, value, firmware seq."""

    name: str
    ts: int
    subject: str
    value: Scalar
    seq: int


def replay(fleet: Fleet, device_id: str) -> list[Replayed]:
    """The signals an agent accepts from the device, ordered by the device's clock."""
    rows = []
    last_seq = 0
    low, high = fleet.start_ms - _CLOCK_MARGIN_MS, fleet.end_ms + _CLOCK_MARGIN_MS
    for s in fleet.signals(device_id):
        if s.seq <= last_seq:  # a duplicate send: the agent answers "duplicate"
            continue
        last_seq = s.seq
        try:
            value = check_signal_value(signal_spec(s.name), s.value)
        except SchemaError:
            continue
        if not low <= s.ts < high:
            continue  # stamped far from the device's clock: refused as "timestamp"
        rows.append(Replayed(s.name, s.ts, s.subject, value, s.seq))
    rows.sort(key=lambda r: r.ts)  # stable: emission order within a millisecond
    return rows


def customer_rows(
    fleet: Fleet,
    product: str,
    cutoffs: Iterable[int],
    *,
    before_churn_days: Iterable[float] = (),
    min_history_days: float = 7.0,
    devices: Collection[SimDevice] | None = None,
) -> CustomerRows:
    """Vectors of every customer of every ``product`` device at each cut-off time.

    Cut-offs are times of the device's clock (the agent scores on it). With
    ``before_churn_days``, churners also get one snapshot that many days (each value)
    before their churn of this product, if that lies inside the simulated window: after
    its end every device falls silent, which would look like churn. ``devices``: only
    these of the fleet's devices. A device that reports on its own but said nothing in
    the hour before a cut-off is off, and gives no row then (its agent is not running).
    """
    truth = Truth(fleet)
    out = CustomerRows(product, churn_spec=fleet.spec.churn)
    leads = sorted(set(before_churn_days))
    base = sorted(cutoffs)
    for dev in _devices(fleet, product, devices):
        points: list[tuple[int, str | None]] = [(t, None) for t in base]
        for subject in dev.users:
            churn = truth.churn_ms(subject, product)
            for lead in leads if churn is not None else ():
                at = churn - int(lead * DAY_MS)  # type: ignore[operator]
                if fleet.start_ms <= at < fleet.end_ms:
                    points.append((at, subject))
        off = truth.reports_while_on(product)
        _snapshots(fleet, truth, dev, points, min_history_days, out, skip_off=off)
    return out


def segment_rows(
    fleet: Fleet,
    product: str,
    *,
    min_history_days: float = 14.0,
    devices: Collection[SimDevice] | None = None,
) -> CustomerRows:
    """One vector per customer of every ``product`` device, the latest while active.

    At the window's end, or just before the customer started to wind the product down
    (a segment describes habits; a churner's last weeks no longer show theirs). Taken
    whether or not the device is on then: it is the latest vector the agent computed,
    which the hub holds.
    """
    truth = Truth(fleet)
    out = CustomerRows(product)
    for dev in _devices(fleet, product, devices):
        points: list[tuple[int, str | None]] = []
        for subject in dev.users:
            at = fleet.end_ms
            while at > fleet.start_ms and truth.disengaging(subject, product, at - 1):
                at -= DAY_MS  # back to the last day before the decline
            points.append((at, subject))
        _snapshots(fleet, truth, dev, points, min_history_days, out, skip_off=False)
    return out


def _devices(
    fleet: Fleet, product: str, devices: Collection[SimDevice] | None
) -> Iterable[SimDevice]:
    for dev in fleet.devices:
        if dev.product == product and (devices is None or dev in devices):
            yield dev


def _snapshots(
    fleet: Fleet,
    truth: Truth,
    dev: SimDevice,
    points: list[tuple[int, str | None]],
    min_history_days: float,
    out: CustomerRows,
    *,
    skip_off: bool,
) -> None:
    """Replay ``dev`` as its agent would and snapshot at each (time, subject or all)."""
    clock = LocalTime(device_zone(dev))
    coverage = Coverage(clock)
    states: dict[str, FeatureState] = {}
    points.sort(key=lambda p: p[0])
    signals = replay(fleet, dev.device_id)
    # Every use the device reported, per customer (for the count ceiling's truth).
    uses: dict[str, list[int]] = {}
    first_row = len(out.x)
    i, last_ts = 0, None

    def feed(s: Replayed) -> None:
        coverage.observe(s.ts)
        state = states.get(s.subject)
        if state is None:
            state = states[s.subject] = FeatureState(out.product, clock, coverage)
        before = state.last_use_ms
        state.update(s.name, s.ts, s.value)
        if state.last_use_ms != before:
            uses.setdefault(s.subject, []).append(s.ts)

    for cut, only in points:
        while i < len(signals) and signals[i].ts < cut:
            feed(signals[i])
            last_ts = signals[i].ts
            i += 1
        if skip_off and (last_ts is None or cut - last_ts > _OFF_AFTER_MS):
            continue
        for subject, fs in states.items():
            if only is not None and subject != only:
                continue
            if fs.first_ms is None or cut - fs.first_ms < min_history_days * DAY_MS:
                continue
            churn = truth.churn_ms(subject, out.product)
            out.x.append(fs.vector(cut))
            out.persona.append(truth.persona(subject))
            out.days_to_churn.append(None if churn is None else (churn - cut) / DAY_MS)
            out.subject.append(subject)
            out.device.append(dev.device_id)
            out.cutoff_ms.append(cut)
            out.engagement.append(truth.engagement(subject, out.product, cut))
            out.group.append(truth.segment_group(subject, dev.device_id))
    for s in signals[i:]:
        feed(s)
    _count_truth(fleet, truth, uses, out, first_row)


def _count_truth(
    fleet: Fleet, truth: Truth, uses: dict[str, list[int]], out: CustomerRows, first: int
) -> None:
    """Fill ``daily_uses`` and ``usual_rate`` of the rows from ``first`` on (one device)."""
    rates: dict[str, float] = {}
    for subject, times in uses.items():
        until = min(fleet.end_ms, truth.disengage_ms(subject, out.product) or fleet.end_ms)
        days = (until - fleet.start_ms) / DAY_MS
        rates[subject] = bisect_left(times, until) / days if days > 0 else 0.0
    for row in range(first, len(out.x)):
        times, cut = uses.get(out.subject[row], []), out.cutoff_ms[row]
        edges = [bisect_left(times, cut - d * DAY_MS) for d in range(COUNT_DAYS + 1)]
        out.daily_uses.append([edges[d] - edges[d + 1] for d in range(COUNT_DAYS)])
        out.usual_rate.append(rates.get(out.subject[row], 0.0))


def anomaly_rows(
    fleet: Fleet,
    products: Iterable[str] | None = None,
    devices: Collection[SimDevice] | None = None,
) -> AnomalyRows:
    """Every accepted gauge reading of the fleet (or of ``devices``), labelled."""
    truth = Truth(fleet)
    wanted = set(products) if products is not None else None
    out = AnomalyRows()
    for dev in fleet.devices:
        if wanted is not None and dev.product not in wanted:
            continue
        if devices is not None and dev not in devices:
            continue
        labels = truth.anomalies(dev.device_id)
        events = truth.genuine_events(dev.device_id)
        clock = LocalTime(device_zone(dev))
        baselines: dict[str, SignalBaseline] = {}
        for s in replay(fleet, dev.device_id):
            if not is_baselined(s.name) or isinstance(s.value, bool | str):
                continue
            baseline = baselines.get(s.name)
            if baseline is None:
                baseline = baselines[s.name] = SignalBaseline(s.name, clock)
            out.x.append(baseline.observe(float(s.value), s.ts))
            label = labels.get(s.seq)
            out.injected.append(label is not None)
            out.size.append(label[0] if label is not None else "")
            out.kind.append(label[1] if label is not None else "")
            out.episode.append(f"{dev.device_id}:{label[2]}" if label is not None else "")
            out.event.append(s.seq in events)
            out.signal.append(s.name)
            out.device.append(dev.device_id)
            out.ts.append(s.ts)
        scored = set(out.episode)
        for size, kind, episode in labels.values():
            key = f"{dev.device_id}:{episode}"
            if key not in scored:
                out.unscored[key] = (size, kind)
    return out
