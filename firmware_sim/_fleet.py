"""A simulated fleet: households, customers with personas, devices, and their signals.

Everything is a pure function of :class:`FleetSpec` (seed included): the same spec gives
the same customers, devices and signal streams, value for value. Signals of one device
are in emission order with strictly increasing firmware ``seq`` (a duplicate send repeats
an earlier seq), exactly what real firmware hands the agent. Faults (glitched values,
absurd timestamps, clock skew, duplicate sends, reboots, and valid but implausible
readings: injected anomalies) are injected per :class:`FaultSpec`.

Ground truth for models: every :class:`Customer` carries its persona and, for churners,
the churn date with a 21-day disengagement precursor (:meth:`Customer.engagement`);
:meth:`Fleet.anomalies` names the firmware seqs of injected anomalies.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from protocol import CATALOG, PRODUCTS, Scalar, SignalIn, check_brand, check_device

from ._errors import SimulationError
from ._personas import FIRST_NAMES, LAST_NAMES, PERSONAS, Persona
from ._products import GENERATORS, Event, Stream

__all__ = [
    "CHURN_PRECURSOR_MS",
    "DAY_MS",
    "Customer",
    "FaultSpec",
    "Fleet",
    "FleetSpec",
    "SimDevice",
]

#: One simulated day in milliseconds.
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
YEAR_2100_MS = 4_102_444_800_000
#: How long before churning a churner's usage starts to decline.
CHURN_PRECURSOR_MS = 21 * DAY_MS
#: A churner's usage multiplier on the churn date (the end of the linear decline).
CHURN_FLOOR = 0.25
#: After the churn date the remaining usage decays with this time constant (~0 in a day).
CHURN_TAU_MS = DAY_MS // 3


@dataclass(frozen=True)
class FaultSpec:
    """How much trouble the fleet makes (rates per genuine signal unless said otherwise)."""

    #: extra signals with an out-of-range, NaN, wrong-type or unknown-name payload
    glitch_rate: float = 0.01
    #: extra signals stamped 1970-01-01 or 2100-01-01
    absurd_ts_rate: float = 0.002
    #: a recent signal sent again with the same firmware seq
    duplicate_rate: float = 0.005
    #: share of devices whose clock is off by a fixed offset
    skew_fraction: float = 0.1
    #: largest clock offset, either way. Keep it inside the agent's window: with the
    #: default start (now - 2 days) and 1 day simulated, a +2 h clock is still in the past
    max_skew_ms: int = 2 * HOUR_MS
    #: per device and simulated day: the runner restarts the agent there
    reboots_per_day: float = 0.5
    #: per genuine gauge signal: an extra, valid but implausible reading (a large in-range
    #: jump from the device's recent value); see :meth:`Fleet.anomalies`
    anomaly_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "glitch_rate",
            "absurd_ts_rate",
            "duplicate_rate",
            "skew_fraction",
            "anomaly_rate",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SimulationError(f"FaultSpec.{name} must be in [0, 1]")
        if self.max_skew_ms < 0 or self.reboots_per_day < 0:
            raise SimulationError("FaultSpec.max_skew_ms and reboots_per_day must be >= 0")

    @classmethod
    def none(cls) -> FaultSpec:
        """A perfectly behaved fleet."""
        return cls(
            glitch_rate=0.0,
            absurd_ts_rate=0.0,
            duplicate_rate=0.0,
            skew_fraction=0.0,
            max_skew_ms=0,
            reboots_per_day=0.0,
            anomaly_rate=0.0,
        )


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate. ``start_ms`` defaults to now − 2 days, rounded to the minute."""

    seed: int = 7
    devices: int = 100
    days: float = 1.0
    start_ms: int | None = None
    brand: str = "acme"
    #: share of customers who churn (usage declines for 21 days, then stops)
    churn_fraction: float = 0.15
    faults: FaultSpec = field(default_factory=FaultSpec)

    def resolved_start(self) -> int:
        """The window start in Unix ms (wall clock based unless ``start_ms`` is set)."""
        if self.start_ms is not None:
            return self.start_ms
        now = time.time_ns() // 1_000_000
        return (now - 2 * DAY_MS) // 60_000 * 60_000


