"""Typed results of the segment intelligence routes: sizes over time, migration matrix,
profiles and share alerts (the OpenAPI document's schemas; tests/client compares them)."""

from __future__ import annotations

from pydantic import Field

from ._results import Result

__all__ = [
    "SegmentFeature",
    "SegmentMigration",
    "SegmentMigrationCell",
    "SegmentModelProfile",
    "SegmentProfile",
    "SegmentProfiles",
    "SegmentShare",
    "SegmentShareAlerts",
    "SegmentShareRule",
    "SegmentSizeSeries",
    "SegmentSizes",
]


class SegmentSizeSeries(Result):
    """Twins in one (model, segment) at each instant of :attr:`SegmentSizes.times_ms`."""

    model: str | None
    segment: int
    twins: tuple[int, ...]


class SegmentSizes(Result):
    """Segment sizes over time: per (model, segment), twins at each instant."""

    brand: str
    product: str
    model: str | None
    step: str
    times_ms: tuple[int, ...]
    totals: tuple[int, ...]
    series: tuple[SegmentSizeSeries, ...]


class SegmentMigrationCell(Result):
    """Twins in segment ``from_`` at the first instant and ``to`` at the second (None:
    not in the population then)."""

    from_: int | None = Field(alias="from")
    to: int | None
    twins: int


class SegmentMigration(Result):
    """Who moved where between two instants."""

    brand: str
    product: str
    from_ms: int
    to_ms: int
    cells: tuple[SegmentMigrationCell, ...]
    sizes_from: dict[str, int]
    sizes_to: dict[str, int]
    entered: int
    left: int
    moved: int
    stayed: int


class SegmentFeature(Result):
    """How one feature sets a segment apart: means, standardised mean difference, words."""

    feature: str
    mean: float
    population_mean: float
    smd: float
    ratio: float | None
    text: str


class SegmentProfile(Result):
    """One segment: size, share of its model's population, the features that set it
    apart (largest first; empty under ``min_twins``) and a sentence."""

    segment: int
    twins: int
    share: float
    features: tuple[SegmentFeature, ...]
    summary: str


class SegmentModelProfile(Result):
    """The segments of one model version (its population)."""

    model: str | None
    twins: int
    segments: tuple[SegmentProfile, ...]


class SegmentProfiles(Result):
    """Segment profiles of one product, per model version."""

    brand: str
    product: str
    min_smd: float
    min_twins: int
    models: tuple[SegmentModelProfile, ...]


class SegmentShare(Result):
    """One segment's share now against its normal variation, and the verdict."""

    model: str | None
    segment: int
    twins: int
    share: float
    baseline_share: float | None
    sigma: float | None
    z: float | None
    alert: bool
    why: str


class SegmentShareRule(Result):
    """The thresholds a share alert needs to pass."""

    k: int
    min_twins: int
    min_shift: float


class SegmentShareAlerts(Result):
    """Segments whose share moved beyond normal variation (``alerts`` of them)."""

    brand: str
    product: str
    model: str | None
    at_ms: int
    baseline_days: int
    rule: SegmentShareRule
    alerts: int
    segments: tuple[SegmentShare, ...]
