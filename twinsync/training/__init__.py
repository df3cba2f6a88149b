"""Model training (needs the ``train`` extra: scikit-learn, skl2onnx, onnx).

Imported only by ``twinsync train`` (and its alias ``twinsync hub train``), so a hub
without the extra runs everything else.

- whole runs: :func:`train_from_sim` (a simulated fleet, scored against its ground
  truth on an unseen fleet; :class:`SimTraining` says what to simulate) and
  :func:`train_segments` on the features a hub holds (:func:`fetch_features`);
- the steps they are made of, for a run of your own: snapshot times (:func:`cutoffs`),
  one row of features per customer and time as the device computes it
  (:func:`customer_rows`), the feature columns each kind of model reads
  (:func:`churn_columns`, :func:`segment_columns`), fitting (:func:`fit_churn`,
  :func:`fit_segment`) and held-out scores with bootstrap intervals over customers
  (:func:`auc_interval`).
"""

from ._dataset import customer_rows
from ._fit import auc_interval, churn_columns, fit_churn, fit_segment, segment_columns
from ._from_influx import fetch_features, train_segments
from ._train import SimTraining, cutoffs, train_from_sim

__all__ = [
    "SimTraining",
    "auc_interval",
    "churn_columns",
    "customer_rows",
    "cutoffs",
    "fetch_features",
    "fit_churn",
    "fit_segment",
    "segment_columns",
    "train_from_sim",
    "train_segments",
]
