"""A simulated fleet: households, customers with personas, devices, and their signals.

Everything is a pure function of :class:`FleetSpec` (seed included): the same spec gives
the same customers, devices and signal streams, value for value. Signals of one device
are in emission order with strictly increasing firmware ``seq`` (a duplicate send repeats
an earlier seq), exactly what real firmware hands the agent, stamped by the device's own
clock (skewed and drifting, never corrected).

A device's stream is made in stages: its product's generator (habits on the household's
local clock, churn, life, seasons, genuine large events), sensor noise and drift,
injected anomalies, outages and loss, attribution on shared devices, then firmware
faults (glitched values, absurd timestamps, duplicate sends, reboots) and the clock.
:meth:`Fleet.truth` says what each stage did.
"""

from __future__ import annotations

import gc
import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from functools import cached_property
from typing import Any

from protocol import CATALOG, Scalar, SignalIn, check_brand

from ._anomalies import Extra, inject, legacy_spikes, next_at_hour, quiet_hour
from ._errors import SimulationError
from ._labels import AnomalyLabel, DeviceClock, DeviceTruth, GenuineEvent
from ._life import Life
from ._personas import ALL_PERSONAS, Persona
from ._population import Customer, Household, SimDevice, populate
from ._products import GENERATORS, Event, Stream
from ._sensors import drifts, drop, outages, perturb
from ._spec import DAY_MS, FleetSpec
from ._zones import LocalClock

__all__ = ["Fleet"]

YEAR_2100_MS = 4_102_444_800_000
_QUIET = Life()


