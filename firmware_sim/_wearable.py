"""The wearable: heart rate sampled by activity, steps per 10 minutes, last night's sleep.

One person wears it, on their routine clock. Sampling adapts to activity (every 2
minutes when active, 4 awake, 8 asleep); a churner wears it less and less. Real-world
detail beyond the easy fleet: a daily charging hour (not worn), illness (resting rate
up, few steps), holidays (more walking), daylight (more steps on long days), and
workouts as genuine large events (heart rate 125-175 for 30-75 minutes).
"""

from __future__ import annotations

from ._stream import DAY_MS, HOUR_MS, MINUTE_MS, Stream

__all__ = ["wearable"]

_NAMES = ("wearable.heart_rate_bpm", "wearable.steps")
#: hours people charge their watch at
_CHARGE_HOURS = (7, 8, 19, 20, 21, 22)


def wearable(s: Stream) -> None:
    """Generate a wearable's events into ``s``."""
    user = s.primary
    p = s.persona_of(user)
    life = s.life_of(user)
    local, offset = s.local, s.offset
    ts = s.start_ms + s.rng.randrange(2 * MINUTE_MS)
    last_steps_slot = -1
    workouts = s.genuine_times(1.0, (6, 20))
    workout: tuple[int, int, int] | None = None  # (start, end, heart rate)
    w = 0
    charge_hour, charge_day, charging = -1, -1, False
    light_day, light = -1, 1.0  # the local day the daylight factor is for
    if s.extra is not None and s.variation > 0:
        charge_hour = s.extra.choice(_CHARGE_HOURS)
    state, until = life.at(ts, "wearable"), -1.0
    while ts < s.end_ms:
        if ts >= until:  # the customer's life changes only at event boundaries
            state = life.at(ts, "wearable")
            until = state.until
        clock = (ts + offset if offset is not None else local(ts)) - state.shift_ms
        hour = (clock // HOUR_MS) % 24
        decay = s.decay(user, ts)
        activity = p.rhythm(clock) * decay
        resting = p.resting_hr
        if not life.quiet:
            activity *= state.use
            if state.ill:
                activity, resting = activity * 0.4, resting + 8
            elif state.away:
                activity *= 1.2  # on holiday: more walking
        worn = s.rng.random() < decay  # a churner wears it less and less
        if charge_hour >= 0:
            assert s.extra is not None
            if clock // DAY_MS != charge_day:
                charge_day, charging = clock // DAY_MS, s.extra.random() < 0.8
            worn = worn and not (charging and hour == charge_hour)
        while w < len(workouts) and workouts[w] <= ts:
            assert s.extra is not None
            at = workouts[w]
            w += 1
            if worn and decay * life.use(at, "wearable") > 0.5:
                end = at + s.extra.randrange(30 * MINUTE_MS, 75 * MINUTE_MS)
                workout = (at, end, s.extra.randint(125, 175))
                s.mark("workout", user, at, end, *_NAMES)
        exercising = workout is not None and ts < workout[1]
        bpm = int(resting + 260 * activity + s.rng.gauss(0, 3))
        if exercising:
            assert workout is not None
            assert s.extra is not None
            bpm = workout[2] + int(s.extra.gauss(0, 5))
        if worn:
            s.emit(ts, "wearable.heart_rate_bpm", max(30, min(220, bpm)), user)
        slot = ts // (10 * MINUTE_MS)
        if worn and slot != last_steps_slot and (activity > 0.01 or exercising):
            last_steps_slot = slot
            mean = p.steps_per_day * activity / 6
            if s.climate is not None:  # long days, more walking (x0.8 at 8 h, x1.2 at 16 h)
                if clock // DAY_MS != light_day:
                    light_day = clock // DAY_MS
                    daylight = s.climate.daylight_h(clock)
                    light = max(0.8, min(1.2, 1.0 + 0.05 * (daylight - 12.0)))
                mean *= light
            if exercising:
                assert s.extra is not None
                mean = s.extra.uniform(1000, 1700)
            s.emit(ts + 1, "wearable.steps", max(0, int(mean * s.rng.uniform(0.4, 1.6))), user)
        if hour == 7 and clock % HOUR_MS < 5 * MINUTE_MS:  # morning sync of last night's sleep
            s.emit(ts + 2, "wearable.sleep", int(p.sleep_minutes * s.rng.uniform(0.8, 1.1)), user)
            ts += 5 * MINUTE_MS  # once per morning
        # sampling adapts to activity: every 2 min when active, 4 awake, 8 asleep
        step = 2 if activity > 0.08 or exercising else 4 if activity > 0.03 else 8
        ts += step * MINUTE_MS + s.rng.randrange(-20_000, 20_000)
