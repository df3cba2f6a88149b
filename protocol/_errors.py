"""The exception tree shared by every TwinSync package.

    TwinSyncError                  root: catch this to catch anything TwinSync raises
    ├── DecodeError                bytes from the wire could not become a message
    │   ├── LimitError             a hard decoding limit was exceeded (size, count, length)
    │   └── SchemaError            well-formed msgpack, but not a valid message
    │       └── TagError           a behaviour tag rule or catalog is malformed (_tag_rules)
    ├── SignatureError             a signature or key id did not verify
    ├── TopicError                 a topic is not part of the TwinSync scheme
    ├── IdentifierError            a brand, device, twin or field name is malformed
    └── ClockError                 a timestamp is outside the accepted window

Other packages derive their own roots from :class:`TwinSyncError`
(``EdgeAgentError``, ``CloudHubError``, ``SimulationError``).

Every error carries a short machine-readable ``reason`` (used as a metric label and in
logs) and a message that says what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ClockError",
    "DecodeError",
    "IdentifierError",
    "LimitError",
    "SchemaError",
    "SignatureError",
    "TopicError",
    "TwinSyncError",
]


class TwinSyncError(Exception):
    """Root of every exception raised by TwinSync code."""

    #: Short, stable, machine-readable cause; used as a Prometheus label value.
    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class DecodeError(TwinSyncError):
    """Bytes could not be decoded into a whole, valid message."""

    reason = "malformed"


class LimitError(DecodeError):
    """A hard limit (payload bytes, element count, string length, nesting) was exceeded."""

    reason = "oversized"


class SchemaError(DecodeError):
    """The payload decoded, but does not match the message schema."""

    reason = "schema"


class SignatureError(TwinSyncError):
    """A signature, or the key id it names, did not verify."""

    reason = "signature"


class TopicError(TwinSyncError):
    """A topic does not follow ``ts/v1/{brand}/{device}/{channel}``."""

    reason = "topic"


class IdentifierError(TwinSyncError):
    """A brand, device, twin or field identifier is malformed."""

    reason = "identifier"


class ClockError(TwinSyncError):
    """A timestamp lies outside the window this component accepts."""

    reason = "timestamp"