@dataclass(frozen=True)
class Customer:
    """A person twinned by the brand. ``subject`` is the raw id that must never leave devices.

    A churner disengages before churning, so churn can be predicted from usage: the usage
    multiplier (:meth:`engagement`) is 1 until ``disengage_ms`` (``churn_ms`` − 21 days),
    declines linearly to 0.25 at ``churn_ms`` (the day the customer churns: stops using
    the product), then decays exponentially (time constant 8 h) to ~0 within a day.
    ``disengage_ms`` may lie before the simulated window (the customer is then already
    declining when it starts). Non-churners have ``churn_ms = disengage_ms = None``.
    """

    subject: str
    household: int
    persona: str
    churner: bool
    #: the day the customer churns (stops using the product), Unix ms (None: never)
    churn_ms: int | None
    #: the same, in days since the window start (None: never)
    churn_day: float | None = None
    #: when usage starts to decline, ``churn_ms`` − 21 days (None: never); derived from
    #: ``churn_ms`` when not given
    disengage_ms: int | None = None

    def __post_init__(self) -> None:
        if self.churn_ms is None:
            if self.disengage_ms is not None:
                raise SimulationError("Customer.disengage_ms needs a churn_ms")
        elif self.disengage_ms is None:
            object.__setattr__(self, "disengage_ms", self.churn_ms - CHURN_PRECURSOR_MS)
        elif self.disengage_ms >= self.churn_ms:
            raise SimulationError("Customer.disengage_ms must be before churn_ms")

    def engagement(self, ts_ms: int) -> float:
        """The customer's usage multiplier at ``ts_ms`` (1.0: normal usage, ~0: churned)."""
        if self.churn_ms is None or self.disengage_ms is None or ts_ms < self.disengage_ms:
            return 1.0
        if ts_ms < self.churn_ms:
            done = (ts_ms - self.disengage_ms) / (self.churn_ms - self.disengage_ms)
            return 1.0 - (1.0 - CHURN_FLOOR) * done
        return CHURN_FLOOR * math.exp(-(ts_ms - self.churn_ms) / CHURN_TAU_MS)


@dataclass(frozen=True)
class SimDevice:
    """One device of a household, and who uses it (raw subjects, primary user first)."""

    device_id: str
    product: str
    household: int
    users: tuple[str, ...]
    #: fixed device clock offset in ms (0: accurate clock)
    skew_ms: int


