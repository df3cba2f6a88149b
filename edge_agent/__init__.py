"""TwinSync edge agent: the device daemon.

``Agent`` ingests firmware signals, pseudonymizes the customer on the device, turns
signals into twin deltas kept in a durable SQLite outbox, and syncs them to the hub over
MQTT with at-least-once delivery. ``load_config`` reads ``agent.toml``. ``ModelStore``
verifies, installs and serves the on-device ONNX models.
"""

from typing import TYPE_CHECKING, Any

from ._agent import Agent
from ._config import AgentConfig, Keys, load_config
from ._errors import ConfigError, EdgeAgentError, ModelError, ModelRejected, OutboxError
from ._offers import Exposure
from ._twin import IngestResult

if TYPE_CHECKING:
    from ._models import BUILTIN_MODELS, ModelFailure, ModelStore

# The model store loads onnxruntime's C library (through ctypes, without numpy or the
# Python binding), which costs ~16 MiB of RSS with its env and ~11 MiB more with the first
# sessions (docs/benchmarks.md): import it only when the model runtime is actually used.
_LAZY = {"BUILTIN_MODELS", "ModelFailure", "ModelStore"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _models

        return getattr(_models, name)
    raise AttributeError(f"module 'edge_agent' has no attribute {name!r}")


__all__ = [
    "BUILTIN_MODELS",
    "Agent",
    "AgentConfig",
    "ConfigError",
    "EdgeAgentError",
    "Exposure",
    "IngestResult",
    "Keys",
    "ModelError",
    "ModelFailure",
    "ModelRejected",
    "ModelStore",
    "OutboxError",
    "load_config",
]
