"""Benchmarks: ``twinsync bench`` (``python -m bench.run``). Not part of the test suite,
except for a smoke run of the scale sections at a handful of devices and of the query
section at a few hundred twins (tests/bench), which use the names below.
"""

from ._drain import drain, stored_ops
from ._lab_coverage import LAB_EFFECT, lab_coverage
from ._latency import PROBE, latency
from ._nodered import seal_costs
from ._query import QUERIES, fleet_ops, query_bench
from ._swarm import scale_out, swarm_sizes
from ._swarm_fleet import Swarm
from ._throughput import throughput

__all__ = [
    "LAB_EFFECT",
    "PROBE",
    "QUERIES",
    "Swarm",
    "drain",
    "fleet_ops",
    "lab_coverage",
    "latency",
    "query_bench",
    "scale_out",
    "seal_costs",
    "stored_ops",
    "swarm_sizes",
    "throughput",
]
