"""Behaviour personas: who uses their devices when, how much, and how.

Each persona has a 24-hour activity profile (relative weight per hour of the day, on
the household's local clock: UTC in the easy fleet) and per-product habits. Personas
and churn are the ground-truth segments that the models must recover, so they are
exposed on every :class:`~firmware_sim.Customer`. :data:`PERSONAS` are in every fleet;
:data:`NOVEL_PERSONAS` only in fleets that ask for them (``PopulationSpec.novel_share``),
so an evaluation fleet can hold behaviour its training fleet never showed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALL_PERSONAS", "FIRST_NAMES", "LAST_NAMES", "NOVEL_PERSONAS", "PERSONAS", "Persona"]


def _profile(peaks: dict[int, float], base: float = 0.05) -> tuple[float, ...]:
    weights = [base] * 24
    for hour, weight in peaks.items():
        for d, f in ((-1, 0.4), (0, 1.0), (1, 0.4)):
            weights[(hour + d) % 24] += weight * f
    total = sum(weights)
    return tuple(w / total for w in weights)


@dataclass(frozen=True, slots=True)
class Persona:
    """Habits of one kind of customer."""

    name: str
    #: 24 hourly activity weights (UTC hours) summing to 1
    activity: tuple[float, ...]
    brews_per_day: float
    #: preferred coffee strength 1..5
    strength: int
    setpoint_c: float
    eco_mode: bool
    #: hours [from, to) when nobody is home (thermostat setback; from > to wraps past
    #: midnight), None: always home
    away_hours: tuple[int, int] | None
    steps_per_day: int
    resting_hr: int
    sleep_minutes: int
    tv_sessions_per_day: float
    tv_genres: tuple[str, ...]
    tv_volume: int
    #: activity multiplier on Saturdays and Sundays (UTC) and on other days
    weekend: float = 1.0
    weekday: float = 1.0

    def rhythm(self, ts_ms: int) -> float:
        """Relative activity at ``ts_ms``: the hour's weight times the day-of-week factor."""
        day = ts_ms // 86_400_000
        # Unix day 0 was a Thursday: days 2 and 3 (mod 7) are Saturday and Sunday.
        factor = self.weekend if day % 7 in (2, 3) else self.weekday
        return self.activity[(ts_ms // 3_600_000) % 24] * factor

    def away(self, hour: int) -> bool:
        """Whether nobody is home at this hour of the day (by the routine)."""
        if self.away_hours is None:
            return False
        start, end = self.away_hours
        return start <= hour < end if start <= end else (hour >= start or hour < end)


PERSONAS: dict[str, Persona] = {
    p.name: p
    for p in (
        Persona(
            name="early_bird",
            activity=_profile({6: 3.0, 7: 2.0, 12: 0.8, 19: 0.8}),
            brews_per_day=3.0,
            strength=4,
            setpoint_c=20.5,
            eco_mode=False,
            away_hours=(8, 16),
            steps_per_day=11_000,
            resting_hr=58,
            sleep_minutes=450,
            tv_sessions_per_day=0.8,
            tv_genres=("news", "series"),
            tv_volume=25,
        ),
        Persona(
            name="night_owl",
            activity=_profile({11: 0.8, 21: 2.0, 23: 3.0, 1: 2.0}),
            brews_per_day=2.0,
            strength=5,
            setpoint_c=22.5,
            eco_mode=False,
            away_hours=(14, 19),
            steps_per_day=5_000,
            resting_hr=68,
            sleep_minutes=380,
            tv_sessions_per_day=2.5,
            tv_genres=("movies", "series", "music"),
            tv_volume=45,
        ),
        Persona(
            name="homebody",
            activity=_profile({9: 1.0, 13: 1.5, 16: 1.0, 20: 1.5}),
            brews_per_day=5.0,
            strength=2,
            setpoint_c=23.0,
            eco_mode=False,
            away_hours=None,
            steps_per_day=3_000,
            resting_hr=72,
            sleep_minutes=480,
            tv_sessions_per_day=3.5,
            tv_genres=("series", "kids", "movies"),
            tv_volume=35,
        ),
        Persona(
            name="commuter",
            activity=_profile({7: 2.0, 19: 2.5}),
            brews_per_day=2.5,
            strength=3,
            setpoint_c=19.5,
            eco_mode=True,
            away_hours=(8, 18),
            steps_per_day=8_000,
            resting_hr=63,
            sleep_minutes=420,
            tv_sessions_per_day=1.2,
            tv_genres=("news", "sports"),
            tv_volume=30,
            weekend=1.5,
            weekday=0.85,
        ),
        Persona(
            name="weekend_warrior",
            activity=_profile({8: 1.0, 17: 2.0, 20: 1.0}),
            brews_per_day=1.5,
            strength=3,
            setpoint_c=21.0,
            eco_mode=True,
            away_hours=(9, 17),
            steps_per_day=14_000,
            resting_hr=55,
            sleep_minutes=440,
            tv_sessions_per_day=1.0,
            tv_genres=("sports",),
            tv_volume=55,
            weekend=2.6,
            weekday=0.55,
        ),
    )
}

#: Personas that appear only in fleets that ask for them (``PopulationSpec.novel_share``).
NOVEL_PERSONAS: dict[str, Persona] = {
    p.name: p
    for p in (
        Persona(
            # nights at work (22-06), asleep in the morning, a long afternoon at home
            name="shift_worker",
            activity=_profile({7: 1.0, 14: 1.5, 20: 2.0}),
            brews_per_day=3.5,
            strength=5,
            setpoint_c=21.5,
            eco_mode=True,
            away_hours=(22, 6),
            steps_per_day=9_000,
            resting_hr=66,
            sleep_minutes=400,
            tv_sessions_per_day=1.5,
            tv_genres=("series", "movies"),
            tv_volume=30,
        ),
        Persona(
            # at home all day, working: coffee through the day, little TV
            name="remote_worker",
            activity=_profile({8: 1.0, 10: 1.2, 13: 1.0, 15: 1.2, 18: 0.8, 21: 0.8}),
            brews_per_day=4.0,
            strength=3,
            setpoint_c=21.5,
            eco_mode=False,
            away_hours=None,
            steps_per_day=4_500,
            resting_hr=64,
            sleep_minutes=450,
            tv_sessions_per_day=1.5,
            tv_genres=("news", "series", "movies"),
            tv_volume=30,
            weekend=1.1,
        ),
    )
}

#: Every persona a fleet may hold, by name.
ALL_PERSONAS: dict[str, Persona] = PERSONAS | NOVEL_PERSONAS

#: Given names for generated customers.
FIRST_NAMES: tuple[str, ...] = (
    "ann", "bob", "chen", "dana", "eli", "fatima", "gus", "hana", "ivan", "jo", "kofi",
    "lena", "mo", "nina", "omar", "pia", "quinn", "rosa", "sam", "tariq", "uma", "vic",
)  # fmt: skip

#: Family names for generated customers.
LAST_NAMES: tuple[str, ...] = (
    "smith", "garcia", "ng", "muller", "okafor", "rossi", "kowalski", "tanaka", "dubois",
    "silva", "hansen", "ivanova", "novak", "haddad",
)  # fmt: skip
