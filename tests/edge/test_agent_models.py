"""The agent runs the shipped models on its customers: predictions become twin fields.

An in-process agent with the default models, fed a simulated coffee machine with injected
anomalies; its outputs are checked against the same models and feature code run by hand,
and must survive a restart (feature state is persisted with the ops it led to).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from edge_agent import BUILTIN_MODELS, Agent, ModelStore, load_config
from firmware_sim import FaultSpec, Fleet, FleetSpec
from protocol import (
    FEATURE_FIELDS,
    Coverage,
    FeatureState,
    LocalTime,
    SchemaError,
    SignalBaseline,
    SignalIn,
    check_signal_value,
    feature_names,
    is_baselined,
    pseudonymize,
    signal_spec,
)
from twinsync.services import LocalServices

from .conftest import Bundle, make_bundle

DAY = 86_400_000


def _stream() -> tuple[list[SignalIn], str, frozenset[int]]:
    now = time.time_ns() // 1_000_000
    spec = FleetSpec(
        seed=4,
        devices=1,
        days=5.5,
        start_ms=now - 6 * DAY,
        faults=FaultSpec(anomaly_rate=0.02, skew_fraction=0.0, reboots_per_day=0.0),
    )
    fleet = Fleet.generate(spec)
    device = fleet.devices[0]
    assert device.product == "coffee"
    return fleet.signals(device.device_id), device.users[0], fleet.anomalies(device.device_id)


def _expected(
    signals: list[SignalIn], subject: str, root: Path, zone: str = "UTC"
) -> tuple[int, tuple[int, int], float, list[float]]:
    """(anomalies flagged, (segment, micro-segment), churn risk, features) of ``subject``
    computed by hand
    on the household clock of ``zone``."""
    store = ModelStore(root, "coffee", {}, builtin=BUILTIN_MODELS)
    now = time.time_ns() // 1_000_000
    clock = LocalTime(zone)
    # The device's coverage (hours it reported in) hears every accepted signal, whoever
    # it is about; the customer's features read it (docs/models.md, "Features").
    coverage = Coverage(clock)
    features, baselines, flagged, seen = FeatureState("coffee", clock, coverage), {}, 0, set()
    last_scored: int | None = None
    segment = churn = micro = None
    vector: list[float] = []
    for s in signals:
        if s.seq in seen:
            continue
        seen.add(s.seq)
        try:
            value = check_signal_value(signal_spec(s.name), s.value)
        except SchemaError:
            continue
        if not now - 7 * DAY < s.ts <= now + 300_000:  # the agent's timestamp window
            continue
        coverage.observe(s.ts)
        if is_baselined(s.name):  # baselines are per device: every customer's readings
            b = baselines.setdefault(s.name, SignalBaseline(s.name, clock))
            flagged += bool(store.anomaly(b.observe(float(value), s.ts))[1])  # type: ignore[index,arg-type]
        if s.subject != subject:
            continue
        features.update(s.name, s.ts, value)
        if last_scored is None or s.ts - last_scored >= 3_600_000 or s.ts < last_scored:
            last_scored = s.ts
            vector = features.vector(s.ts)
            segment = store.segment(vector)[0]  # type: ignore[index]
            micro = store.micro(vector, segment)[0]  # type: ignore[index]
            churn = round(store.churn(vector)[0], 4)  # type: ignore[index]
    assert segment is not None
    assert churn is not None
    assert micro is not None
    return flagged, (segment, micro), churn, vector


async def _run(bundle: Bundle, signals: list[SignalIn], port: int, restart_at: int | None) -> None:
    cfg = load_config(bundle.toml, {"mqtt": {"port": port}}, environ={})
    cut = restart_at if restart_at is not None else len(signals)
    async with Agent(cfg) as agent:
        await agent.ingest_many(signals[:cut])
    if cut < len(signals):
        async with Agent(cfg) as agent:
            await agent.ingest_many(signals[cut:])


async def test_model_outputs_are_twin_fields_and_survive_restarts(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    signals, subject, injected = _stream()
    assert injected
    flagged, segment, churn, vector = _expected(signals, subject, tmp_path / "by-hand")
    values = []
    for name, restart in (("straight", None), ("restarted", len(signals) // 2)):
        bundle = make_bundle(tmp_path / name, f"b{unique}", f"coffee-{name}", models=True)
        await _run(bundle, signals, services.mosquitto.port, restart)
        cfg = load_config(bundle.toml, {"mqtt": {"port": services.mosquitto.port}}, environ={})
        twin = pseudonymize(bundle.brand_key, 1, subject)
        async with Agent(cfg) as agent:
            got = {
                f: agent.twin_value(twin, f"coffee.{f}")
                for f in (
                    "segment",
                    "segment_model",
                    "micro_segment",
                    "micro_model",
                    "churn_risk",
                    "churn_model",
                    "anomaly_model",
                )
            }
            features = [
                agent.twin_value(twin, FEATURE_FIELDS[("coffee", n)])
                for n in feature_names("coffee")
            ]
            device_flags = sum(
                agent.twin_value(pseudonymize(bundle.brand_key, 1, u), "coffee.anomalies_total")
                or 0
                for u in {s.subject for s in signals}
            )
        values.append((got, device_flags))
        assert got["segment_model"] == "segment-coffee@1"
        assert got["churn_model"] == "churn-coffee@1"
        assert got["anomaly_model"] == "anomaly-coffee@1"
        assert got["micro_model"] == "micro-coffee@1"  # run after the segment model
        assert (got["segment"], got["micro_segment"]) == segment
        assert got["churn_risk"] == churn
        assert device_flags == flagged
        assert features == [round(v, 4) for v in vector]  # the features travel too
    assert values[0] == values[1]  # a restart changes nothing the models computed
    assert abs(flagged - len(injected)) <= 0.1 * len(injected)  # the detector works here


async def test_the_agent_counts_on_the_households_clock(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    """``[device] timezone``: features (and the anomaly baselines' hours) are the
    household's local ones, exactly as computed by hand on that clock."""
    signals, subject, _ = _stream()
    tokyo = _expected(signals, subject, tmp_path / "by-hand", "Asia/Tokyo")
    utc = _expected(signals, subject, tmp_path / "by-hand-utc")
    bundle = make_bundle(tmp_path / "tokyo", f"b{unique}", "coffee-tokyo", models=True)
    zone = {"mqtt": {"port": services.mosquitto.port}, "device": {"timezone": "Asia/Tokyo"}}
    cfg = load_config(bundle.toml, zone, environ={})
    async with Agent(cfg) as agent:
        await agent.ingest_many(signals)
        twin = pseudonymize(bundle.brand_key, 1, subject)
        features = [
            agent.twin_value(twin, FEATURE_FIELDS[("coffee", n)]) for n in feature_names("coffee")
        ]
        churn = agent.twin_value(twin, "coffee.churn_risk")
    assert features == [round(v, 4) for v in tokyo[3]]
    assert churn == tokyo[2]
    share = feature_names("coffee").index("share_morning")
    assert round(tokyo[3][share], 4) != round(utc[3][share], 4)  # the zone matters


_NO_NUMPY_CHILD = r"""
import asyncio, json, sys, time
from edge_agent import Agent, load_config
from firmware_sim import FaultSpec, Fleet, FleetSpec

async def main(toml, port):
    now = time.time_ns() // 1_000_000
    fleet = Fleet.generate(FleetSpec(seed=4, devices=1, days=1, start_ms=now - 2 * 86_400_000,
                                     faults=FaultSpec.none()))
    signals = fleet.signals(fleet.devices[0].device_id)[:300]
    cfg = load_config(toml, {"mqtt": {"port": port}}, environ={})
    async with Agent(cfg) as agent:
        await agent.ingest_many(signals)
        running = sorted(agent._models.running().values())
    loaded = [m for m in sys.modules if m == "numpy" or m.startswith(("numpy.", "onnxruntime"))]
    print(json.dumps({"running": running, "loaded": loaded}))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_agent_with_models_never_imports_numpy_or_the_python_binding(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    """The models run through onnxruntime's C library: an agent serving them has neither
    numpy nor the ``onnxruntime`` Python package (its 36 MB pybind module) loaded."""
    bundle = make_bundle(tmp_path, f"b{unique}", f"coffee-{unique}", models=True)
    done = subprocess.run(
        [sys.executable, "-c", _NO_NUMPY_CHILD, str(bundle.toml), str(services.mosquitto.port)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["running"] == [
        "anomaly-coffee@1",
        "churn-coffee@1",
        "micro-coffee@1",
        "segment-coffee@1",
    ]
    assert report["loaded"] == []