class Fleet:
    """A generated fleet; signals are produced lazily per device and cached."""

    def __init__(
        self,
        spec: FleetSpec,
        customers: list[Customer],
        devices: list[SimDevice],
        start_ms: int,
        households: list[Household] | None = None,
        habits: dict[str, Persona] | None = None,
    ) -> None:
        self.spec = spec
        self.customers = customers
        self.devices = devices
        self.start_ms = start_ms
        self.end_ms = start_ms + int(spec.days * DAY_MS)
        n = max((c.household for c in customers), default=0)
        self.households = households or [Household(h) for h in range(1, n + 1)]
        self._by_subject = {c.subject: c for c in customers}
        self._habits = habits or {c.subject: ALL_PERSONAS[c.persona] for c in customers}
        self._life = {c.subject: Life(c.life) for c in customers if c.life}
        self._clocks: dict[str, LocalClock] = {}
        self._signals: dict[str, list[SignalIn]] = {}
        self._reboots: dict[str, list[int]] = {}
        self._truth: dict[str, DeviceTruth] = {}
        self._anomalies: dict[str, frozenset[int]] = {}

    @classmethod
    def generate(cls, spec: FleetSpec) -> Fleet:
        """Build households, customers and devices from ``spec`` (signals come lazily)."""
        check_brand(spec.brand)
        if spec.devices < 1 or spec.days <= 0:
            raise SimulationError("a fleet needs at least one device and a positive duration")
        if not 0.0 <= spec.churn_fraction <= 1.0:
            raise SimulationError("FleetSpec.churn_fraction must be in [0, 1]")
        start = spec.resolved_start()
        pop = populate(spec, start)
        return cls(spec, pop.customers, pop.devices, start, pop.households, pop.habits)

    @cached_property
    def device_map(self) -> dict[str, SimDevice]:
        """Devices by id."""
        return {d.device_id: d for d in self.devices}

    def customer(self, subject: str) -> Customer:
        """The customer behind a raw subject id."""
        return self._by_subject[subject]

    def persona(self, subject: str) -> Persona:
        """The (main) persona of a customer, as defined (:meth:`habits`: their own)."""
        return ALL_PERSONAS[self._by_subject[subject].persona]

    def habits(self, subject: str) -> Persona:
        """A customer's own habits: their persona blended and varied (ground truth)."""
        return self._habits[subject]

    def household(self, device_id: str) -> Household:
        """The household a device is in (its real time zone, heating)."""
        return self.households[self._device(device_id).household - 1]

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

    def truth(self, device_id: str) -> DeviceTruth:
        """What the device's stream does not say: anomaly labels, genuine events, its
        clock, zone, outages, sensor faults, losses and real users (ground truth)."""
        if device_id not in self._truth:
            self._build(self._device(device_id))
        return self._truth[device_id]

    def anomalies(self, device_id: str) -> frozenset[int]:
        """Firmware seqs (``SignalIn.seq``) of the device's injected anomalous signals.

        Each passes validation but is wrong for the device (``FaultSpec.anomaly_rate``;
        :meth:`truth` has each one's kind and size); a duplicate send of one repeats its
        seq. Empty when the rate is 0.
        """
        seqs = self._anomalies.get(device_id)
        if seqs is None:
            seqs = self._anomalies[device_id] = frozenset(self.truth(device_id).anomalies)
        return seqs

    def clock(self, device_id: str) -> DeviceClock:
        """The device's clock: its timestamps are ``clock.device_ms(true time)``."""
        dev = self._device(device_id)
        return DeviceClock(dev.skew_ms, dev.drift_ppm, self.start_ms)

    def all_signals(self) -> dict[str, list[SignalIn]]:
        """Every device's stream, by device id, in device order."""
        return {d.device_id: self.signals(d.device_id) for d in self.devices}

    def describe(self) -> dict[str, Any]:
        """The fleet's labels as plain JSON data: spec, households, customers (personas,
        blends, churn, life events), devices (zones, clocks, attribution)."""
        return {
            "spec": asdict(self.spec) | {"start_ms": self.start_ms, "end_ms": self.end_ms},
            "households": [asdict(h) for h in self.households],
            "customers": [asdict(c) for c in self.customers],
            "devices": [asdict(d) | {"users": list(d.users)} for d in self.devices],
        }

    def labels(self) -> dict[str, Any]:
        """Every device's :meth:`truth` as plain JSON data, by device id."""
        out: dict[str, Any] = {}
        for d in self.devices:
            t = self.truth(d.device_id)
            data = asdict(t)
            data["anomalies"] = {str(seq): asdict(a) for seq, a in sorted(t.anomalies.items())}
            data["true_subjects"] = {str(s): u for s, u in sorted(t.true_subjects.items())}
            out[d.device_id] = data
        return out

    # -- generation ----------------------------------------------------------------------
    def _device(self, device_id: str) -> SimDevice:
        try:
            return self.device_map[device_id]
        except KeyError:
            raise SimulationError(f"no device {device_id!r} in this fleet") from None

    def _local(self, zone: str) -> LocalClock:
        clock = self._clocks.get(zone)
        if clock is None:
            clock = self._clocks[zone] = LocalClock(zone, self.start_ms, self.end_ms)
        return clock

    def _life_of(self, subject: str) -> Life:
        return self._life.get(subject, _QUIET)

    def _build(self, dev: SimDevice) -> None:
        with _no_cycle_collection():
            self._generate(dev)

    def _generate(self, dev: SimDevice) -> None:
        spec = self.spec
        home = self.households[dev.household - 1]
        product = dev.product
        engagement = {u: self._by_subject[u].engagement for u in dev.users}

        def decay(subject: str, ts: int) -> float:
            return engagement[subject](ts, product)

        zone = self._local(home.tz)
        stream = Stream(
            random.Random(f"device:{spec.seed}:{dev.device_id}"),
            self.start_ms,
            self.end_ms,
            dev.users,
            self.habits,
            decay,
            local=zone.local,
            offset=zone.fixed,
            life_of=self._life_of,
            climate=home.climate if spec.life.seasons else None,
            extra=random.Random(f"world:{spec.seed}:{dev.device_id}"),
            events_per_month=spec.life.events_per_month,
            variation=spec.population.variation,
            refill_at=home.refill_at,
            heat_loss=home.heat_loss,
            cooling=home.cooling,
            attribution=dev.attribution,
            misattribution=spec.population.misattribution,
            credit_rng=random.Random(f"attribution:{spec.seed}:{dev.device_id}"),
        )
        GENERATORS[product](stream)
        stream.events.sort(key=lambda e: e[0])
        self._finish(dev, stream, home)

    def _seeded(self, what: str, dev: SimDevice) -> random.Random:
        return random.Random(f"{what}:{self.spec.seed}:{dev.device_id}")

    def _anomalous(
        self, dev: SimDevice, stream: Stream, events: list[Event]
    ) -> tuple[list[Event], dict[int, AnomalyLabel], list[Extra]]:
        """Anomalies: (events, index -> label of those changed in place, inserted ones)."""
        f = self.spec.faults
        if f.anomaly_rate <= 0.0:
            return events, {}, []
        rng = self._seeded("anomaly", dev)
        if f.anomaly_mix.legacy:
            return events, {}, legacy_spikes(events, f.anomaly_rate, rng, self.end_ms)
        quiet = quiet_hour(self.habits(dev.users[0]).activity)
        where = self._seeded("quiet", dev)

        def quiet_time(ts: int) -> int:
            return ts + next_at_hour(stream.routine(dev.users[0], ts), quiet, where)

        out, tags, extra = inject(
            events, f.anomaly_rate, f.anomaly_mix, rng,
            product=dev.product, end_ms=self.end_ms, quiet_time=quiet_time,
        )  # fmt: skip
        return out, tags, _in_use(extra, stream, dev.product, self._seeded("in-use", dev))

    def _finish(self, dev: SimDevice, s: Stream, home: Household) -> None:
        """Sensors, anomalies, outages, loss, faults, clock; number it all."""
        f, sens = self.spec.faults, self.spec.sensors
        rng = s.rng
        sensor_faults = drifts(
            sens, self._seeded("drift", dev), dev.product, self.start_ms, self.end_ms
        )
        events = perturb(s.events, sens, self._seeded("noise", dev), sensor_faults)
        events, changed, inserted = self._anomalous(dev, s, events)
        off = outages(sens, self._seeded("outage", dev), self.start_ms, self.end_ms)
        lose = self._seeded("loss", dev)
        events, changed, silenced, lost = drop(events, off, sens.loss, lose, changed)
        extra, extra_labels, _, _ = drop(
            [e for e, _ in inserted], off, sens.loss, lose, dict(enumerate(a for _, a in inserted))
        )
        marks = _genuine_marks(events, s)
        credited = s.credited
        out: list[SignalIn] = []
        reboots: list[int] = []
        labels: dict[int, AnomalyLabel] = {}
        genuine_seqs: list[list[int]] = [[] for _ in s.genuine]
        true_subjects: dict[int, str] = {}
        reboot_p = f.reboots_per_day * self.spec.days / max(1, len(events))
        clock = self.clock(dev.device_id)
        skew, drifting = dev.skew_ms, bool(dev.drift_ppm)
        seq = k = 0

        def send(ts: int, name: str, value: Scalar, subject: str) -> None:
            nonlocal seq
            seq += 1
            ts = clock.device_ms(ts) if drifting else ts + skew
            out.append(SignalIn(seq=seq, ts=ts, subject=subject, name=name, value=value))

        def send_extra() -> None:  # an inserted anomaly is sent as it is, no faults
            nonlocal k
            send(*extra[k])
            labels[seq] = extra_labels[k]
            k += 1

        # The loop runs for every signal of a fleet (millions for a training fleet): the
        # rates and the next inserted anomaly's time are held in locals, and the genuine
        # signal is sent inline (same draws, same order as send()).
        chance = rng.random
        glitch_rate, absurd_rate, duplicate_rate = f.glitch_rate, f.absurd_ts_rate, f.duplicate_rate
        next_extra = extra[0][0] if extra else self.end_ms + 1
        for i, (ts, name, value, subject) in enumerate(events):
            while next_extra < ts:
                send_extra()
                next_extra = extra[k][0] if k < len(extra) else self.end_ms + 1
            if out and chance() < reboot_p:
                reboots.append(len(out))
            if chance() < glitch_rate:
                send(ts, *_glitch(rng, name, value), subject)
            if chance() < absurd_rate:
                seq += 1
                absurd = rng.choice((0, YEAR_2100_MS))
                out.append(SignalIn(seq=seq, ts=absurd, subject=subject, name=name, value=value))
            seq += 1
            stamp = clock.device_ms(ts) if drifting else ts + skew
            out.append(SignalIn(seq=seq, ts=stamp, subject=subject, name=name, value=value))
            if changed and i in changed:
                labels[seq] = changed[i]
            elif marks and i in marks:
                for g in marks[i]:
                    genuine_seqs[g].append(seq)
            if credited and (ts, name) in credited:
                true_subjects[seq] = credited[(ts, name)]
            if chance() < duplicate_rate:  # a re-send of one of the last few signals
                out.append(out[-rng.randint(1, min(3, len(out)))])
        while k < len(extra):
            send_extra()
        self._signals[dev.device_id] = out
        self._reboots[dev.device_id] = reboots
        self._truth[dev.device_id] = DeviceTruth(
            device_id=dev.device_id,
            timezone=home.tz,
            configured_tz=dev.tz,
            clock=clock,
            outages=tuple(off),
            anomalies=labels,
            genuine=tuple(
                GenuineEvent(g.kind, g.subject, g.start_ms, g.end_ms, tuple(seqs))
                for g, seqs in zip(s.genuine, genuine_seqs, strict=True)
                if seqs
            ),
            sensor_faults=tuple(sensor_faults),
            lost=lost,
            silenced=silenced,
            true_subjects=true_subjects,
        )


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while one device's stream is built.

    A stream is millions of fresh tuples and messages, none in a reference cycle, and
    each allocation burst made the collector scan them over and over: about a third of
    a training fleet's generation time (docs/simulation.md, "Speed"). Reference counting
    still frees everything; the collector is back on (if it was on) as soon as the
    device is done, so nothing else in the process goes without it for long.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _in_use(extra: list[Extra], s: Stream, product: str, rng: random.Random) -> list[Extra]:
    """``extra`` without the out-of-pattern uses of someone not using the device then.

    Out-of-pattern use is use (a brew at 3 am): it happens only while its user uses the
    product, as often as they do (their churn ramp, holidays, illness). Injected at a
    rate per gauge reading regardless, a coffee machine went on brewing ~0.5 times a day
    for a customer who had left, or was away, and 14.5 % of all brews were such
    phantoms. Kept with the probability of the user's use then (a draw of their own, so
    every other anomaly is as before).
    """
    keep: dict[int, bool] = {}
    out = []
    for event, label in extra:
        if label.kind == "out_of_pattern":
            if label.episode not in keep:
                ts, _, _, subject = event
                use = s.decay(subject, ts) * s.life_of(subject).use(ts, product)
                keep[label.episode] = rng.random() < use
            if not keep[label.episode]:
                continue
        out.append((event, label))
    return out


def _genuine_marks(events: list[Event], s: Stream) -> dict[int, list[int]]:
    """Event index -> the genuine large events (indices into ``s.genuine``) it is part of."""
    marks: dict[int, list[int]] = {}
    if not s.genuine:
        return marks
    times = [e[0] for e in events]
    for g, span in enumerate(s.genuine):
        for i in range(bisect_left(times, span.start_ms), bisect_right(times, span.end_ms)):
            if events[i][1] in span.names:
                marks.setdefault(i, []).append(g)
    return marks


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
