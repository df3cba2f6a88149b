"""The thermostat: the main user's heating routine, the room, the energy meter.

The routine (setpoint by hour: set back at night and while away, eco mode if the user
likes it) runs on the user's routine clock; each change the routine asks for is made
by hand with probability = engagement, and a skipped one stays skipped until the
routine's next change. The room is sampled every ~10 minutes.

Without seasons (the easy fleet) the heater always holds the room near the setpoint.
With seasons the house loses heat to an outdoor temperature that follows the
household's climate, the season and the day's weather; the heating is switched off in
summer (or to cooling, in homes with air conditioning), and the energy meter follows
the heat delivered. Genuine large events: a window opened (the room cools fast, the
heater runs flat out).
"""

from __future__ import annotations

from ._stream import DAY_MS, HOUR_MS, MINUTE_MS, Stream

__all__ = ["thermostat"]

# Season switches with hysteresis (°C of the day's outdoor mean): heating goes off above
# 17 and on below 14; cooling goes on above 23 and off below 20.
_HEAT_OFF, _HEAT_ON, _COOL_ON, _COOL_OFF = 17.0, 14.0, 23.0, 20.0
#: the heater's most heat per 10 minutes, °C of room temperature
_MAX_DRIVE = 1.5
#: electricity per °C of room temperature delivered (a heat pump, about COP 3)
_KWH_PER_DRIVE = 0.2


def _season(current: str, outdoor_mean: float, cooling: bool) -> str:
    if current == "heat":
        return "off" if outdoor_mean > _HEAT_OFF else "heat"
    if current == "cool":
        return "off" if outdoor_mean < _COOL_OFF else "cool"
    if outdoor_mean < _HEAT_ON:
        return "heat"
    return "cool" if cooling and outdoor_mean > _COOL_ON else "off"


def thermostat(s: Stream) -> None:
    """Generate a thermostat's events into ``s``."""
    user = s.primary
    p = s.persona_of(user)
    life = s.life_of(user)
    climate = s.climate
    temp = p.setpoint_c - 1.0
    setpoint, mode = p.setpoint_c, "heat"
    planned = (setpoint, mode)  # what the customer's routine asked for last
    season, weather, today = "heat", 0.0, -1
    windows = s.genuine_times(1.0, (7, 22))
    window_until, w = 0, 0
    state, until = life.at(s.start_ms, "thermostat"), -1.0
    for tick in s.ticks(10 * MINUTE_MS, 20_000):
        if tick >= until:  # the customer's life changes only at event boundaries
            state = life.at(tick, "thermostat")
            until = state.until
        local = tick + s.offset if s.offset is not None else s.local(tick)
        hour = ((local - state.shift_ms) // HOUR_MS) % 24
        awake = p.activity[hour] > 0.03
        holiday = state.away
        away = (p.away(hour) or holiday) and not state.ill
        base = p.setpoint_c + state.setpoint_c
        outdoor = 0.0
        if climate is not None:
            assert s.extra is not None
            if local // DAY_MS != today:  # a new day's weather (persistent anomalies)
                today = local // DAY_MS
                weather = 0.7 * weather + s.extra.gauss(0.0, 2.5)
                season = _season(season, climate.season_c(local) + weather, s.cooling)
            outdoor = climate.outdoor_c(local) + weather
        if season == "heat":
            want = base - (2.0 if not awake and not holiday else 3.0 if away else 0.0)
            want_mode = "eco" if p.eco_mode and (away or not awake) else "heat"
        elif season == "cool":  # cool to a few degrees above the heating setpoint
            want, want_mode = base + (3.0 if awake and not away else 6.0), "cool"
        else:
            want, want_mode = base, "off"
        # The customer adjusts the heating by hand as their routine asks. A disengaging
        # one skips changes, and a skipped change stays skipped until the routine's next
        # one. (Before, a skipped change was retried at the next tick, 10 minutes later,
        # so a churner's adjustments did not decline at all.) One draw per tick either
        # way: a loyal customer's stream is unchanged.
        follows = s.rng.random() < s.decay(user, tick)
        change = (want, want_mode) != planned and follows
        planned = (want, want_mode)
        if (change and planned != (setpoint, mode)) or tick % HOUR_MS < 10 * MINUTE_MS:
            # adjustments, plus the hourly state report (deduplicated by the agent)
            if change:
                setpoint, mode = want, want_mode
            s.emit(tick - 2, "thermostat.setpoint_c", setpoint, user)
            s.emit(tick - 1, "thermostat.mode", mode, user)
        while w < len(windows) and windows[w] <= tick:  # someone opens a window
            assert s.extra is not None
            opened = windows[w]
            w += 1
            window_until = opened + s.extra.randrange(15 * MINUTE_MS, 45 * MINUTE_MS)
            s.mark("window_open", user, opened, window_until + HOUR_MS,
                   "thermostat.temperature_c", "thermostat.energy")  # fmt: skip
        if climate is None:
            temp += 0.3 * (setpoint - temp) + s.rng.gauss(0, 0.15)
            if tick < window_until:
                assert s.extra is not None
                temp += s.extra.uniform(0.08, 0.15) * (8.0 - temp)  # a mild day outside
            s.emit(tick, "thermostat.temperature_c", round(temp, 1), user)
            heating = max(0.0, setpoint - temp + 1.0)  # energy used since the last sample
            kwh = round(0.02 + 0.08 * heating * s.rng.uniform(0.7, 1.3), 3)
            s.emit(tick + 1, "thermostat.energy", kwh, user)
            continue
        assert s.extra is not None
        leak = 0.04 * s.heat_loss * (outdoor - temp)  # heat lost (or gained) this tick
        if tick < window_until:
            leak += s.extra.uniform(0.08, 0.15) * (outdoor - temp)
        drive = 0.0
        if mode in ("heat", "eco") and temp < setpoint + 0.3:
            drive = max(0.0, min(_MAX_DRIVE, 0.3 * (setpoint - temp) - leak))
        elif mode == "cool" and temp > setpoint - 0.3:
            drive = min(0.0, max(-_MAX_DRIVE, 0.3 * (setpoint - temp) - leak))
        temp += leak + drive + s.rng.gauss(0, 0.15)
        s.emit(tick, "thermostat.temperature_c", round(temp, 1), user)
        kwh = round(0.005 + _KWH_PER_DRIVE * abs(drive) * s.rng.uniform(0.7, 1.3), 3)
        s.emit(tick + 1, "thermostat.energy", kwh, user)
