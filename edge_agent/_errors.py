"""Exceptions of the edge agent.

protocol.TwinSyncError
└── EdgeAgentError        root of everything the agent raises
    ├── ConfigError       agent.toml / environment invalid: fix the named setting
    ├── OutboxError       the SQLite outbox cannot be opened or written
    └── ModelError        a model cannot be used as asked (bad feature vector, no rollback)
        └── ModelRejected a model was refused (install, start-up load, rollback); the
                          running model is untouched
"""

from __future__ import annotations

from protocol import TwinSyncError

__all__ = ["ConfigError", "EdgeAgentError", "ModelError", "ModelRejected", "OutboxError"]


class EdgeAgentError(TwinSyncError):
    """Root of every exception raised by the edge agent."""


class ConfigError(EdgeAgentError):
    """The configuration is invalid; the message names the setting."""

    reason = "config"


class OutboxError(EdgeAgentError):
    """The durable outbox cannot be opened or written."""

    reason = "outbox"


class ModelError(EdgeAgentError):
    """A model operation failed (``bad_features``, ``unknown_model``, ``no_previous``...)."""

    reason = "model"


class ModelRejected(ModelError):  # noqa: N818 - a verdict on a model, named as the agent reports it
    """A model was refused; ``reason`` says which check failed, ``ref`` which model.

    Reasons: ``malformed``, ``too_large``, ``unknown_key``, ``signature``,
    ``hash_mismatch``, ``wrong_product``, ``incompatible_inputs``, ``kind_changed``,
    ``downgrade``, ``load_failed``, ``bad_io``, ``smoke_failed``, ``missing``,
    ``corrupt_pointer``, ``io``.
    """

    reason = "rejected"

    def __init__(self, message: str, *, reason: str | None = None, ref: str = "") -> None:
        super().__init__(message, reason=reason)
        #: ``name@version`` of the refused model ("" when the manifest did not parse)
        self.ref = ref
