"""scikit-learn pipelines to ONNX with the agreed I/O, and running them as a device would.

Conventions (protocol/_manifest.py): input ``features`` float32 ``[N, F]``; segment →
``label``; churn → ``probabilities`` (column 1 = P(churn within the horizon)); anomaly →
``scores`` ``[N, 1]``, larger is more anomalous. Held-out scores are computed by running
the exported bytes with onnxruntime, so what is reported is what devices run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

__all__ = ["keep_outputs", "run", "score_column", "to_onnx"]

_OPSET = 17


def to_onnx(model: Any, n_features: int, options: dict[Any, Any] | None = None) -> onnx.ModelProto:
    """``model`` as an ONNX graph taking ``features`` float32 ``[N, n_features]``."""
    proto: onnx.ModelProto = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, n_features]))],
        target_opset={"": _OPSET, "ai.onnx.ml": 3},
        options=options,
    )
    return proto


def keep_outputs(proto: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """Only the graph outputs in ``names`` (devices read one output per kind)."""
    keep = [o for o in proto.graph.output if o.name in names]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    return proto


def score_column(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Add ``scores = probabilities[:, 1:2]`` (the positive class) as the only output."""
    graph = proto.graph
    graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.array([1], np.int64), "anomaly_start"),
            onnx.numpy_helper.from_array(np.array([2], np.int64), "anomaly_end"),
            onnx.numpy_helper.from_array(np.array([1], np.int64), "anomaly_axis"),
        ]
    )
    graph.node.append(
        helper.make_node(
            "Slice",
            ["probabilities", "anomaly_start", "anomaly_end", "anomaly_axis"],
            ["scores"],
            name="anomaly_column",
        )
    )
    graph.output.append(helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [None, 1]))
    proto = keep_outputs(proto, {"scores"})
    onnx.checker.check_model(proto)
    return proto


def run(model: bytes, output: str, x: list[list[float]] | np.ndarray) -> np.ndarray:
    """``output`` of the ONNX ``model`` on rows ``x`` (one thread, like a device)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run([output], {"features": np.asarray(x, np.float32)})[0]
    return out
