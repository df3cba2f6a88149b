"""What the customer features are, per product: names, the signals they read, their scale.

The feature vector of a product is :data:`COMMON_FEATURES` then the product's habits
(:func:`feature_names`): that tuple is the models' input schema, checked by the agent
before it loads a model. :class:`protocol.FeatureState` computes the vector;
docs/models.md explains every feature.

Each feature also declares a **floor** (:func:`feature_floor`): the smallest spread that
means something for it (0.5 °C of setpoint, a quarter of a brew a day). Trainers scale
features by their spread in the training data but never by less than the floor, so a
feature that happens to be nearly constant in one fleet (0.11 kWh a day across a
thermostat fleet) cannot turn ordinary noise, or the data a lossy device misses, into
tens of standard deviations elsewhere.
"""

from __future__ import annotations

from ._catalog import CATALOG, FIELDS, PRODUCTS, FieldSpec
from ._errors import SchemaError

__all__ = [
    "COMMON_FEATURES",
    "FEATURE_FIELDS",
    "HEARTBEAT_PRODUCTS",
    "feature_floor",
    "feature_names",
]

COMMON_FEATURES: tuple[str, ...] = (
    "share_night",
    "share_morning",
    "share_afternoon",
    "share_evening",
    "share_weekend",
    "rhythm_cos",
    "rhythm_sin",
    "rhythm_cos2",
    "rhythm_sin2",
    "rhythm_cos3",
    "rhythm_sin3",
    "events_per_day_7d",
    "events_per_day_28d",
    "trend_7_vs_21",
    "trend_14_vs_14",
    "active_days_28d",
    "recency_h",
    "usual_uses_per_day",
    "usual_days",
    "uses_vs_usual_3d",
    "uses_vs_usual_7d",
    "uses_vs_usual_14d",
    "silence_vs_usual",
    "use_ratio_7d",
    "use_ratio_14d",
)

# Signals that are a person's actions, per product.
USAGE: dict[str, frozenset[str]] = {
    "coffee": frozenset({"coffee.brew", "coffee.strength"}),
    "thermostat": frozenset({"thermostat.setpoint_c", "thermostat.mode"}),
    "wearable": frozenset({"wearable.steps", "wearable.sleep"}),
    "tv": frozenset({"tv.power", "tv.genre", "tv.watch", "tv.volume"}),
}
# The unit a customer's engagement is counted in, per product: (signal, which of its
# reports count): every report, a change of value, or a switch turned on. One brew, one
# TV session, one heating adjustment, one heart-rate reading (the watch is worn). Other
# usage events come with these (a strength setting with a brew, minutes watched in a
# session) and only add noise.
USES: dict[str, tuple[str, str]] = {
    "coffee": ("coffee.brew", "report"),
    "thermostat": ("thermostat.setpoint_c", "change"),
    "wearable": ("wearable.heart_rate_bpm", "report"),
    "tv": ("tv.power", "on"),
}
# Whether the device reports on its own while it is on (a tank level, a room
# temperature, a standby heartbeat), so that an hour without any report means the device
# was off or offline, not that its customer stayed away. A wearable reports only while
# worn: its silence is the customer's.
HEARTBEAT: dict[str, bool] = {"coffee": True, "thermostat": True, "wearable": False, "tv": True}
#: Products whose devices report on their own while on (see :class:`protocol.Coverage`).
HEARTBEAT_PRODUCTS = frozenset(p for p, beats in HEARTBEAT.items() if beats)
# A counter signal is an event each time; a state or gauge only when its value changes
# (devices re-report settings periodically, and a re-report is nobody's action).
COUNTERS = frozenset(name for name, spec in CATALOG.items() if spec.kind == "counter")

