"""Model training (needs the ``train`` extra: scikit-learn, skl2onnx, onnx).

Imported only by ``twinsync train`` (and its alias ``twinsync hub train``), so a hub
without the extra runs everything else.

- whole runs: :func:`train_from_sim` (a simulated fleet, scored against its ground
  truth on unseen fleets beside simple baselines; :class:`SimTraining` says what to
  simulate; ``kinds`` retrains some model kinds only) and :func:`train_segments` on
  the features a hub holds (:func:`fetch_features`);
- the steps they are made of, for a run of your own: snapshot times
  (:func:`cutoffs`), one row of features per customer and time as the device computes
  it (:func:`customer_rows`, :class:`CustomerRows`), the feature columns each kind of
  model reads (:func:`churn_columns`, :func:`segment_columns`), robust scaling
  (:func:`robust_scaler`), fitting (:func:`fit_churn`, :func:`fit_segment`, each a
  :class:`Fitted` ONNX model) and held-out scores with bootstrap intervals over
  customers (:func:`auc_interval`, :func:`matched_accuracy`), the churn ceiling from
  observed counts (:func:`count_ceiling`);
- anomaly flags as an operator sees them: alerts (:func:`alert_groups`, runs of flagged
  readings of one signal within :data:`ALERT_GAP_MS`), scored beside the readings by
  :func:`anomaly_flag_scores`;
- micro-segments, a second level inside each segment (:func:`fit_micro`, a
  :class:`MicroModel`; :func:`evaluate_micro`: stability across training fleets and
  silhouette beside a one-feature split; :func:`train_micro` ships them: docs/models.md).
"""

from ._alerts import ALERT_GAP_MS, alert_groups
from ._baselines import SegmentBaseline, Threshold, fit_anomaly_thresholds, fit_segment_baselines
from ._count_ceiling import count_ceiling
from ._dataset import AnomalyRows, CustomerRows, anomaly_rows, customer_rows, replay, segment_rows
from ._evaluate import anomaly_flag_scores
from ._fit import Fitted, churn_columns, fit_anomaly, fit_churn, robust_scaler
from ._fleets import SimTraining, cutoffs, dense_fleet
from ._from_influx import fetch_features, train_segments
from ._metrics import auc_interval, average_precision, matched_accuracy, precision_at_rate
from ._micro import MicroModel, evaluate_micro, fit_micro, segment_labels
from ._micro_ship import MIN_ARI, merge_micro, ship_rule, train_micro
from ._segments import fit_segment, segment_columns
from ._targets import check_targets
from ._train import KINDS, TrainingError, train_from_sim

__all__ = [
    "ALERT_GAP_MS",
    "KINDS",
    "MIN_ARI",
    "AnomalyRows",
    "CustomerRows",
    "Fitted",
    "MicroModel",
    "SegmentBaseline",
    "SimTraining",
    "Threshold",
    "TrainingError",
    "alert_groups",
    "anomaly_flag_scores",
    "anomaly_rows",
    "auc_interval",
    "average_precision",
    "check_targets",
    "churn_columns",
    "count_ceiling",
    "customer_rows",
    "cutoffs",
    "dense_fleet",
    "evaluate_micro",
    "fetch_features",
    "fit_anomaly",
    "fit_anomaly_thresholds",
    "fit_churn",
    "fit_micro",
    "fit_segment",
    "fit_segment_baselines",
    "matched_accuracy",
    "merge_micro",
    "precision_at_rate",
    "replay",
    "robust_scaler",
    "segment_columns",
    "segment_labels",
    "segment_rows",
    "ship_rule",
    "train_from_sim",
    "train_micro",
    "train_segments",
]
