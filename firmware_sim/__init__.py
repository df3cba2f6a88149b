"""TwinSync firmware simulator: deterministic fleets with known ground truth.

``Fleet.generate(FleetSpec(...))`` builds households, customers (with personas and
churners) and devices; ``FleetSpec.realistic(...)`` adds real-world mess (variation
within personas, time zones, drifting clocks, life events, variable churn, noisy and
lossy sensors, varied anomalies, shared devices). ``fleet.signals(device)`` is a
device's firmware stream with faults, ``fleet.truth(device)`` what the stream does not
say (anomaly labels, genuine events, clock, zone, outages); ``GroundTruth.compute``
says what the agents must answer and what InfluxDB and the API must end up holding;
``FleetRunner`` / ``ExternalFeeder`` drive real edge agents. ``twinsync.services``
starts the real mosquitto and influxd for demos and tests (import it explicitly).
"""

from ._anomalies import SIZES as ANOMALY_SIZES
from ._bundles import bundle_identity
from ._churn import CHURN_PRECURSOR_MS, ProductChurn
from ._errors import SimulationError
from ._feeder import ExternalFeeder
from ._fleet import Fleet
from ._knobs import AnomalyMix, ChurnSpec, FaultSpec, LifeSpec, PopulationSpec, SensorSpec
from ._labels import AnomalyLabel, DeviceClock, DeviceTruth, GenuineEvent, SensorFault
from ._life import LifeEvent
from ._offers import CHECK_IN_SIGNALS, OfferSpec, OfferTruth
from ._personas import NOVEL_PERSONAS, PERSONAS, Persona
from ._population import Customer, Household, SimDevice
from ._runner import FleetRunner
from ._spec import DAY_MS, FleetSpec
from ._truth import GroundTruth, Outcome, Point, normalise_value
from ._zones import Climate, LocalClock

__all__ = [
    "ANOMALY_SIZES",
    "CHECK_IN_SIGNALS",
    "CHURN_PRECURSOR_MS",
    "DAY_MS",
    "NOVEL_PERSONAS",
    "PERSONAS",
    "AnomalyLabel",
    "AnomalyMix",
    "ChurnSpec",
    "Climate",
    "Customer",
    "DeviceClock",
    "DeviceTruth",
    "ExternalFeeder",
    "FaultSpec",
    "Fleet",
    "FleetRunner",
    "FleetSpec",
    "GenuineEvent",
    "GroundTruth",
    "Household",
    "LifeEvent",
    "LifeSpec",
    "LocalClock",
    "OfferSpec",
    "OfferTruth",
    "Outcome",
    "Persona",
    "Point",
    "PopulationSpec",
    "ProductChurn",
    "SensorFault",
    "SensorSpec",
    "SimDevice",
    "SimulationError",
    "bundle_identity",
    "normalise_value",
]
