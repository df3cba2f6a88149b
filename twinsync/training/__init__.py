"""Model training on the hub (needs the ``train`` extra: scikit-learn, skl2onnx, onnx).

Imported only by ``twinsync hub train``, so a hub without the extra runs everything else.
"""

from ._from_influx import fetch_features, train_segments
from ._train import SimTraining, train_from_sim

__all__ = ["SimTraining", "fetch_features", "train_from_sim", "train_segments"]
