"""On-device model costs: latency per prediction, memory with the models loaded.

Runs in a child process so that the RSS it reports is an agent-sized interpreter with the
edge imports and the shipped default models, not this benchmark's own heap.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["model_costs"]

_CHILD = r"""
import json, os, sys, time, tempfile
import psutil
proc = psutil.Process()
import edge_agent  # the agent's own imports, as a device runs them
from protocol import ANOMALY_FEATURES, feature_names
base = proc.memory_info().rss
from edge_agent import BUILTIN_MODELS, ModelStore  # onnxruntime + numpy
out = {"rss_base": base, "rss_runtime": proc.memory_info().rss, "products": {}}
calls = int(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    stores = {}
    for product in ("coffee", "thermostat", "tv", "wearable"):
        store = ModelStore(os.path.join(tmp, product), product, {}, builtin=BUILTIN_MODELS)
        stores[product] = store
        row = [0.5] * len(feature_names(product))
        reading = [1.0, 0.01, 0.5]
        timings = {}
        for kind, fn, arg in (("segment", store.segment, row), ("churn", store.churn, row),
                              ("anomaly", store.anomaly, reading)):
            for _ in range(200):
                fn(arg)
            samples = []
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                fn(arg)
                samples.append(time.perf_counter_ns() - t0)
            samples.sort()
            p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
            timings[kind] = [p50 / 1e3, p99 / 1e3]
        out["products"][product] = timings
        if product == "coffee":
            out["rss_one_product"] = proc.memory_info().rss
    out["rss_all"] = proc.memory_info().rss
print(json.dumps(out))
"""


def model_costs(calls: int = 10_000) -> dict[str, Any]:
    """Median and p99 latency (µs) per model and prediction; RSS with the models loaded."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(calls)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
