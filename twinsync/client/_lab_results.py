"""Typed results of the strategy lab: a campaign's forecast and experiments
(docs/brand-api.md, "Strategy lab")."""

from __future__ import annotations

from ._results import Result, Scalar

__all__ = [
    "ArmOutcome",
    "CampaignForecast",
    "Estimate",
    "Experiment",
    "ExperimentArms",
    "ExperimentList",
    "ExperimentOutcome",
    "ExperimentResult",
    "Fairness",
    "ForecastEffect",
    "Interval",
    "Offer",
    "SegmentSplit",
]


class Offer(Result):
    """An offer and its cost per treated twin."""

    name: str
    cost: float


class Interval(Result):
    """A value with its interval."""

    value: float
    low: float
    high: float


class ForecastEffect(Interval):
    """The effect a forecast used: ``assumed`` or ``learnt:<experiment id>``."""

    source: str


class Fairness(Result):
    """The fairness rule a forecast applied."""

    rule: str
    ratio: float
    min_members: int


class SegmentSplit(Result):
    """One segment of one product: reach and expected benefit against the population's,
    and the fairness flags."""

    product: str
    segment: Scalar
    members: int
    reached: int
    reach_rate: float
    reach_ratio: float | None = None
    benefit_per_member: float
    benefit_ratio: float | None = None
    flags: tuple[str, ...] = ()


class CampaignForecast(Result):
    """What a campaign would do (``Client.simulate_campaign``)."""

    brand: str
    where: str | None = None
    offer: Offer
    effect: ForecastEffect
    population: int
    reach: int
    unscored: int
    expected_saved: Interval
    cost: float
    cost_per_saved: float | None = None
    fairness: Fairness
    segments: tuple[SegmentSplit, ...] = ()
    flagged: int


class ExperimentOutcome(Result):
    """What an experiment measures and over which window."""

    metric: str
    window_ms: int
    quiet_ms: int


class ExperimentArms(Result):
    """How many twins each arm holds."""

    treated: int
    holdout: int


class ArmOutcome(Result):
    """One arm's churn rate with its Wilson interval (None: an empty arm)."""

    twins: int
    churned: int
    rate: float | None = None
    low: float | None = None
    high: float | None = None


class Estimate(Interval):
    """An estimate, its 95 % interval and the method (``newcombe``, ``katz``)."""

    method: str


class ExperimentResult(Result):
    """The arms' outcomes, the uplift (holdout rate - treated rate) and the relative
    effect (1 - treated rate / holdout rate); ``interim`` while the experiment runs."""

    at_ms: int
    interim: bool
    treated: ArmOutcome
    holdout: ArmOutcome
    uplift: Estimate | None = None
    effect: Estimate | None = None


class Experiment(Result):
    """A randomised experiment of the strategy lab."""

    brand: str
    id: str
    created_ms: int
    where: str | None = None
    offer: Offer
    holdout: float
    outcome: ExperimentOutcome
    ends_ms: int
    status: str
    finished_ms: int | None = None
    assigned: ExperimentArms
    exposed: int
    excluded: int
    result: ExperimentResult | None = None


class ExperimentList(Result):
    """Every experiment of the brand, newest first."""

    brand: str
    experiments: tuple[Experiment, ...] = ()