class Fleet:
    """A generated fleet; signals are produced lazily per device and cached."""

    def __init__(
        self, spec: FleetSpec, customers: list[Customer], devices: list[SimDevice], start_ms: int
    ) -> None:
        self.spec = spec
        self.customers = customers
        self.devices = devices
        self.start_ms = start_ms
        self.end_ms = start_ms + int(spec.days * DAY_MS)
        self._by_subject = {c.subject: c for c in customers}
        self._signals: dict[str, list[SignalIn]] = {}
        self._reboots: dict[str, list[int]] = {}
        self._anomalies: dict[str, frozenset[int]] = {}

    @classmethod
    def generate(cls, spec: FleetSpec) -> Fleet:
        """Build households, customers and devices from ``spec`` (signals come lazily)."""
        check_brand(spec.brand)
        if spec.devices < 1 or spec.days <= 0:
            raise SimulationError("a fleet needs at least one device and a positive duration")
        if not 0.0 <= spec.churn_fraction <= 1.0:
            raise SimulationError("FleetSpec.churn_fraction must be in [0, 1]")
        rng = random.Random(f"fleet:{spec.seed}")
        start = spec.resolved_start()
        customers: list[Customer] = []
        devices: list[SimDevice] = []
        counters = dict.fromkeys(PRODUCTS, 0)
        personas = sorted(PERSONAS)
        products_all = sorted(PRODUCTS)
        household = 0
        while len(devices) < spec.devices:
            household += 1
            members = []
            for _ in range(rng.choice((1, 1, 2, 2, 3))):
                n = len(customers) + 1
                customers.append(cls._customer(rng, spec, start, household, n, personas))
                members.append(customers[-1].subject)
            k = min(rng.choice((1, 2, 2, 3, 4)), spec.devices - len(devices))
            products = rng.sample(products_all, k)
            if household <= len(products_all):  # the first households cover every product
                first = products_all[household - 1]
                products = [first, *[p for p in products if p != first]][:k]
            for product in products:
                counters[product] += 1
                users = tuple(members) if product != "wearable" else (rng.choice(members),)
                skew = _skew(rng, spec.faults)
                device_id = check_device(f"{product}-{counters[product]:04d}")
                devices.append(SimDevice(device_id, product, household, users, skew))
        return cls(spec, customers, devices, start)

    @staticmethod
    def _customer(
        rng: random.Random,
        spec: FleetSpec,
        start: int,
        household: int,
        n: int,
        personas: list[str],
    ) -> Customer:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        subject = (
            f"{first}.{last}.{n:04d}@example.com"
            if rng.random() < 0.7
            else f"LOY-{n:05d}-{rng.randrange(10**6):06d}"
        )
        persona = rng.choice(personas)
        # both draws always happen, so churn_fraction changes who churns, nothing else
        churns, day = (
            rng.random() < spec.churn_fraction,
            round(rng.uniform(0.3, 1.5) * spec.days, 4),
        )
        if churns:
            return Customer(subject, household, persona, True, start + int(day * DAY_MS), day)
        return Customer(subject, household, persona, False, None, None)

    @cached_property
    def device_map(self) -> dict[str, SimDevice]:
        """Devices by id."""
        return {d.device_id: d for d in self.devices}

    def customer(self, subject: str) -> Customer:
        """The customer behind a raw subject id."""
        return self._by_subject[subject]

    def persona(self, subject: str) -> Persona:
        """The persona of a customer."""
        return PERSONAS[self._by_subject[subject].persona]

    def signals(self, device_id: str) -> list[SignalIn]:
        """The device's signal stream, in emission order (faults included)."""
        if device_id not in self._signals:
            self._build(self._device(device_id))
        return self._signals[device_id]

    def reboots(self, device_id: str) -> list[int]:
        """Indices into :meth:`signals` before which the device reboots (agent restart)."""
        if device_id not in self._reboots:
            self._build(self._device(device_id))
        return self._reboots[device_id]

    def anomalies(self, device_id: str) -> frozenset[int]:
        """Firmware seqs (``SignalIn.seq``) of the device's injected anomaly readings.

        Each is an extra gauge signal that passes validation but jumps implausibly far
        from the device's recent genuine value (``FaultSpec.anomaly_rate``); a duplicate
        send of one repeats its seq. Empty when the rate is 0.
        """
        if device_id not in self._anomalies:
            self._build(self._device(device_id))
        return self._anomalies[device_id]

    def all_signals(self) -> dict[str, list[SignalIn]]:
        """Every device's stream, by device id, in device order."""
        return {d.device_id: self.signals(d.device_id) for d in self.devices}

    def describe(self) -> dict[str, Any]:
        """The fleet's labels as plain JSON data: spec, customers (personas, churn), devices."""
        return {
            "spec": asdict(self.spec) | {"start_ms": self.start_ms, "end_ms": self.end_ms},
            "customers": [asdict(c) for c in self.customers],
            "devices": [asdict(d) | {"users": list(d.users)} for d in self.devices],
        }

    # -- generation ----------------------------------------------------------------------
    def _device(self, device_id: str) -> SimDevice:
        try:
            return self.device_map[device_id]
        except KeyError:
            raise SimulationError(f"no device {device_id!r} in this fleet") from None

    def _decay(self, subject: str, ts: int) -> float:
        return self._by_subject[subject].engagement(ts)

    def _build(self, dev: SimDevice) -> None:
        rng = random.Random(f"device:{self.spec.seed}:{dev.device_id}")
        stream = Stream(rng, self.start_ms, self.end_ms, dev.users, self.persona, self._decay)
        GENERATORS[dev.product](stream)
        stream.events.sort(key=lambda e: e[0])
        self._finish(dev, stream)

    def _finish(self, dev: SimDevice, s: Stream) -> None:
        """Apply skew, inject faults and anomalies, number the stream."""
        f = self.spec.faults
        rng = s.rng
        out: list[SignalIn] = []
        reboots: list[int] = []
        anomalies: set[int] = set()
        seq = 0
        reboot_p = f.reboots_per_day * self.spec.days / max(1, len(s.events))
        # Anomalies come from their own generator and are merged in by time, so the rest
        # of the stream (values, faults, reboots) is the same whatever the anomaly rate.
        extra = self._anomaly_events(dev, s.events)
        k = 0

        def send(ts: int, name: str, value: Scalar, subject: str) -> None:
            nonlocal seq
            seq += 1
            out.append(SignalIn(seq=seq, ts=ts, subject=subject, name=name, value=value))

        for ts, name, value, subject in s.events:
            while k < len(extra) and extra[k][0] < ts:
                send(extra[k][0] + dev.skew_ms, *extra[k][1:])
                anomalies.add(seq)
                k += 1
            if out and rng.random() < reboot_p:
                reboots.append(len(out))
            if rng.random() < f.glitch_rate:
                send(ts + dev.skew_ms, *_glitch(rng, name, value), subject)
            if rng.random() < f.absurd_ts_rate:
                send(rng.choice((0, YEAR_2100_MS)), name, value, subject)
            send(ts + dev.skew_ms, name, value, subject)
            if rng.random() < f.duplicate_rate:  # a re-send of one of the last few signals
                out.append(out[-rng.randint(1, min(3, len(out)))])
        for ts, name, value, subject in extra[k:]:
            send(ts + dev.skew_ms, name, value, subject)
            anomalies.add(seq)
        self._signals[dev.device_id] = out
        self._reboots[dev.device_id] = reboots
        self._anomalies[dev.device_id] = frozenset(anomalies)

    def _anomaly_events(self, dev: SimDevice, events: list[Event]) -> list[Event]:
        """Injected anomalies: (true ts, name, value, subject), in time order.

        Each genuine gauge reading is followed, with probability ``anomaly_rate``, by an
        implausible one of the same signal and user, placed halfway (at most 2 minutes)
        towards the next genuine reading of that signal, so the recent genuine value
        before it is the one it jumps from.
        """
        rate = self.spec.faults.anomaly_rate
        if rate <= 0.0:
            return []
        rng = random.Random(f"anomaly:{self.spec.seed}:{dev.device_id}")
        next_same: dict[str, int] = {}
        after: list[int] = [0] * len(events)  # ts of the next reading of the same signal
        for i in range(len(events) - 1, -1, -1):
            name = events[i][1]
            after[i] = next_same.get(name, self.end_ms)
            next_same[name] = events[i][0]
        extra: list[Event] = []
        for i, (ts, name, value, subject) in enumerate(events):
            jump = _ANOMALIES.get(name)
            if jump is None or isinstance(value, bool | str) or rng.random() >= rate:
                continue
            at = ts + min((after[i] - ts) // 2, 2 * MINUTE_MS)
            extra.append((at, name, jump(rng, value), subject))
        extra.sort(key=lambda e: e[0])
        return extra


def _skew(rng: random.Random, faults: FaultSpec) -> int:
    """A device's fixed clock offset: 0, or minutes to ``max_skew_ms`` either way."""
    if faults.max_skew_ms == 0 or rng.random() >= faults.skew_fraction:
        return 0
    magnitude = rng.randint(min(60_000, faults.max_skew_ms), faults.max_skew_ms)
    return magnitude * rng.choice((-1, 1))


def _glitch(rng: random.Random, name: str, value: Scalar) -> tuple[str, Scalar]:
    """A corrupted version of a signal: (name, value) that the agent must reject."""
    spec = CATALOG[name]
    kind = rng.randrange(10)
    if kind == 0:
        return f"{name}_v2", value  # unknown signal name
    if spec.type in ("bool", "str"):
        return name, (12345 if kind % 2 else "turbo" if spec.choices else 1)
    if kind < 4:
        return name, "glitch"  # wrong type
    if kind < 6 and spec.type == "float":
        return name, math.nan
    bound = spec.maximum if spec.maximum is not None else 1e6
    big = bound * 10 + 1
    return name, (int(big) if spec.type == "int" else float(big)) * rng.choice((-1, 1))


def _clip(name: str, value: float) -> float:
    spec = CATALOG[name]
    lo = spec.minimum if spec.minimum is not None else -math.inf
    hi = spec.maximum if spec.maximum is not None else math.inf
    return float(max(lo, min(hi, value)))


def _temperature(rng: random.Random, value: float) -> Scalar:
    """A room 8-15 °C off its last reading within minutes."""
    jump = rng.uniform(8.0, 15.0) * rng.choice((-1, 1))
    return round(_clip("thermostat.temperature_c", value + jump), 1)


def _setpoint(rng: random.Random, value: float) -> Scalar:
    """A setpoint 8-12 °C off (away from the range edge the jump would cross)."""
    up = value + 12.0 <= 35.0 and (value - 12.0 < 5.0 or rng.random() < 0.5)
    jump = rng.uniform(8.0, 12.0) * (1 if up else -1)
    return round(_clip("thermostat.setpoint_c", value + jump), 1)


def _heart_rate(rng: random.Random, value: float) -> Scalar:
    """170-230 bpm out of the blue (at least 70 above the last reading)."""
    return int(_clip("wearable.heart_rate_bpm", max(rng.randint(170, 230), value + 70)))


def _water_level(rng: random.Random, value: float) -> Scalar:
    """The tank 40-60 points fuller (emptier when that would overflow) without a refill."""
    jump = rng.uniform(40.0, 60.0)
    return round(_clip("coffee.water_level_pct", value + jump if value <= 40 else value - jump), 1)


def _volume(rng: random.Random, value: float) -> Scalar:
    """Volume to 90-100 from below 50 (to 0-10 from 50 and above)."""
    return rng.randint(90, 100) if value < 50 else rng.randint(0, 10)


#: gauge signal -> (rng, recent genuine value) -> implausible but valid value
_ANOMALIES: dict[str, Callable[[random.Random, float], Scalar]] = {
    "thermostat.temperature_c": _temperature,
    "thermostat.setpoint_c": _setpoint,
    "wearable.heart_rate_bpm": _heart_rate,
    "coffee.water_level_pct": _water_level,
    "tv.volume": _volume,
}
