"""Per-product firmware behaviour: what each device type reports, when, and with what noise.

Each generator appends ``(ts, name, value, subject)`` events (true device time, before
skew and faults) to a :class:`Stream`. Cadences follow the product: a thermostat samples
its room and meters its energy every ~10 minutes, a wearable the heart rate every 2-8
minutes depending on the wearer's activity, a coffee machine its tank every ~5 minutes
plus events per brew, a TV a standby heartbeat plus viewing sessions. Usage intensity
and timing come from the persona of whoever uses the device, decaying after a churner's
churn time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from protocol import Scalar

from ._personas import Persona

__all__ = ["GENERATORS", "Stream"]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

#: (ts, signal name, value, raw subject)
Event = tuple[int, str, Scalar, str]


@dataclass
class Stream:
    """The events of one device being generated, and everything generators need."""

    rng: random.Random
    start_ms: int
    end_ms: int
    users: tuple[str, ...]
    persona_of: Callable[[str], Persona]
    decay: Callable[[str, int], float]
    events: list[Event] = field(default_factory=list)

    def emit(self, ts: int, name: str, value: Scalar, subject: str) -> None:
        """Record one event if it falls inside the simulated window."""
        if self.start_ms <= ts < self.end_ms:
            self.events.append((ts, name, value, subject))

    def ticks(self, every_ms: int, jitter_ms: int = 0) -> list[int]:
        """Regular sample times over the window (grid-aligned), each with some jitter."""
        first = -(-self.start_ms // every_ms)
        last = self.end_ms // every_ms
        return [
            t * every_ms + (self.rng.randrange(jitter_ms) if jitter_ms else 0)
            for t in range(first, last + 1)
        ]

    def hours(self) -> range:
        """Every hour index (Unix ms // 1 h) touching the window."""
        return range(self.start_ms // HOUR_MS, -(-self.end_ms // HOUR_MS))

    def count(self, expected: float) -> int:
        """A random count with mean ``expected`` (integer part plus a Bernoulli)."""
        whole = int(expected)
        return whole + (1 if self.rng.random() < expected - whole else 0)

    @property
    def primary(self) -> str:
        """The device's main user."""
        return self.users[0]

    def share(self, user: str) -> float:
        """How much of a shared device's use is ``user``'s (the main user uses it most)."""
        if len(self.users) == 1:
            return 1.0
        return 0.7 if user == self.users[0] else 0.5


def _hour_of(ts: int) -> int:
    return (ts // HOUR_MS) % 24


def _coffee(s: Stream) -> None:
    # Everyone in the household brews on their own rhythm: a shared machine's stream is
    # the union of its users' habits, each attributed to its user.
    brews: list[tuple[int, str, int]] = []
    for hour in s.hours():
        t0 = hour * HOUR_MS
        for user in s.users:
            p = s.persona_of(user)
            rate = p.brews_per_day * p.rhythm(t0) * s.decay(user, t0) * s.share(user)
            for _ in range(s.count(rate)):
                brews.append((t0 + s.rng.randrange(HOUR_MS), user, 1 + (s.rng.random() < 0.2)))
    brews.sort()
    level, total, i = 100.0, 0, 0
    for tick in s.ticks(5 * MINUTE_MS, 30_000):
        while i < len(brews) and brews[i][0] < tick:
            ts, user, cups = brews[i]
            i += 1
            total += 1
            s.emit(ts, "coffee.brew", cups, user)
            strength = s.persona_of(user).strength
            if s.rng.random() < 0.15:
                strength = max(1, min(5, strength + s.rng.choice((-1, 1))))
            s.emit(ts + 1, "coffee.strength", strength, user)
            level -= 7.5 * cups + s.rng.uniform(-0.5, 0.5)
            if level < 15:  # someone refills the tank
                level = 100.0
            s.emit(ts + 2, "coffee.water_level_pct", round(level, 1), user)
            s.emit(ts + 3, "coffee.descale_due", total % 60 >= 50, user)
        level = max(0.0, level - (0.1 if s.rng.random() < 0.1 else 0.0))  # evaporation
        s.emit(tick, "coffee.water_level_pct", round(level, 1), s.primary)


def _thermostat(s: Stream) -> None:
    p = s.persona_of(s.primary)
    temp = p.setpoint_c - 1.0
    setpoint, mode = p.setpoint_c, "heat"
    planned = (setpoint, mode)  # what the customer's routine asked for last
    for tick in s.ticks(10 * MINUTE_MS, 20_000):
        hour = _hour_of(tick)
        awake = p.activity[hour] > 0.03
        away = p.away_hours is not None and p.away_hours[0] <= hour < p.away_hours[1]
        want = p.setpoint_c - (2.0 if not awake else 3.0 if away else 0.0)
        want_mode = "eco" if p.eco_mode and (away or not awake) else "heat"
        # The customer adjusts the heating by hand as their routine asks. A disengaging
        # one skips changes, and a skipped change stays skipped until the routine's next
        # one. (Before, a skipped change was retried at the next tick, 10 minutes later,
        # so a churner's adjustments did not decline at all.) One draw per tick either
        # way: a loyal customer's stream is unchanged.
        follows = s.rng.random() < s.decay(s.primary, tick)
        change = (want, want_mode) != planned and follows
        planned = (want, want_mode)
        if (change and planned != (setpoint, mode)) or tick % HOUR_MS < 10 * MINUTE_MS:
            # adjustments, plus the hourly state report (deduplicated by the agent)
            if change:
                setpoint, mode = want, want_mode
            s.emit(tick - 2, "thermostat.setpoint_c", setpoint, s.primary)
            s.emit(tick - 1, "thermostat.mode", mode, s.primary)
        temp += 0.3 * (setpoint - temp) + s.rng.gauss(0, 0.15)
        s.emit(tick, "thermostat.temperature_c", round(temp, 1), s.primary)
        heating = max(0.0, setpoint - temp + 1.0)  # energy used since the last sample
        kwh = round(0.02 + 0.08 * heating * s.rng.uniform(0.7, 1.3), 3)
        s.emit(tick + 1, "thermostat.energy", kwh, s.primary)


def _wearable(s: Stream) -> None:
    user = s.primary
    p = s.persona_of(user)
    ts = s.start_ms + s.rng.randrange(2 * MINUTE_MS)
    last_steps_slot = -1
    while ts < s.end_ms:
        hour = _hour_of(ts)
        decay = s.decay(user, ts)
        activity = p.rhythm(ts) * decay
        worn = s.rng.random() < decay  # a churner wears it less and less
        bpm = int(p.resting_hr + 260 * activity + s.rng.gauss(0, 3))
        if worn:
            s.emit(ts, "wearable.heart_rate_bpm", max(30, min(220, bpm)), user)
        slot = ts // (10 * MINUTE_MS)
        if worn and slot != last_steps_slot and activity > 0.01:
            last_steps_slot = slot
            mean = p.steps_per_day * activity / 6
            s.emit(ts + 1, "wearable.steps", max(0, int(mean * s.rng.uniform(0.4, 1.6))), user)
        if hour == 7 and ts % HOUR_MS < 5 * MINUTE_MS:  # morning sync of last night's sleep
            s.emit(ts + 2, "wearable.sleep", int(p.sleep_minutes * s.rng.uniform(0.8, 1.1)), user)
            ts += 5 * MINUTE_MS  # once per morning
        # sampling adapts to activity: every 2 min when active, 4 awake, 8 asleep
        step = 2 if activity > 0.08 else 4 if activity > 0.03 else 8
        ts += step * MINUTE_MS + s.rng.randrange(-20_000, 20_000)


def _tv(s: Stream) -> None:
    # Each household member starts sessions on their own rhythm (one TV: a session that
    # would overlap a running one is skipped).
    sessions: list[tuple[int, str]] = []
    for hour in s.hours():
        t0 = hour * HOUR_MS
        for user in s.users:
            p = s.persona_of(user)
            rate = p.tv_sessions_per_day * p.rhythm(t0) * s.decay(user, t0) * s.share(user)
            sessions += [(t0 + s.rng.randrange(HOUR_MS), user) for _ in range(s.count(rate))]
    sessions.sort()
    busy_until = s.start_ms
    on: list[tuple[int, int]] = []
    for start, user in sessions:
        if start < busy_until:
            continue
        up = s.persona_of(user)
        s.emit(start, "tv.power", True, user)
        s.emit(start + 1, "tv.genre", s.rng.choice(up.tv_genres), user)
        volume = max(0, min(100, up.tv_volume + s.rng.randint(-5, 5)))
        s.emit(start + 2, "tv.volume", volume, user)
        length = int(s.rng.uniform(15, 150) * MINUTE_MS)
        t = start
        while t + 5 * MINUTE_MS < start + length:
            t += 5 * MINUTE_MS  # watch time is reported in 5-minute slices
            s.emit(t, "tv.watch", 5.0, user)
            if s.rng.random() < 0.2:
                volume = max(0, min(100, volume + s.rng.randint(-6, 6)))
                s.emit(t + 1, "tv.volume", volume, user)
            if s.rng.random() < 0.1:
                s.emit(t + 2, "tv.genre", s.rng.choice(up.tv_genres), user)
        end = start + length
        s.emit(end, "tv.watch", round((end - t) / MINUTE_MS, 2), user)
        s.emit(end + 1, "tv.power", False, user)
        busy_until = end + 2
        on.append((start, busy_until))
    k = 0
    for tick in s.ticks(10 * MINUTE_MS, 60_000):  # standby heartbeat while the TV is off
        while k < len(on) and on[k][1] <= tick:
            k += 1
        if k == len(on) or tick < on[k][0]:
            s.emit(tick, "tv.power", False, s.primary)


#: product type -> generator
GENERATORS: dict[str, Callable[[Stream], None]] = {
    "coffee": _coffee,
    "thermostat": _thermostat,
    "wearable": _wearable,
    "tv": _tv,
}
