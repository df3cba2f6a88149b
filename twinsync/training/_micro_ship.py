"""Shipping micro-segments: the ship rule, one graph per product, and its training run.

:mod:`._micro` splits each segment on its own (one ONNX graph per segment). A device
runs one model per kind, so the splits worth keeping are merged here into one
``micro-<product>`` graph behind the segment model's label: input ``features`` is the
segment model's row plus the label it gave (:data:`protocol.MICRO_SEGMENT_INPUT`, last
column), output ``label`` is the micro-segment inside that segment, 0 wherever the
segment is not split.

**Ship rule** (docs/models.md, "Micro-segments"): a segment's split is kept only where
two models trained on two training fleets agree on it (adjusted Rand index >= 0.6, on
the second training fleet's rows) and it separates better (silhouette) than the best
split by one feature's quantiles. Decided on training fleets only; the held-out fleets
stay unseen.

The micro model is trained against the segment model that ships (its labels are the
rows' segments), so it must be retrained whenever a segment model changes:
``twinsync hub train --micro`` (``make micro-models``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, compose, helper

from protocol import MICRO_SEGMENT_INPUT, ModelManifest, SigningKey, feature_names, sha256_hex

from ._dataset import segment_rows
from ._fleets import MIN_HISTORY_DAYS, SimTraining, fleet
from ._micro import MicroModel, evaluate_micro, fit_micro, segment_labels

__all__ = ["MIN_ARI", "merge_micro", "ship_rule", "train_micro"]

#: stability a split needs to ship (adjusted Rand index between two training fleets)
MIN_ARI = 0.6
_INPUT = "features"


def ship_rule(report: dict[int, dict[str, Any]]) -> set[int]:
    """The segments whose split ships, from :func:`evaluate_micro`'s report."""
    return {
        segment
        for segment, e in report.items()
        if "stability_ari" in e
        and e["stability_ari"] >= MIN_ARI
        and e["silhouette"] > e["silhouette_one_feature"]
    }


def merge_micro(model: MicroModel, keep: set[int]) -> bytes:
    """One graph: the kept segments' splits behind the segment label (module docstring)."""
    width = len(feature_names(model.product))
    nodes = [
        helper.make_node("Slice", [_INPUT, "m_zero", "m_width", "m_one"], ["m_x"], name="m_read_x"),
        helper.make_node(
            "Slice", [_INPUT, "m_width", "m_width1", "m_one"], ["m_segcol"], name="m_read_seg"
        ),
        helper.make_node("Reshape", ["m_segcol", "m_flat"], ["m_segf"], name="m_flatten"),
        # The label travels as a float: round before the cast so 2.9999 is segment 3.
        helper.make_node("Round", ["m_segf"], ["m_segr"], name="m_round"),
        helper.make_node("Cast", ["m_segr"], ["m_seg"], to=TensorProto.INT64, name="m_cast"),
        helper.make_node("Mul", ["m_seg", "m_izero"], ["m_out0"], name="m_zeros"),
    ]
    inits = [
        helper.make_tensor("m_zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("m_width", TensorProto.INT64, [1], [width]),
        helper.make_tensor("m_width1", TensorProto.INT64, [1], [width + 1]),
        helper.make_tensor("m_one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("m_flat", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("m_izero", TensorProto.INT64, [], [0]),
    ]
    opsets: dict[str, int] = {"": 17}
    current = "m_out0"
    for segment in sorted(keep):
        prefix = f"s{segment}_"
        sub = compose.add_prefix(onnx.load_from_string(model.onnx[segment]), prefix)
        for node in sub.graph.node:
            node.input[:] = ["m_x" if i == f"{prefix}{_INPUT}" else i for i in node.input]
        nodes += list(sub.graph.node)
        inits += list(sub.graph.initializer)
        for op in sub.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
        label = sub.graph.output[0].name
        inits.append(helper.make_tensor(f"m_s{segment}", TensorProto.INT64, [], [segment]))
        nodes += [
            helper.make_node("Equal", ["m_seg", f"m_s{segment}"], [f"m_is{segment}"]),
            helper.make_node("Reshape", [label, "m_flat"], [f"m_l{segment}"]),
            helper.make_node(
                "Where", [f"m_is{segment}", f"m_l{segment}", current], [f"m_o{segment}"]
            ),
        ]
        current = f"m_o{segment}"
    nodes.append(helper.make_node("Identity", [current], ["label"], name="m_label"))
    graph = helper.make_graph(
        nodes,
        f"micro-{model.product}",
        [helper.make_tensor_value_info(_INPUT, TensorProto.FLOAT, [None, width + 1])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None])],
        initializer=inits,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())]
    )
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


def _rows(product: str, seed: int, t: SimTraining, segment_onnx: bytes) -> tuple[Any, Any]:
    rows = segment_rows(fleet(seed, t.devices, t), product, min_history_days=MIN_HISTORY_DAYS)
    x = np.asarray(rows.x, dtype=np.float32)
    return x, segment_labels(segment_onnx, x)


def train_micro(
    out: Path,
    segments: Path,
    key: SigningKey | None,
    version: int,
    t: SimTraining,
    *,
    products: tuple[str, ...] = ("coffee", "thermostat", "tv", "wearable"),
) -> dict[str, Any]:
    """Train, judge and write ``micro-<product>.onnx`` + manifest for each product into
    ``out``, against the segment models ``segment-<product>.onnx`` in ``segments``.

    Two training fleets (seeds ``t.seed`` and ``t.seed + 1``); returns per product the
    evaluation per segment and which segments ship.
    """
    report: dict[str, Any] = {}
    out.mkdir(parents=True, exist_ok=True)
    for product in products:
        segment_onnx = (segments / f"segment-{product}.onnx").read_bytes()
        xa, sa = _rows(product, t.seed, t, segment_onnx)
        xb, sb = _rows(product, t.seed + 1, t, segment_onnx)
        a = fit_micro(xa, sa, product, seed=t.seed)
        b = fit_micro(xb, sb, product, seed=t.seed)
        evaluation = evaluate_micro(a, b, xb, sb)
        keep = ship_rule(evaluation)
        data = merge_micro(a, keep)
        metrics = {"segments_split": float(len(keep))}
        for segment in sorted(keep):
            metrics[f"k_segment_{segment}"] = float(a.k[segment])
            metrics[f"ari_segment_{segment}"] = float(evaluation[segment]["stability_ari"])
        manifest = ModelManifest(
            name=f"micro-{product}",
            version=version,
            kind="micro",
            product=product,
            inputs=(*feature_names(product), MICRO_SEGMENT_INPUT),
            sha256=sha256_hex(data),
            size=len(data),
            metrics={k: round(v, 4) for k, v in metrics.items() if math.isfinite(v)},
            created_ms=time.time_ns() // 1_000_000,
        )
        if key is not None:
            manifest = manifest.sign(key)
        (out / f"micro-{product}.onnx").write_bytes(data)
        (out / f"micro-{product}.manifest.json").write_text(manifest.to_json() + "\n")
        report[product] = {
            "segments": {str(s): e for s, e in evaluation.items()},
            "shipped_splits": sorted(keep),
        }
    return report
