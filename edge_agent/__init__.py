"""TwinSync edge agent: the device daemon.

``Agent`` ingests firmware signals, pseudonymizes the customer on the device, turns
signals into twin deltas kept in a durable SQLite outbox, and syncs them to the hub over
MQTT with at-least-once delivery. ``load_config`` reads ``agent.toml``.
"""

from ._agent import Agent
from ._config import AgentConfig, Keys, load_config
from ._errors import ConfigError, EdgeAgentError, OutboxError
from ._twin import IngestResult

__all__ = [
    "Agent",
    "AgentConfig",
    "ConfigError",
    "EdgeAgentError",
    "IngestResult",
    "Keys",
    "OutboxError",
    "load_config",
]
