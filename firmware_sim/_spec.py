"""What to simulate: :class:`FleetSpec`, the seed, size and window of a fleet and its knobs.

Every knob (:mod:`firmware_sim._knobs`) defaults to the *easy* fleet the simulator has
always made (every customer a copy of their persona, UTC routines, one 21-day churn
ramp, large spikes as the only anomalies, perfect sensors), value for value, so tests
that rely on its exact behaviour keep their meaning. :meth:`FleetSpec.realistic` turns
the real-world mess on at the levels documented in :mod:`firmware_sim._profiles` and
docs/simulation.md; each knob can also be turned on alone (``dataclasses.replace``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

from ._errors import SimulationError
from ._knobs import ChurnSpec, FaultSpec, LifeSpec, PopulationSpec, SensorSpec
from ._profiles import realistic_parts

__all__ = ["DAY_MS", "FleetSpec"]

DAY_MS = 86_400_000


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate. ``start_ms`` defaults to now − 2 days, rounded to the minute.

    ``FleetSpec(...)`` is the easy fleet; :meth:`realistic` the real-world one.
    """

    seed: int = 7
    devices: int = 100
    days: float = 1.0
    start_ms: int | None = None
    brand: str = "acme"
    #: share of customers who churn (usage declines for 21 days, then stops); ignored
    #: when ``churn.monthly_rate`` is set
    churn_fraction: float = 0.15
    faults: FaultSpec = field(default_factory=FaultSpec)
    population: PopulationSpec = field(default_factory=PopulationSpec)
    life: LifeSpec = field(default_factory=LifeSpec)
    churn: ChurnSpec = field(default_factory=ChurnSpec)
    sensors: SensorSpec = field(default_factory=SensorSpec)

    def resolved_start(self) -> int:
        """The window start in Unix ms (wall clock based unless ``start_ms`` is set)."""
        if self.start_ms is not None:
            return self.start_ms
        now = time.time_ns() // 1_000_000
        return (now - 2 * DAY_MS) // 60_000 * 60_000

    @classmethod
    def easy(cls, **changes: Any) -> FleetSpec:
        """The historical fleet (every knob of real-world mess off); same as ``FleetSpec``."""
        return cls(**changes)

    @classmethod
    def realistic(cls, **changes: Any) -> FleetSpec:
        """Every kind of real-world mess at plausible levels (docs/simulation.md).

        ``changes`` set any field, e.g. ``FleetSpec.realistic(seed=3, devices=300,
        days=70, start_ms=...)``; a sub-spec given here replaces the realistic one whole.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise SimulationError(
                f"FleetSpec has no field {unknown[0]!r}: use one of {sorted(known)}"
            )
        return cls(**(realistic_parts() | changes))
