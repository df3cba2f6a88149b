"""A loaded, verified model: its onnxruntime session and the checks it passed to serve.

:func:`load` makes a fresh session for a model's bytes (onnxruntime's C API, no numpy:
edge_agent._ort), checks the I/O conventions of protocol/_manifest.py (one float32 input
``features`` ``[N, width]``; one output per kind: segment ``label`` int64 ``[N]``, churn
``probabilities`` float32 ``[N, 2]``, anomaly ``scores`` float32 ``[N, 1]``, micro
``label`` int64 ``[N]``), then runs a
smoke inference and validates what comes out (shape, type, finite, probabilities in
[0, 1] summing to 1). Only a model that passes all of it becomes a :class:`Runner`.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Sequence
from typing import Any, Final, cast

from protocol import ModelKind, ModelManifest

from ._errors import ModelError, ModelRejected
from ._ort import Output
from ._ort_session import Session, open_session

__all__ = ["INPUT", "OUTPUT", "Runner", "load", "output_problem", "reject"]

#: the one input every model takes
INPUT: Final = "features"
#: the output each kind of model must have
OUTPUT: Final[dict[str, str]] = {
    "segment": "label",
    "churn": "probabilities",
    "anomaly": "scores",
    "micro": "label",
}
_OUTPUT_TYPE: Final[dict[str, str]] = {
    "segment": "tensor(int64)",
    "churn": "tensor(float)",
    "anomaly": "tensor(float)",
    "micro": "tensor(int64)",
}
# (element type, shape) of each kind's output for one row.
_ONE_ROW: Final[dict[str, tuple[str, tuple[int, ...]]]] = {
    "segment": ("int64", (1,)),
    "churn": ("float32", (1, 2)),
    "anomaly": ("float32", (1, 1)),
    "micro": ("int64", (1,)),
}
# Calibrated probabilities are float32: allow rounding, not mass outside [0, 1].
_PROB_TOLERANCE: Final = 1e-3
# numpy.allclose's default relative tolerance, which the row-sum check has always had.
_SUM_RTOL: Final = 1e-5


class Runner:
    """One loaded, verified model: its session and pre-allocated single-row tensors."""

    __slots__ = (
        "_lock",
        "_one",
        "_output",
        "_session",
        "builtin",
        "kind",
        "manifest",
        "ref",
        "threshold",
        "width",
    )

    def __init__(self, manifest: ModelManifest, session: Session, builtin: bool) -> None:
        self.manifest = manifest
        self.kind: ModelKind = manifest.kind
        self.ref = manifest.ref
        self.builtin = builtin
        self.threshold = float(manifest.threshold)
        self.width = len(manifest.inputs)
        self._session = session
        self._output = OUTPUT[manifest.kind]
        # Built once: the per-call cost is filling one row and onnxruntime's own work.
        element, shape = _ONE_ROW[manifest.kind]
        self._one = session.single(INPUT, self.width, self._output, element, shape)
        # The shared row makes a call a critical section; uncontended it costs far less
        # than the inference, and it keeps callers from other threads safe.
        self._lock = threading.Lock()

    def run1(self, vector: Sequence[float]) -> list[float] | list[int]:
        """The model's output for one row, flat (``[label]``, ``[p0, p1]`` or ``[score]``)."""
        if len(vector) != self.width:
            raise ModelError(
                f"{self.ref} takes {self.width} features, got {len(vector)}",
                reason="bad_features",
            )
        with self._lock:
            try:
                # ctypes takes any sequence here; its stubs ask for a list.
                self._one.input[:] = cast("list[Any]", vector)
            except (TypeError, ValueError) as exc:
                raise ModelError(
                    f"{self.ref}: bad feature vector: {exc}", reason="bad_features"
                ) from exc
            return self._one()[:]

    def run_many(self, rows: Sequence[Sequence[float]]) -> Output:
        """The model's output for a batch of rows."""
        width = self.width
        data = (ctypes.c_float * max(len(rows) * width, 1))()
        for i, row in enumerate(rows):
            try:
                if len(row) != width:
                    raise ModelError(
                        f"{self.ref} takes {width} features, got {len(row)} (row {i})",
                        reason="bad_features",
                    )
                data[i * width : (i + 1) * width] = cast("list[Any]", row)
            except (TypeError, ValueError) as exc:
                raise ModelError(
                    f"{self.ref}: bad feature rows: {exc}", reason="bad_features"
                ) from exc
        return self._session.run(INPUT, self._output, data, (len(rows), width))

    def output1(self, vector: Sequence[float]) -> Output:
        """:meth:`run1` as an :class:`Output` (the smoke test validates it like a batch)."""
        element, shape = _ONE_ROW[self.kind]
        return Output(element, shape, self.run1(vector))


