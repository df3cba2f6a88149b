"""TwinSync firmware simulator: deterministic fleets with known ground truth.

``Fleet.generate(FleetSpec(...))`` builds households, customers (with personas and
churners) and devices; ``fleet.signals(device)`` is a device's firmware stream with
faults, ``fleet.anomalies(device)`` the seqs of its injected anomalies;
``GroundTruth.compute`` says what the agents must answer and what InfluxDB and the API
must end up holding; ``FleetRunner`` / ``ExternalFeeder`` drive real edge
agents. ``twinsync.services`` starts the real mosquitto and influxd for demos and
tests (import it explicitly).
"""

from ._bundles import bundle_identity
from ._errors import SimulationError
from ._feeder import ExternalFeeder
from ._fleet import CHURN_PRECURSOR_MS, DAY_MS, Customer, FaultSpec, Fleet, FleetSpec, SimDevice
from ._personas import PERSONAS, Persona
from ._runner import FleetRunner
from ._truth import GroundTruth, Outcome, Point, normalise_value

__all__ = [
    "CHURN_PRECURSOR_MS",
    "DAY_MS",
    "PERSONAS",
    "Customer",
    "ExternalFeeder",
    "FaultSpec",
    "Fleet",
    "FleetRunner",
    "FleetSpec",
    "GroundTruth",
    "Outcome",
    "Persona",
    "Point",
    "SimDevice",
    "SimulationError",
    "bundle_identity",
    "normalise_value",
]
