"""TwinSync edge agent: the device daemon.

``Agent`` ingests firmware signals, pseudonymizes the customer on the device, turns
signals into twin deltas kept in a durable SQLite outbox, and syncs them to the hub over
MQTT with at-least-once delivery. ``load_config`` reads ``agent.toml``. ``ModelStore``
verifies, installs and serves the on-device ONNX models.
"""

from ._agent import Agent
from ._config import AgentConfig, Keys, load_config
from ._errors import ConfigError, EdgeAgentError, ModelError, ModelRejected, OutboxError
from ._models import BUILTIN_MODELS, ModelFailure, ModelStore
from ._twin import IngestResult

__all__ = [
    "BUILTIN_MODELS",
    "Agent",
    "AgentConfig",
    "ConfigError",
    "EdgeAgentError",
    "IngestResult",
    "Keys",
    "ModelError",
    "ModelFailure",
    "ModelRejected",
    "ModelStore",
    "OutboxError",
    "load_config",
]
