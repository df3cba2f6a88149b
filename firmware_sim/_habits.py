"""A customer's own habits: their persona, blended and varied the way people vary.

A persona is a *distribution* of customers, not a copy: :func:`personalise` draws one
customer's rates, levels and routine times around the persona's (spreads at
``variation = 1`` in :data:`SPREADS`, scaled by the knob), and :func:`blend` mixes a
second persona into a customer's habits. The result is a :class:`Persona` (named after
the customer's main persona) that the product generators read exactly like one.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

from ._personas import Persona

__all__ = ["SPREADS", "blend", "personalise", "sub_persona"]

#: TV genres a customer may pick up beyond their persona's (the catalog's choices)
GENRES = ("news", "sports", "movies", "kids", "series", "music")

#: Spreads at ``variation = 1`` and why (docs/simulation.md has the same table).
SPREADS: dict[str, float] = {
    # rates (brews, TV sessions, steps): log-normal, sigma 0.3, i.e. a customer's rate is
    # within 0.55-1.8 x the persona's 95 % of the time (real use of one kind of customer
    # spreads about 2x between the quartiles)
    "rate_sigma": 0.3,
    # the routine's clock: the whole day moves by a normal number of hours (people with
    # the same life pattern wake 1-2 h apart)
    "shift_h": 1.0,
    # each hour's weight is multiplied by a log-normal factor (a personal day shape)
    "hour_sigma": 0.25,
    # heating setpoint, °C (homes of one kind differ by a degree or two)
    "setpoint_c": 0.9,
    "resting_hr": 5.0,  # bpm
    "sleep_minutes": 30.0,
    "tv_volume": 7.0,  # of 100
    "strength": 0.6,  # coffee strength steps (rounded)
    # weekday/weekend factors: log-normal sigma
    "week_sigma": 0.15,
    # away hours: start and length move by a normal number of hours
    "away_h": 1.0,
    # probability of flipping eco mode; of a persona that leaves home staying home
    "eco_flip": 0.15,
    "home_office": 0.1,
}


def _shift(activity: tuple[float, ...], hours: float) -> list[float]:
    """The 24-hour profile moved later by ``hours`` (fractions interpolate)."""
    whole = math.floor(hours)
    frac = hours - whole
    return [
        (1 - frac) * activity[(h - whole) % 24] + frac * activity[(h - whole - 1) % 24]
        for h in range(24)
    ]


def _normalised(weights: list[float]) -> tuple[float, ...]:
    total = sum(weights)
    return tuple(w / total for w in weights)


def sub_persona(p: Persona, variant: int, spread: float) -> Persona:
    """Habit variant ``variant`` (0 or 1) of persona ``p`` (``PopulationSpec.sub_personas``
    = ``spread``): 0 uses ``1 + spread`` times less often, 2 h earlier; 1 as many times
    more often, 2 h later."""
    factor = (1 + spread) ** (1 if variant else -1)
    return replace(
        p,
        activity=_normalised(_shift(p.activity, 2.0 if variant else -2.0)),
        brews_per_day=p.brews_per_day * factor,
        steps_per_day=round(p.steps_per_day * factor),
        tv_sessions_per_day=p.tv_sessions_per_day * factor,
    )


def personalise(p: Persona, rng: random.Random, variation: float) -> Persona:
    """One customer's habits drawn around persona ``p`` (``variation`` 0: ``p`` itself)."""
    if variation <= 0:
        return p
    v = variation

    def rate(x: float) -> float:  # mean-preserving log-normal factor
        sigma = SPREADS["rate_sigma"] * v
        return x * math.exp(rng.gauss(0, sigma) - sigma * sigma / 2)

    shift = rng.gauss(0, SPREADS["shift_h"] * v)
    hourly = _shift(p.activity, shift)
    sigma = SPREADS["hour_sigma"] * v
    activity = _normalised([w * math.exp(rng.gauss(0, sigma)) for w in hourly])
    away = p.away_hours
    if away is not None:
        if rng.random() < SPREADS["home_office"] * v:
            away = None
        else:
            start = round(away[0] + shift + rng.gauss(0, SPREADS["away_h"] * v))
            length = (away[1] - away[0]) % 24 + round(rng.gauss(0, SPREADS["away_h"] * v))
            away = (start % 24, (start + max(2, min(14, length))) % 24)
    genres = list(p.tv_genres)
    if rng.random() < 0.3 * v:
        genres.append(rng.choice([g for g in GENRES if g not in genres] or genres))
    if len(genres) > 1 and rng.random() < 0.2 * v:
        genres.remove(rng.choice(genres))
    week = SPREADS["week_sigma"] * v
    return replace(
        p,
        activity=activity,
        brews_per_day=rate(p.brews_per_day),
        strength=max(1, min(5, p.strength + round(rng.gauss(0, SPREADS["strength"] * v)))),
        setpoint_c=round(2 * (p.setpoint_c + rng.gauss(0, SPREADS["setpoint_c"] * v))) / 2,
        eco_mode=p.eco_mode != (rng.random() < SPREADS["eco_flip"] * v),
        away_hours=away,
        steps_per_day=round(rate(p.steps_per_day)),
        resting_hr=round(p.resting_hr + rng.gauss(0, SPREADS["resting_hr"] * v)),
        sleep_minutes=round(p.sleep_minutes + rng.gauss(0, SPREADS["sleep_minutes"] * v)),
        tv_sessions_per_day=rate(p.tv_sessions_per_day),
        tv_genres=tuple(genres),
        tv_volume=max(5, min(95, round(p.tv_volume + rng.gauss(0, SPREADS["tv_volume"] * v)))),
        weekend=p.weekend * math.exp(rng.gauss(0, week)),
        weekday=p.weekday * math.exp(rng.gauss(0, week)),
    )


def blend(main: Persona, other: Persona, weight: float) -> Persona:
    """``main``'s habits with ``weight`` (< 0.5) of ``other``'s mixed in.

    Rhythm, rates and levels are weighted means; settings that cannot be mixed (eco
    mode, away hours, strength) stay ``main``'s; ``other``'s favourite genre joins.
    """
    w = weight
    genres = list(main.tv_genres)
    if other.tv_genres[0] not in genres:
        genres.append(other.tv_genres[0])
    return replace(
        main,
        activity=_normalised(
            [(1 - w) * a + w * b for a, b in zip(main.activity, other.activity, strict=True)]
        ),
        brews_per_day=(1 - w) * main.brews_per_day + w * other.brews_per_day,
        setpoint_c=round(2 * ((1 - w) * main.setpoint_c + w * other.setpoint_c)) / 2,
        steps_per_day=round((1 - w) * main.steps_per_day + w * other.steps_per_day),
        resting_hr=round((1 - w) * main.resting_hr + w * other.resting_hr),
        sleep_minutes=round((1 - w) * main.sleep_minutes + w * other.sleep_minutes),
        tv_sessions_per_day=(1 - w) * main.tv_sessions_per_day + w * other.tv_sessions_per_day,
        tv_genres=tuple(genres),
        tv_volume=round((1 - w) * main.tv_volume + w * other.tv_volume),
        weekend=(1 - w) * main.weekend + w * other.weekend,
        weekday=(1 - w) * main.weekday + w * other.weekday,
    )
