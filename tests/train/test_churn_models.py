"""The churn models as devices run them: a logistic regression, or for the thermostat
small boosted trees, on the comparisons with the customer's usual self; the ONNX graph
answers as the fitted model does and reads nothing else (docs/models.md, "Churn")."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.metrics import roc_auc_score

from protocol import feature_names
from twinsync.training import churn_columns, fit_churn


def _rows(product: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows where churn needs both a drop in use and a usual rate resting on some days
    (an interaction a linear model cannot draw, trees can)."""
    names = feature_names(product)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(names)))
    x[:, names.index("usual_days")] = rng.uniform(0.0, 40.0, n)
    drop = x[:, names.index("uses_vs_usual_3d")] < -0.8
    known = x[:, names.index("usual_days")] > 10.0
    y = (drop & known) ^ (rng.random(n) < 0.05)
    return x, y


def _probabilities(model: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (out,) = session.run(["probabilities"], {"features": x.astype(np.float32)})
    return np.asarray(out)[:, 1]


@pytest.mark.parametrize(("product", "node"), [("thermostat", "TreeEnsembleClassifier"),
                                               ("coffee", "LinearClassifier")])  # fmt: skip
def test_churn_graph_answers_as_fitted_and_reads_only_its_columns(product: str, node: str) -> None:
    x, y = _rows(product, 3000, 1)
    fitted = fit_churn(x.tolist(), y.tolist(), product, churn_columns(product))
    ops = {n.op_type for n in onnx.load_from_string(fitted.onnx).graph.node}
    assert node in ops
    # The exported graph answers as the fitted model (checked on every fit).
    assert fitted.metrics["onnx_max_abs_diff"] < 1e-4
    # Only its columns: the habits and everything else may be anything.
    names = feature_names(product)
    read = {names[i] for i in churn_columns(product)}
    assert "share_morning" not in read
    assert "uses_vs_usual_7d" in read
    assert "trend_7_vs_21" in read
    other = x.copy()
    rng = np.random.default_rng(2)
    for i, name in enumerate(names):
        if name not in read:
            other[:, i] = rng.normal(size=len(x)) * 100
    assert np.array_equal(_probabilities(fitted.onnx, x), _probabilities(fitted.onnx, other))
    # And it learnt the rule, on rows it never saw.
    test_x, test_y = _rows(product, 2000, 3)
    score = roc_auc_score(test_y, _probabilities(fitted.onnx, test_x))
    assert score > (0.85 if product == "thermostat" else 0.75)