#: "mean" (per report), "per_day", "starts_per_day" (a switch turned on), "daily_max" and
#: "daily_min" (the mean over days of the day's highest or lowest value), or
#: "share:<value>" (the share of the signal's reports with that value)
Agg = str
# Habit feature -> (signal, aggregate over the window), per product.
HABITS: dict[str, dict[str, tuple[str, Agg]]] = {
    "coffee": {
        "habit_strength": ("coffee.strength", "mean"),
        "habit_cups_per_day": ("coffee.brew", "per_day"),
    },
    "thermostat": {
        "habit_setpoint_c": ("thermostat.setpoint_c", "mean"),
        "habit_comfort_c": ("thermostat.setpoint_c", "daily_max"),
        "habit_setback_c": ("thermostat.setpoint_c", "daily_min"),
        "habit_kwh_per_day": ("thermostat.energy", "per_day"),
        "habit_share_eco": ("thermostat.mode", "share:eco"),
    },
    "wearable": {
        "habit_steps_per_day": ("wearable.steps", "per_day"),
        "habit_heart_rate_bpm": ("wearable.heart_rate_bpm", "mean"),
        "habit_resting_bpm": ("wearable.heart_rate_bpm", "daily_min"),
        "habit_sleep_min_per_day": ("wearable.sleep", "per_day"),
    },
    "tv": {
        "habit_watch_min_per_day": ("tv.watch", "per_day"),
        "habit_sessions_per_day": ("tv.power", "starts_per_day"),
        "habit_share_news": ("tv.genre", "share:news"),
        "habit_share_sports": ("tv.genre", "share:sports"),
        "habit_share_movies": ("tv.genre", "share:movies"),
        "habit_share_kids": ("tv.genre", "share:kids"),
        "habit_volume": ("tv.volume", "mean"),
    },
}
assert set(USAGE) == set(HABITS) == set(USES) == set(HEARTBEAT) == set(PRODUCTS)
assert all(r == "report" or s in USAGE[p] for p, (s, r) in USES.items()), "uses are usage"

# The smallest meaningful spread of each feature (see the module docstring). Shares and
# harmonics are fractions of the customer's activity; rates are per day; z-scores are
# already in standard deviations.
_FLOORS: dict[str, float] = {
    "share_night": 0.05,
    "share_morning": 0.05,
    "share_afternoon": 0.05,
    "share_evening": 0.05,
    "share_weekend": 0.05,
    "rhythm_cos": 0.05,
    "rhythm_sin": 0.05,
    "rhythm_cos2": 0.05,
    "rhythm_sin2": 0.05,
    "rhythm_cos3": 0.05,
    "rhythm_sin3": 0.05,
    "events_per_day_7d": 0.5,
    "events_per_day_28d": 0.5,
    "trend_7_vs_21": 0.1,
    "trend_14_vs_14": 0.1,
    "active_days_28d": 0.05,
    "recency_h": 2.0,
    "usual_uses_per_day": 0.25,
    "usual_days": 2.0,
    "uses_vs_usual_3d": 0.5,
    "uses_vs_usual_7d": 0.5,
    "uses_vs_usual_14d": 0.5,
    "silence_vs_usual": 0.5,
    "use_ratio_7d": 0.05,
    "use_ratio_14d": 0.05,
    "habit_strength": 0.25,
    "habit_cups_per_day": 0.25,
    "habit_setpoint_c": 0.5,
    "habit_comfort_c": 0.5,
    "habit_setback_c": 0.5,
    "habit_kwh_per_day": 0.5,
    "habit_share_eco": 0.05,
    "habit_steps_per_day": 500.0,
    "habit_heart_rate_bpm": 2.0,
    "habit_resting_bpm": 2.0,
    "habit_sleep_min_per_day": 15.0,
    "habit_watch_min_per_day": 10.0,
    "habit_sessions_per_day": 0.2,
    "habit_share_news": 0.05,
    "habit_share_sports": 0.05,
    "habit_share_movies": 0.05,
    "habit_share_kids": 0.05,
    "habit_volume": 2.0,
}


def feature_names(product: str) -> tuple[str, ...]:
    """The ordered feature vector of ``product`` (the models' input schema)."""
    if product not in HABITS:
        raise SchemaError(f"no features for product {product!r}", reason="unknown_product")
    return COMMON_FEATURES + tuple(HABITS[product])


def feature_floor(name: str) -> float:
    """The smallest spread a model may scale feature ``name`` by (see the docstring)."""
    try:
        return _FLOORS[name]
    except KeyError:
        raise SchemaError(f"no feature {name!r}", reason="unknown_feature") from None


assert all(n in _FLOORS for p in PRODUCTS for n in feature_names(p)), "every feature has a floor"

#: twin field of each (product, feature). Features travel with the predictions (coarse,
#: per-customer aggregates, purpose ``analytics``) so the hub can retrain from its twins.
FEATURE_FIELDS: dict[tuple[str, str], str] = {}
for _product in sorted(HABITS):
    for _name in feature_names(_product):
        _field = f"{_product}.f_{_name}"
        FEATURE_FIELDS[(_product, _name)] = _field
        FIELDS[_field] = FieldSpec(_field, _product, "float", "lww", "analytics")
del _product, _name, _field
