"""The knobs of a fleet: the parts :class:`~firmware_sim.FleetSpec` is made of.

Firmware faults and anomalies (:class:`FaultSpec`, :class:`AnomalyMix`), who the
customers are (:class:`PopulationSpec`), their lives (:class:`LifeSpec`), how they churn
(:class:`ChurnSpec`) and what sensors and links do (:class:`SensorSpec`). Every knob
defaults to the *easy* fleet the simulator has always made, value for value; each is
validated when the part is built (a :class:`SimulationError` says what to change).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._errors import SimulationError
from ._personas import NOVEL_PERSONAS
from ._zones import check_zone

__all__ = [
    "ANOMALY_KINDS",
    "SIZE_CLASSES",
    "AnomalyMix",
    "ChurnSpec",
    "FaultSpec",
    "LifeSpec",
    "PopulationSpec",
    "SensorSpec",
]

HOUR_MS = 3_600_000


def _shares(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not 0.0 <= value <= 1.0:
            raise SimulationError(f"{type(obj).__name__}.{name} must be in [0, 1], not {value!r}")


def _non_negative(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < 0:
            raise SimulationError(f"{type(obj).__name__}.{name} must be >= 0, not {value!r}")


def _span(obj: object, name: str, lo: float, hi: float) -> None:
    low, high = getattr(obj, name)
    if not lo <= low <= high <= hi:
        raise SimulationError(
            f"{type(obj).__name__}.{name} must be (low, high) with {lo} <= low <= high <= {hi},"
            f" not {(low, high)!r}"
        )


#: anomaly kinds, in the order of :class:`AnomalyMix`'s weights
ANOMALY_KINDS = ("spike", "level_shift", "stuck", "out_of_pattern")
#: anomaly size classes
SIZE_CLASSES = ("small", "medium", "large")


@dataclass(frozen=True)
class AnomalyMix:
    """What injected anomalies look like: relative weights of size classes and kinds.

    The default (large spikes only) is the simulator's historical anomaly, injected
    exactly as before. Sizes are per signal (docs/simulation.md has the table); kinds:
    ``spike`` (one extra reading off, then back), ``level_shift`` (readings offset for
    a while), ``stuck`` (a sensor repeating one value for a while), ``out_of_pattern``
    (use at an hour the customer never uses the device).
    """

    small: float = 0.0
    medium: float = 0.0
    large: float = 1.0
    spike: float = 1.0
    level_shift: float = 0.0
    stuck: float = 0.0
    out_of_pattern: float = 0.0

    def __post_init__(self) -> None:
        _non_negative(self, *SIZE_CLASSES, *ANOMALY_KINDS)
        if self.small + self.medium + self.large <= 0:
            raise SimulationError("AnomalyMix needs a positive weight for some size class")
        if sum(getattr(self, k) for k in ANOMALY_KINDS) <= 0:
            raise SimulationError("AnomalyMix needs a positive weight for some kind")

    @property
    def legacy(self) -> bool:
        """Large spikes only: the historical injection, draw for draw."""
        return self == AnomalyMix()

    @classmethod
    def varied(cls) -> AnomalyMix:
        """Every size class equally often; spikes most often, then the other kinds."""
        return cls(small=1, medium=1, large=1, spike=0.4, level_shift=0.2, stuck=0.2,
                   out_of_pattern=0.2)  # fmt: skip


@dataclass(frozen=True)
class FaultSpec:
    """How much trouble the fleet makes (rates per genuine signal unless said otherwise)."""

    #: extra signals with an out-of-range, NaN, wrong-type or unknown-name payload
    glitch_rate: float = 0.01
    #: extra signals stamped 1970-01-01 or 2100-01-01
    absurd_ts_rate: float = 0.002
    #: a recent signal sent again with the same firmware seq
    duplicate_rate: float = 0.005
    #: share of devices whose clock is off by a fixed offset
    skew_fraction: float = 0.1
    #: largest clock offset, either way. Keep it inside the agent's window: with the
    #: default start (now - 2 days) and 1 day simulated, a +2 h clock is still in the past
    max_skew_ms: int = 2 * HOUR_MS
    #: per device and simulated day: the runner restarts the agent there
    reboots_per_day: float = 0.5
    #: per genuine gauge signal: an anomaly starts (``anomaly_mix`` says which; the
    #: default, a large in-range jump from the device's recent value); see
    #: :meth:`Fleet.anomalies`
    anomaly_rate: float = 0.0
    #: a skewed device's clock also drifts, by up to this many parts per million either
    #: way (100 ppm: 8.6 s a day); never corrected (0: a fixed offset)
    max_drift_ppm: float = 0.0
    #: sizes and kinds of the injected anomalies
    anomaly_mix: AnomalyMix = field(default_factory=AnomalyMix)

    def __post_init__(self) -> None:
        _shares(
            self, "glitch_rate", "absurd_ts_rate", "duplicate_rate", "skew_fraction",
            "anomaly_rate",
        )  # fmt: skip
        if self.max_skew_ms < 0 or self.reboots_per_day < 0 or self.max_drift_ppm < 0:
            raise SimulationError(
                "FaultSpec.max_skew_ms, reboots_per_day and max_drift_ppm must be >= 0"
            )
        if self.max_drift_ppm > 1000:
            raise SimulationError("FaultSpec.max_drift_ppm above 1000 is no clock: use <= 1000")

    @classmethod
    def none(cls) -> FaultSpec:
        """A perfectly behaved fleet."""
        return cls(
            glitch_rate=0.0,
            absurd_ts_rate=0.0,
            duplicate_rate=0.0,
            skew_fraction=0.0,
            max_skew_ms=0,
            reboots_per_day=0.0,
            anomaly_rate=0.0,
        )


@dataclass(frozen=True)
class PopulationSpec:
    """Who the customers are: variation, blends, new personas, time zones, shared devices."""

    #: scale of within-persona variation of rates, levels and routine times (0: every
    #: customer is an exact copy of their persona; 1: the realistic spreads)
    variation: float = 0.0
    #: share of customers whose habits mix a second persona in (``Customer.blend``)
    blend_share: float = 0.0
    #: share of customers drawn from ``novel_personas`` instead (behaviour a fleet
    #: without them never shows: for held-out evaluation)
    novel_share: float = 0.0
    #: which of :data:`NOVEL_PERSONAS` the novel customers are drawn from
    novel_personas: tuple[str, ...] = ("remote_worker", "shift_worker")
    #: zones households live in, drawn uniformly per household (repeat one to weight
    #: it): IANA names or fixed offsets ("+05:30"). Empty: everyone on UTC
    timezones: tuple[str, ...] = ()
    #: share of devices left on the factory zone (UTC) whatever the household's zone
    unset_tz_share: float = 0.0
    #: share of shared devices that report every use under their main user (they
    #: cannot tell users apart)
    single_subject_share: float = 0.0
    #: on the other shared devices, share of uses attributed to the wrong member
    misattribution: float = 0.0
    #: planted sub-personas (0: none): each customer is one of two habit variants of
    #: their persona, drawn 50/50 (``Customer.sub_persona``): variant 0 uses every
    #: product ``1 + sub_personas`` times less often with the routine 2 h earlier,
    #: variant 1 as many times more often, 2 h later. A known second level inside each
    #: persona, for micro-segments (docs/simulation.md)
    sub_personas: float = 0.0

    def __post_init__(self) -> None:
        _shares(
            self, "blend_share", "novel_share", "unset_tz_share", "single_subject_share",
            "misattribution",
        )  # fmt: skip
        if not 0.0 <= self.variation <= 3.0:
            raise SimulationError("PopulationSpec.variation must be in [0, 3] (1: realistic)")
        if not 0.0 <= self.sub_personas <= 4.0:
            raise SimulationError(
                "PopulationSpec.sub_personas must be in [0, 4] (0: none; 1: variants use "
                "twice and half as often as their persona)"
            )
        unknown = [p for p in self.novel_personas if p not in NOVEL_PERSONAS]
        if unknown or (self.novel_share > 0 and not self.novel_personas):
            raise SimulationError(
                f"PopulationSpec.novel_personas must name some of {sorted(NOVEL_PERSONAS)}"
                f" (unknown: {unknown})"
            )
        for zone in self.timezones:
            check_zone(zone)


@dataclass(frozen=True)
class LifeSpec:
    """Life beyond churn: seasons, holidays, illness, lasting habit changes, big events."""

    #: heating and cooling follow the household's climate and season; daylight moves
    #: outdoor activity and TV time
    seasons: bool = False
    #: holidays per household and year (everyone away for 3-16 days)
    holidays_per_year: float = 0.0
    #: illnesses per person and year (2-8 days at home: less activity, more TV)
    illness_per_year: float = 0.0
    #: lasting habit changes per customer and 30 days (use up or down, routine moved,
    #: heating setpoint changed), churners and loyal customers alike
    habit_changes_per_month: float = 0.0
    #: genuine large events per device and 30 days: a window opened, a party, a movie
    #: night, a workout (labelled genuine: not anomalies)
    events_per_month: float = 0.0

    def __post_init__(self) -> None:
        _non_negative(
            self, "holidays_per_year", "illness_per_year", "habit_changes_per_month",
            "events_per_month",
        )  # fmt: skip
        if self.holidays_per_year > 20 or self.illness_per_year > 20:
            raise SimulationError("LifeSpec: more than 20 holidays or illnesses a year is no life")


@dataclass(frozen=True)
class ChurnSpec:
    """How customers churn. The defaults are the historical single ramp.

    With ``monthly_rate`` set, each customer churns (leaves the brand: every product)
    at an exponentially distributed time with that hazard per 30 days, instead of
    ``FleetSpec.churn_fraction`` of them at 0.3-1.5 x the window. Each churner's
    warning is drawn: a ramp of ``ramp_days`` down to ``floor`` of their usual use,
    or none at all (``no_warning_share``).
    """

    #: full churn per customer and 30 days (None: ``FleetSpec.churn_fraction``)
    monthly_rate: float | None = None
    #: length of a churner's decline, days (drawn uniformly per churner)
    ramp_days: tuple[float, float] = (21.0, 21.0)
    #: use at the churn date relative to usual (drawn uniformly per churner)
    floor: tuple[float, float] = (0.25, 0.25)
    #: share of churners who stop without any decline
    no_warning_share: float = 0.0
    #: a churner's products stop up to this many days apart, each on its own ramp
    stagger_days: float = 0.0
    #: per customer using two products or more, and 30 days: leaves one product
    #: (same kind of ramp) and keeps the others
    partial_monthly_rate: float = 0.0

    def __post_init__(self) -> None:
        _non_negative(self, "monthly_rate", "stagger_days", "partial_monthly_rate")
        _shares(self, "no_warning_share")
        _span(self, "ramp_days", 0.0, 365.0)
        _span(self, "floor", 0.0, 1.0)
        for name in ("monthly_rate", "partial_monthly_rate"):
            value = getattr(self, name)
            if value is not None and value > 1.0:
                raise SimulationError(f"ChurnSpec.{name} is a share per 30 days: at most 1")

    @property
    def legacy(self) -> bool:
        """The historical churn: one 21-day ramp to 25 %, the same for every product."""
        return self == ChurnSpec()


@dataclass(frozen=True)
class SensorSpec:
    """What the devices' sensors and links do to the readings."""

    #: scale of measurement noise on gauge readings (1: the per-signal levels of
    #: docs/simulation.md, e.g. 0.2 °C, 3 bpm, 1.5 points of water level)
    noise: float = 0.0
    #: share of signals never sent (i.i.d.)
    loss: float = 0.0
    #: outages per device and 30 days (the device is off: no signals at all)
    outages_per_month: float = 0.0
    #: median outage length, hours (log-normal: some last days, capped at 7)
    outage_median_h: float = 4.0
    #: share of devices whose analog sensor drifts (a slow offset, never corrected)
    drift_share: float = 0.0

    def __post_init__(self) -> None:
        _non_negative(self, "noise", "outages_per_month")
        _shares(self, "loss", "drift_share")
        if self.loss >= 1.0:
            raise SimulationError("SensorSpec.loss must be below 1 (some signals must get through)")
        if not 0.0 < self.outage_median_h <= 72:
            raise SimulationError("SensorSpec.outage_median_h must be in (0, 72]")
