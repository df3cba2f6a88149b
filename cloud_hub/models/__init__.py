"""models: the models brands roll out to devices.

The repository of uploaded models (``ModelRepo``), rollouts and cohorts
(``RolloutStore``), the publisher that sends each device its signed model set, and the
signed download URLs devices present instead of an API key; the behaviour tag catalog
the operator configures, signed and sent to devices (``TagPublisher``).
"""

from __future__ import annotations

from ._publisher import ModelPublisher
from ._repository import ModelRepo
from ._rollouts import Rollout, RolloutStore, Target
from ._signed_urls import model_url_signature, url_signer
from ._tags import TagPublisher, load_catalog

__all__ = [
    "ModelPublisher",
    "ModelRepo",
    "Rollout",
    "RolloutStore",
    "TagPublisher",
    "Target",
    "load_catalog",
    "model_url_signature",
    "url_signer",
]
