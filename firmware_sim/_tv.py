"""The TV: viewing sessions on its users' rhythms, a standby heartbeat while off.

Each household member starts sessions on their own routine clock (one TV: a session
that would overlap a running one is skipped). With seasons, long dark evenings bring
more TV than light summer ones. Genuine large events: a movie night or a match with
friends (a long, loud session).
"""

from __future__ import annotations

from ._stream import DAY_MS, HOUR_MS, MINUTE_MS, Stream

__all__ = ["tv"]

_NAMES = ("tv.power", "tv.genre", "tv.volume", "tv.watch")


def _daylight_factor(s: Stream, ts: int, cache: dict[int, float]) -> float:
    """More TV on short days (x1.2 at 8 h of daylight), less on long ones (x0.8 at 16 h)."""
    if s.climate is None:
        return 1.0
    day = s.local(ts) // DAY_MS
    factor = cache.get(day)
    if factor is None:
        daylight = s.climate.daylight_h(day * DAY_MS)
        factor = cache[day] = max(0.8, min(1.2, 1.0 + 0.05 * (12.0 - daylight)))
    return factor


def tv(s: Stream) -> None:
    """Generate a TV's events into ``s``."""
    sessions: list[tuple[int, str, int]] = []  # (start, user, loud: 0 or a volume)
    daylight: dict[int, float] = {}  # local day -> its factor
    for hour in s.hours():
        t0 = hour * HOUR_MS
        for user in s.users:
            p = s.persona_of(user)
            rate = (
                p.tv_sessions_per_day
                * p.rhythm(s.routine(user, t0))
                * s.decay(user, t0)
                * s.share(user)
            )
            rate *= s.life_of(user).use(t0, "tv") * _daylight_factor(s, t0, daylight)
            sessions += [(t0 + s.rng.randrange(HOUR_MS), user, 0) for _ in range(s.count(rate))]
    events = s.genuine_times(0.5, (19, 22)) if s.extra is not None else []
    for at in events:
        assert s.extra is not None
        host = s.extra.choice(s.users)
        if s.life_of(host).use(at, "tv") * s.decay(host, at) >= 0.5:
            sessions.append((at, host, s.extra.randint(60, 85)))
    sessions.sort()
    busy_until = s.start_ms
    on: list[tuple[int, int]] = []
    for start, user, loud in sessions:
        if start < busy_until:
            continue
        up = s.persona_of(user)
        shown = s.credit(user)  # a shared TV may not know who watches
        s.emit_as(start, "tv.power", True, user, shown)
        s.emit_as(start + 1, "tv.genre", s.rng.choice(up.tv_genres), user, shown)
        volume = max(0, min(100, up.tv_volume + s.rng.randint(-5, 5)))
        if loud:
            volume = loud
        s.emit_as(start + 2, "tv.volume", volume, user, shown)
        length = int(s.rng.uniform(15, 150) * MINUTE_MS)
        if loud:
            assert s.extra is not None
            length = int(s.extra.uniform(150, 240) * MINUTE_MS)
            s.mark("movie_night", user, start, start + length + 1, *_NAMES)
        t = start
        while t + 5 * MINUTE_MS < start + length:
            t += 5 * MINUTE_MS  # watch time is reported in 5-minute slices
            s.emit_as(t, "tv.watch", 5.0, user, shown)
            if s.rng.random() < 0.2:
                volume = max(0, min(100, volume + s.rng.randint(-6, 6)))
                s.emit_as(t + 1, "tv.volume", volume, user, shown)
            if s.rng.random() < 0.1:
                s.emit_as(t + 2, "tv.genre", s.rng.choice(up.tv_genres), user, shown)
        end = start + length
        s.emit_as(end, "tv.watch", round((end - t) / MINUTE_MS, 2), user, shown)
        s.emit_as(end + 1, "tv.power", False, user, shown)
        busy_until = end + 2
        on.append((start, busy_until))
    k = 0
    for tick in s.ticks(10 * MINUTE_MS, 60_000):  # standby heartbeat while the TV is off
        while k < len(on) and on[k][1] <= tick:
            k += 1
        if k == len(on) or tick < on[k][0]:
            s.emit(tick, "tv.power", False, s.primary)
