"""A simulated fleet: households, customers with personas, devices, and their signals.

Everything is a pure function of :class:`FleetSpec` (seed included): the same spec gives
the same customers, devices and signal streams, value for value. Signals of one device
are in emission order with strictly increasing firmware ``seq`` (a duplicate send repeats
an earlier seq), exactly what real firmware hands the agent. Faults (glitched values,
absurd timestamps, clock skew, duplicate sends, reboots) are injected per
:class:`FaultSpec`.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from protocol import CATALOG, PRODUCTS, Scalar, SignalIn, check_brand, check_device

from ._errors import SimulationError
from ._personas import FIRST_NAMES, LAST_NAMES, PERSONAS, Persona
from ._products import GENERATORS, Stream

__all__ = ["DAY_MS", "Customer", "FaultSpec", "Fleet", "FleetSpec", "SimDevice"]

#: One simulated day in milliseconds.
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
YEAR_2100_MS = 4_102_444_800_000


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

    def __post_init__(self) -> None:
        for name in ("glitch_rate", "absurd_ts_rate", "duplicate_rate", "skew_fraction"):
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
        )


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate. ``start_ms`` defaults to now − 2 days, rounded to the minute."""

    seed: int = 7
    devices: int = 100
    days: float = 1.0
    start_ms: int | None = None
    brand: str = "acme"
    #: share of customers whose usage decays from a churn time on
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
    """A person twinned by the brand. ``subject`` is the raw id that must never leave devices."""

    subject: str
    household: int
    persona: str
    churner: bool
    #: when usage starts to decay, Unix ms (None: never)
    churn_ms: int | None
    #: the same, in days since the window start (None: never)
    churn_day: float | None = None


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
        c = self._by_subject[subject]
        if c.churn_ms is None or ts < c.churn_ms:
            return 1.0
        return math.exp(-(ts - c.churn_ms) / (DAY_MS / 3))

    def _build(self, dev: SimDevice) -> None:
        rng = random.Random(f"device:{self.spec.seed}:{dev.device_id}")
        stream = Stream(rng, self.start_ms, self.end_ms, dev.users, self.persona, self._decay)
        GENERATORS[dev.product](stream)
        stream.events.sort(key=lambda e: e[0])
        self._finish(dev, stream)

    def _finish(self, dev: SimDevice, s: Stream) -> None:
        """Apply skew, inject faults, number the stream."""
        f = self.spec.faults
        rng = s.rng
        out: list[SignalIn] = []
        reboots: list[int] = []
        seq = 0
        reboot_p = f.reboots_per_day * self.spec.days / max(1, len(s.events))

        def send(ts: int, name: str, value: Scalar, subject: str) -> None:
            nonlocal seq
            seq += 1
            out.append(SignalIn(seq=seq, ts=ts, subject=subject, name=name, value=value))

        for ts, name, value, subject in s.events:
            if out and rng.random() < reboot_p:
                reboots.append(len(out))
            if rng.random() < f.glitch_rate:
                send(ts + dev.skew_ms, *_glitch(rng, name, value), subject)
            if rng.random() < f.absurd_ts_rate:
                send(rng.choice((0, YEAR_2100_MS)), name, value, subject)
            send(ts + dev.skew_ms, name, value, subject)
            if rng.random() < f.duplicate_rate:  # a re-send of one of the last few signals
                out.append(out[-rng.randint(1, min(3, len(out)))])
        self._signals[dev.device_id] = out
        self._reboots[dev.device_id] = reboots


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
