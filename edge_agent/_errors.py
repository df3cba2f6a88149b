"""Exceptions of the edge agent.

protocol.TwinSyncError
└── EdgeAgentError        root of everything the agent raises
    ├── ConfigError       agent.toml / environment invalid: fix the named setting
    └── OutboxError       the SQLite outbox cannot be opened or written
"""

from __future__ import annotations

from protocol import TwinSyncError

__all__ = ["ConfigError", "EdgeAgentError", "OutboxError"]


class EdgeAgentError(TwinSyncError):
    """Root of every exception raised by the edge agent."""


class ConfigError(EdgeAgentError):
    """The configuration is invalid; the message names the setting."""

    reason = "config"


class OutboxError(EdgeAgentError):
    """The durable outbox cannot be opened or written."""

    reason = "outbox"
