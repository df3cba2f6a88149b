"""The agent's model runtime (edge_agent.testing: Runtime, open_session, Runner):
onnxruntime's C API through ctypes, checked against the Python binding.

The binding is what the models were verified with on the hub; the agent must get exactly
the same numbers through the C API, for every shipped model, in batches and row by row.
Tests may import numpy and the Python binding; the agent must not (test_agent_models.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil
import pytest

from edge_agent import BUILTIN_MODELS, ModelError
from edge_agent import testing as edge
from edge_agent.testing import INPUT, OUTPUT, Runner, open_session
from firmware_sim import FaultSpec, Fleet, FleetSpec
from protocol import (
    ANOMALY_FEATURES,
    FeatureState,
    ModelManifest,
    SchemaError,
    SignalBaseline,
    check_signal_value,
    feature_names,
    is_baselined,
    signal_spec,
)
from tests.edge import _onnx

MODELS = sorted(p.name.removesuffix(".onnx") for p in BUILTIN_MODELS.glob("*.onnx"))
RANDOM_ROWS = 2_000


def _manifest(name: str) -> ModelManifest:
    return ModelManifest.from_json((BUILTIN_MODELS / f"{name}.manifest.json").read_bytes())


def _reference_session(data: bytes) -> ort.InferenceSession:
    """The Python binding, set up as the agent set it up before the C API (same numbers)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _real_rows() -> dict[str, list[list[float]]]:
    """Feature vectors of simulated customers (per product) and anomaly features of their
    devices' gauge readings, computed with the agent's own feature code."""
    fleet = Fleet.generate(
        FleetSpec(seed=11, devices=12, days=20, faults=FaultSpec(anomaly_rate=0.02))
    )
    rows: dict[str, list[list[float]]] = {"anomaly": []}
    for device in fleet.devices:
        states: dict[str, FeatureState] = {}
        baselines: dict[str, SignalBaseline] = {}
        product_rows = rows.setdefault(device.product, [])
        for i, s in enumerate(fleet.signals(device.device_id)):
            try:
                value = check_signal_value(signal_spec(s.name), s.value)
            except SchemaError:
                continue  # the agent refuses it before features see it
            if is_baselined(s.name) and not isinstance(value, bool | str):
                b = baselines.setdefault(s.name, SignalBaseline(s.name))
                rows["anomaly"].append(list(b.observe(float(value), s.ts)))
            state = states.setdefault(s.subject, FeatureState(device.product))
            state.update(s.name, s.ts, value)
            if i % 7 == 0:
                product_rows.append(state.vector(s.ts))
    # Gauge readings are many more than customer snapshots: keep a spread-out 3,000.
    step = max(1, len(rows["anomaly"]) // 3_000)
    rows["anomaly"] = rows["anomaly"][::step][:3_000]
    return rows


@pytest.fixture(scope="module")
def real_rows() -> dict[str, list[list[float]]]:
    return _real_rows()


def _random_rows(width: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    rows = [[0.0] * width, [1.0] * width, [-1.0] * width, [1e6] * width]
    for _ in range(RANDOM_ROWS):
        scale = rng.choice((0.01, 1.0, 10.0, 1000.0))
        rows.append([rng.gauss(0.0, scale) for _ in range(width)])
    return rows


def _same(got: edge.Output | list[Any], want: np.ndarray) -> bool:
    """Bit-exact equality (NaN equal to NaN) of our output and the binding's array."""
    if isinstance(got, edge.Output):
        assert got.dtype == str(want.dtype)
        assert got.shape == want.shape
        values: list[Any] = got.values
    else:
        values = got
    mine = np.asarray(values, dtype=want.dtype).reshape(want.shape)
    return mine.tobytes() == want.tobytes()


@pytest.mark.parametrize("name", MODELS)
def test_outputs_equal_the_python_binding(name: str, real_rows: dict[str, Any]) -> None:
    """Every shipped model gives bit-identical outputs through the C API, in one batch
    and row by row (the single-row fast path), on random and real feature rows."""
    manifest = _manifest(name)
    data = (BUILTIN_MODELS / f"{name}.onnx").read_bytes()
    product = name.split("-", 1)[1]
    rows = _random_rows(len(manifest.inputs), seed=len(name))
    real = real_rows["anomaly" if manifest.kind == "anomaly" else product]
    assert len(real) >= 1_000, f"too few real rows for {name}: {len(real)}"
    if manifest.kind == "micro":  # its rows carry the label the segment model gave them
        segment = _reference_session((BUILTIN_MODELS / f"segment-{product}.onnx").read_bytes())
        labels = segment.run(["label"], {INPUT: np.asarray(real, dtype=np.float32)})[0]
        real = [[*r, float(label)] for r, label in zip(real, labels, strict=True)]
    rows += real
    output = OUTPUT[manifest.kind]
    reference = _reference_session(data)
    batch = np.asarray(rows, dtype=np.float32)
    want = reference.run([output], {INPUT: batch})[0]

    runner = Runner(manifest, open_session(data), builtin=True)
    assert _same(runner.run_many(rows), want)
    # One row at a time against the binding's one-row runs: a batch may take other
    # kernels' paths (e.g. a matrix product), whose last bits can differ from one row's.
    for i, row in enumerate(rows):
        one = reference.run([output], {INPUT: batch[i : i + 1]})[0]
        assert _same(runner.run1(row), one), (name, i, row)


@pytest.mark.parametrize("name", MODELS)
def test_inputs_and_outputs_are_described_like_the_binding(name: str) -> None:
    """Names, types and shapes read through the C API (their table positions) match."""
    data = (BUILTIN_MODELS / f"{name}.onnx").read_bytes()
    ref = _reference_session(data)
    session = open_session(data)

    def described(args: list[Any]) -> list[tuple[str, str, int]]:
        return [(a.name, a.type, len(a.shape)) for a in args]

    assert described(session.inputs) == described(ref.get_inputs())
    assert described(session.outputs) == described(ref.get_outputs())
    for mine, theirs in zip(session.inputs, ref.get_inputs(), strict=True):
        assert [d if isinstance(d, int) else None for d in mine.shape] == [
            d if isinstance(d, int) else None for d in theirs.shape
        ]


def test_symbolic_dimensions_and_non_tensor_outputs() -> None:
    """A named batch dimension comes back as its name; a wrong output is still described."""
    session = open_session(_onnx.renamed_output_onnx("score"))
    width = len(ANOMALY_FEATURES)
    assert session.inputs == [edge.IOInfo("features", "tensor(float)", ("N", width))]
    assert session.outputs == [edge.IOInfo("score", "tensor(float)", ("N", 1))]


def test_errors_carry_onnxruntime_messages() -> None:
    """Errors are ModelErrors with onnxruntime's own message (GetErrorMessage's position)."""
    with pytest.raises(ModelError) as err:
        open_session(b"this is not a protobuf" * 10)
    assert err.value.reason == "onnxruntime"
    assert "protobuf" in str(err.value)

    session = open_session(_onnx.anomaly_onnx(0))
    data = (ctypes.c_float * 8)()
    with pytest.raises(ModelError) as err:
        session.run("features", "scores", data, (2, 4))  # the model takes 5 columns
    assert err.value.reason == "onnxruntime"
    assert "features" in str(err.value)
    with pytest.raises(ModelError) as err:
        session.run("nope", "scores", data, (2, 3))
    assert "nope" in str(err.value)
    with pytest.raises(ModelError) as err:
        session.run("features", "scores", data, (3, 3))  # more than the buffer holds
    assert err.value.reason == "bad_features"


def test_single_run_refuses_an_output_of_another_shape() -> None:
    """The pre-allocated output of the fast path is never written with a wrong shape or
    type: onnxruntime fails the run instead."""
    session = open_session(_onnx.anomaly_onnx(0))
    width = len(ANOMALY_FEATURES)
    reading = [0.1, 0.2, 0.3, 0.4, 0.5][:width]
    for element, shape in (("float32", (1, 2)), ("int64", (1, 1))):
        one = session.single("features", width, "scores", element, shape)
        one.input[:] = reading
        with pytest.raises(ModelError):
            one()
    ok = session.single("features", width, "scores", "float32", (1, 1))
    ok.input[:] = reading
    assert len(ok()[:]) == 1


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def test_no_leaks_over_many_inferences_and_sessions() -> None:
    """Every status, value, type info, name and session is released: RSS stays flat."""
    churn = _onnx.churn_onnx(len(feature_names("coffee")), 0)
    width = len(feature_names("coffee"))
    manifest = _onnx.make_manifest("churn", "coffee", churn, feature_names("coffee"), None)
    row = [0.5] * width
    batch = [row] * 16

    def work(rounds: int) -> None:
        runner = Runner(manifest, open_session(churn), builtin=True)
        for _ in range(rounds):
            runner.run1(row)
            runner.run_many(batch)
        for _ in range(rounds // 100):
            session = open_session(churn)  # made, described, released
            assert session.outputs[0].name == "probabilities"
            with pytest.raises(ModelError):
                open_session(b"\x00garbage")  # an error status, released
            with pytest.raises(ModelError):
                session.run("features", "nope", (ctypes.c_float * width)(), (1, width))

    work(2_000)  # warm-up: arenas, caches, first-use code pages
    before = _rss()
    work(20_000)
    grown = _rss() - before
    # A leaked OrtValue per call would be megabytes here (20,000 x 2 runs).
    assert grown < 2 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB"


def test_library_location(tmp_path: Path) -> None:
    """Found beside the installed package without importing it; an override wins and a
    wrong override is a clear error."""
    found = edge.find_library({})
    assert found.name.startswith("libonnxruntime.so")
    assert Path(ort.__file__).parent in found.parents
    assert edge.find_library({edge.LIBRARY_ENV: str(found)}) == found
    with pytest.raises(ModelError) as err:
        edge.find_library({edge.LIBRARY_ENV: str(tmp_path / "missing.so")})
    assert err.value.reason == "runtime_missing"
    assert edge.LIBRARY_ENV in str(err.value)

    with pytest.raises(ModelError) as err:
        edge.Runtime(Path(ctypes.util.find_library("c") or "libc.so.6"))
    assert err.value.reason == "runtime_missing"

    with pytest.raises(ModelError) as err:
        edge.Runtime(found, api_version=10_000)
    assert "C API version 10000" in str(err.value)


def test_library_version_is_the_bindings() -> None:
    assert edge.runtime().version == ort.__version__


def test_builtin_manifests_cover_every_kind() -> None:
    """The equivalence test above covers all four kinds for every product."""
    kinds = {
        json.loads((BUILTIN_MODELS / f"{m}.manifest.json").read_text())["kind"] for m in MODELS
    }
    assert kinds == {"segment", "churn", "anomaly", "micro"}
    assert any(_manifest(m).inputs == ANOMALY_FEATURES for m in MODELS)


def test_a_missing_library_refuses_models_with_a_clear_reason(tmp_path: Path) -> None:
    """Without the C library the agent still starts: every model is refused as
    ``load_failed``, and the status says what to install or set."""
    child = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from edge_agent import BUILTIN_MODELS, ModelStore\n"
        "store = ModelStore(Path(sys.argv[1]), 'coffee', {}, builtin=BUILTIN_MODELS)\n"
        "print(json.dumps({n: [f.reason, f.message] for n, f in store.failures().items()}))\n"
    )
    env = {**os.environ, edge.LIBRARY_ENV: str(tmp_path / "libonnxruntime.so.1")}
    done = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path / "models")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(failures) == ["anomaly-coffee", "churn-coffee", "micro-coffee", "segment-coffee"]
    for reason, message in failures.values():
        assert reason == "load_failed"
        assert edge.LIBRARY_ENV in message
