"""On-device model costs: latency per prediction, memory with the models loaded.

Runs in a child process so that the RSS it reports is an agent-sized interpreter with the
edge imports and the shipped default models, not this benchmark's own heap. Each RSS
comes with its anonymous part (the rest is mapped from files: shared-library code and
read-only data) and the process's thread count. The models run as the agent runs them:
onnxruntime's C library through edge_agent.testing.runtime (ctypes), without numpy or onnxruntime's
Python binding; the child reports whether either got imported anyway.
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
def mem():
    m = proc.memory_info()
    return [m.rss, m.rss - m.shared, proc.num_threads()]  # statm: shared = file-backed
import edge_agent  # the agent's own imports, as a device runs them
from protocol import ANOMALY_FEATURES, feature_names
base = mem()
from edge_agent import BUILTIN_MODELS, ModelStore
from edge_agent.testing import runtime
runtime()  # libonnxruntime and its OrtEnv: what the first model load starts with
out = {"mem_base": base, "mem_runtime": mem(), "products": {}}
calls = int(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    stores = {}
    for product in ("coffee", "thermostat", "tv", "wearable"):
        store = ModelStore(os.path.join(tmp, product), product, {}, builtin=BUILTIN_MODELS)
        if {f"{k}-{product}" for k in ("segment", "churn", "anomaly")} - set(store.running()):
            # Timing a kind with no model would time a dictionary miss.
            sys.exit(f"{product}: serving {store.running()}, refused {store.failures()}")
        stores[product] = store
        row = [0.5] * len(feature_names(product))
        reading = [0.5] * len(ANOMALY_FEATURES)  # an ordinary reading: every input mid-range
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
            out["mem_one_product"] = mem()
    out["mem_all"] = mem()
out["python_modules"] = sorted(
    m for m in sys.modules if m.split(".")[0] in ("numpy", "onnxruntime")
)
print(json.dumps(out))
"""


def model_costs(calls: int = 10_000) -> dict[str, Any]:
    """Median and p99 latency (µs) per model and prediction; ``mem_*``: [RSS, anonymous
    RSS, threads] with the edge imports (``base``), with onnxruntime's C library and env
    loaded (``runtime``), with one product's models (``one_product``) and with every
    product's (``all``; the micro models load too, untimed); ``python_modules``: numpy
    or onnxruntime Python modules loaded (none expected)."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(calls)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode:
        raise RuntimeError(f"model bench failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
