"""The coffee machine: brews on its users' rhythms, a tank that drains and is refilled.

Everyone in the household brews on their own routine clock: a shared machine's stream
is the union of its users' habits, each attributed to its user. The tank is sampled
every ~5 minutes; someone refills it when it runs low (a genuine jump, labelled as
such). Genuine large events: a party (6-12 brews within a few evening hours).
"""

from __future__ import annotations

from ._stream import HOUR_MS, MINUTE_MS, Stream

__all__ = ["coffee"]

_NAMES = ("coffee.brew", "coffee.strength", "coffee.water_level_pct", "coffee.descale_due")


def coffee(s: Stream) -> None:
    """Generate a coffee machine's events into ``s``."""
    brews: list[tuple[int, str, int]] = []
    for hour in s.hours():
        t0 = hour * HOUR_MS
        for user in s.users:
            p = s.persona_of(user)
            rate = (
                p.brews_per_day * p.rhythm(s.routine(user, t0)) * s.decay(user, t0) * s.share(user)
            )
            rate *= s.life_of(user).use(t0, "coffee")
            for _ in range(s.count(rate)):
                brews.append((t0 + s.rng.randrange(HOUR_MS), user, 1 + (s.rng.random() < 0.2)))
    if s.extra is not None:
        for at in s.genuine_times(0.5, (17, 22)):  # guests: a party's brews, on one account
            host = s.extra.choice(s.users)
            if s.decay(host, at) * s.life_of(host).use(at, "coffee") < 0.5:
                continue  # nobody throws a party at a machine they are leaving or away from
            length = s.extra.randrange(HOUR_MS, 3 * HOUR_MS)
            for _ in range(s.extra.randint(6, 12)):
                brews.append((at + s.extra.randrange(length), host, 1 + (s.extra.random() < 0.3)))
            s.mark("party", host, at, at + length + 5 * MINUTE_MS, *_NAMES)
    brews.sort()
    level, total, i = 100.0, 0, 0
    for tick in s.ticks(5 * MINUTE_MS, 30_000):
        while i < len(brews) and brews[i][0] < tick:
            ts, user, cups = brews[i]
            i += 1
            total += 1
            shown = s.credit(user)  # a shared machine may not know who brewed
            s.emit_as(ts, "coffee.brew", cups, user, shown)
            strength = s.persona_of(user).strength
            if s.rng.random() < 0.15:
                strength = max(1, min(5, strength + s.rng.choice((-1, 1))))
            s.emit_as(ts + 1, "coffee.strength", strength, user, shown)
            level -= 7.5 * cups + s.rng.uniform(-0.5, 0.5)
            if level < s.refill_at:  # someone refills the tank
                level = 100.0 if s.extra is None or s.variation <= 0 else s.extra.uniform(80, 100)
                s.mark("refill", user, ts + 2, ts + 2, "coffee.water_level_pct")
            s.emit_as(ts + 2, "coffee.water_level_pct", round(level, 1), user, shown)
            s.emit_as(ts + 3, "coffee.descale_due", total % 60 >= 50, user, shown)
        level = max(0.0, level - (0.1 if s.rng.random() < 0.1 else 0.0))  # evaporation
        s.emit(tick, "coffee.water_level_pct", round(level, 1), s.primary)
