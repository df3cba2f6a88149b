"""Benchmarks: ``twinsync bench`` (``python -m bench.run``). Not part of the test suite,
except for a smoke run of the scale sections at a handful of devices (tests/bench), which
uses the names below.
"""

from ._drain import drain, stored_ops
from ._latency import PROBE, latency
from ._nodered import seal_costs
from ._swarm import scale_out, swarm_sizes
from ._swarm_fleet import Swarm
from ._throughput import throughput

__all__ = [
    "PROBE",
    "Swarm",
    "drain",
    "latency",
    "scale_out",
    "seal_costs",
    "stored_ops",
    "swarm_sizes",
    "throughput",
]
