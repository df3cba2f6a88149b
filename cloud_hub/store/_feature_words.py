"""What each customer feature means, in words a marketer reads: the profile's sentences.

Each feature of ``protocol.feature_names`` (docs/models.md explains them) has a phrase
and a kind. A *ratio* feature is an amount that is never negative (a share, a rate, a
count of hours), so "2.1x the average" means something; a *level* feature is signed or
already relative (a trend, a harmonic of the daily rhythm, standard deviations from the
customer's own usual use), so it is said as "higher/lower than average, a vs b". The
common features speak of the product's unit of use (a brew, a TV session, ...).
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["FEATURE_WORDS", "USE_NOUN", "describe"]

#: the product's unit of use (protocol's ``USES``), plural, as the sentences say it
USE_NOUN: Final = {
    "coffee": "brews",
    "thermostat": "setpoint changes",
    "wearable": "worn hours",
    "tv": "TV sessions",
}

Kind = Literal["ratio", "level"]
#: feature -> (phrase, kind); ``{uses}`` is the product's unit of use
FEATURE_WORDS: Final[dict[str, tuple[str, Kind]]] = {
    "share_night": ("share of {uses} at night", "ratio"),
    "share_morning": ("share of {uses} in the morning", "ratio"),
    "share_afternoon": ("share of {uses} in the afternoon", "ratio"),
    "share_evening": ("share of {uses} in the evening", "ratio"),
    "share_weekend": ("share of {uses} on weekends", "ratio"),
    "rhythm_cos": ("daily rhythm (24 h cosine: + around midnight)", "level"),
    "rhythm_sin": ("daily rhythm (24 h sine: + around 6 am)", "level"),
    "rhythm_cos2": ("daily rhythm (12 h cosine)", "level"),
    "rhythm_sin2": ("daily rhythm (12 h sine)", "level"),
    "rhythm_cos3": ("daily rhythm (8 h cosine)", "level"),
    "rhythm_sin3": ("daily rhythm (8 h sine)", "level"),
    "events_per_day_7d": ("usage events a day (last 7 days)", "ratio"),
    "events_per_day_28d": ("usage events a day (last 28 days)", "ratio"),
    "trend_7_vs_21": ("trend of use (last 7 days against the 21 before)", "level"),
    "trend_14_vs_14": ("trend of use (last 14 days against the 14 before)", "level"),
    "active_days_28d": ("share of active days (last 28 days)", "ratio"),
    "recency_h": ("hours since the last use", "ratio"),
    "usual_uses_per_day": ("usual {uses} a day", "ratio"),
    "usual_days": ("days of usual use known", "ratio"),
    "uses_vs_usual_3d": ("use in the last 3 days against their usual (sd)", "level"),
    "uses_vs_usual_7d": ("use in the last 7 days against their usual (sd)", "level"),
    "uses_vs_usual_14d": ("use in the last 14 days against their usual (sd)", "level"),
    "silence_vs_usual": ("silence, in {uses} their usual rate expected", "ratio"),
    "use_ratio_7d": ("use in the last 7 days against their usual (ratio)", "level"),
    "use_ratio_14d": ("use in the last 14 days against their usual (ratio)", "level"),
    "habit_strength": ("coffee strength", "ratio"),
    "habit_cups_per_day": ("cups a day", "ratio"),
    "habit_setpoint_c": ("setpoint (°C)", "level"),
    "habit_comfort_c": ("daily highest setpoint (°C)", "level"),
    "habit_setback_c": ("daily lowest setpoint (°C)", "level"),
    "habit_kwh_per_day": ("energy a day (kWh)", "ratio"),
    "habit_share_eco": ("share of time in eco mode", "ratio"),
    "habit_steps_per_day": ("steps a day", "ratio"),
    "habit_heart_rate_bpm": ("heart rate (bpm)", "level"),
    "habit_resting_bpm": ("resting heart rate (bpm)", "level"),
    "habit_sleep_min_per_day": ("sleep minutes a day", "ratio"),
    "habit_watch_min_per_day": ("minutes watched a day", "ratio"),
    "habit_sessions_per_day": ("TV sessions a day", "ratio"),
    "habit_share_news": ("share of news watched", "ratio"),
    "habit_share_sports": ("share of sports watched", "ratio"),
    "habit_share_movies": ("share of movies watched", "ratio"),
    "habit_share_kids": ("share of kids' programmes watched", "ratio"),
    "habit_volume": ("TV volume", "level"),
}

# A ratio closer to 1 than this says "about average" better than "1.1x".
_MIN_RATIO = 1.15


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 10 else f"{value:,.0f}"


def describe(
    product: str, feature: str, mean: float, population: float
) -> tuple[str, float | None]:
    """The sentence saying how a segment's ``mean`` of ``feature`` compares with the
    population's, and the ratio of the two (None for a level feature or a zero mean)."""
    phrase, kind = FEATURE_WORDS.get(feature, (feature.replace("_", " "), "level"))
    phrase = phrase.format(uses=USE_NOUN.get(product, "uses"))
    values = f"({_number(mean)} vs {_number(population)})"
    if kind == "ratio" and mean > 0 and population > 0:
        ratio = mean / population
        if ratio >= _MIN_RATIO:
            return f"{ratio:.1f}x the average {phrase} {values}", ratio
        if ratio <= 1 / _MIN_RATIO:
            return f"{1 / ratio:.1f}x less {phrase} than average {values}", ratio
        return f"about the average {phrase} {values}", ratio
    if kind == "ratio" and population > 0 and mean == 0:
        return f"no {phrase} (average {_number(population)})", 0.0
    word = "higher" if mean > population else "lower" if mean < population else "the same"
    return f"{word} {phrase} than average {values}", None