def reject(reason: str, manifest: ModelManifest, message: str) -> ModelRejected:
    """The refusal of ``manifest`` for ``reason``."""
    return ModelRejected(
        f"model {manifest.ref} refused: {message}", reason=reason, ref=manifest.ref
    )


def load(manifest: ModelManifest, data: bytes, *, builtin: bool) -> Runner:
    """A fresh session for ``data``, checked against the I/O conventions and smoke-run."""
    try:
        session = open_session(data)
    except ModelError as exc:
        raise reject("load_failed", manifest, f"onnxruntime cannot load it: {exc}") from exc
    _check_io(manifest, session)
    try:
        runner = Runner(manifest, session, builtin)
    except ModelError as exc:
        raise reject("load_failed", manifest, f"onnxruntime cannot run it: {exc}") from exc
    _smoke(runner)
    return runner


def _check_io(manifest: ModelManifest, session: Session) -> None:
    inputs = session.inputs
    width = len(manifest.inputs)
    if len(inputs) != 1 or inputs[0].name != INPUT:
        names = [i.name for i in inputs]
        raise reject("bad_io", manifest, f"inputs are {names}, expected exactly [{INPUT!r}]")
    shape = list(inputs[0].shape)
    batch_ok = len(shape) == 2 and not isinstance(shape[0], int)
    if inputs[0].type != "tensor(float)" or not batch_ok or shape[1] != width:
        raise reject(
            "bad_io",
            manifest,
            f"input {INPUT!r} is {inputs[0].type} {shape}, expected tensor(float) [N, {width}]",
        )
    wanted, wanted_type = OUTPUT[manifest.kind], _OUTPUT_TYPE[manifest.kind]
    outputs = {o.name: o.type for o in session.outputs}
    if outputs.get(wanted) != wanted_type:
        raise reject(
            "bad_io",
            manifest,
            f"a {manifest.kind} model needs output {wanted!r} ({wanted_type}), has {outputs}",
        )


def _smoke(runner: Runner) -> None:
    """Run a row of zeros and a row of ones, as a batch and one by one; check the outputs."""
    manifest = runner.manifest
    rows = [[0.0] * runner.width, [1.0] * runner.width]
    try:
        # The batch first: it reports a wrong output shape or type in the words of
        # output_problem, where the single-row tensors would only fail the run.
        outputs = [runner.run_many(rows)]
        problem = output_problem(manifest.kind, outputs[0], 2)
        if not problem:
            outputs += [runner.output1(rows[0]), runner.output1(rows[1])]
    except ModelError as exc:
        raise reject("smoke_failed", manifest, f"smoke inference failed: {exc}") from exc
    for out, n in zip(outputs, (2, 1, 1), strict=False):
        problem = output_problem(manifest.kind, out, n)
        if problem:
            raise reject("smoke_failed", manifest, f"smoke inference: {problem}")


def output_problem(kind: str, out: Output, n: int) -> str:
    """What is wrong with a ``kind`` model's output for ``n`` rows ("" if nothing)."""
    if kind in ("segment", "micro"):
        if out.shape != (n,) or out.dtype != "int64":
            return f"label is {out.dtype} {out.shape}, expected int64 ({n},)"
        return ""
    expected = (n, 2) if kind == "churn" else (n, 1)
    if out.shape != expected or out.dtype != "float32":
        return f"{OUTPUT[kind]} is {out.dtype} {out.shape}, expected float32 {expected}"
    values = [float(v) for v in out.values]
    if not all(math.isfinite(v) for v in values):
        return f"{OUTPUT[kind]} is not finite: {out.tolist()}"
    if kind == "churn":
        low, high = -_PROB_TOLERANCE, 1 + _PROB_TOLERANCE
        if any(v < low or v > high for v in values):
            return f"probabilities outside [0, 1]: {out.tolist()}"
        sums = [values[i] + values[i + 1] for i in range(0, len(values), 2)]
        if any(abs(s - 1.0) > _PROB_TOLERANCE + _SUM_RTOL for s in sums):
            return f"probabilities do not sum to 1: {out.tolist()}"
    return ""
