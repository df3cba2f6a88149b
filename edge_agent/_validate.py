"""validate: is a signal well-formed, known, sane and on time?"""

from __future__ import annotations

from protocol import Scalar, SchemaError, SignalIn, SignalSpec, check_signal_value, signal_spec

__all__ = ["Invalid", "validate"]


class Invalid(Exception):  # noqa: N818 - a verdict, not an error the agent raises to callers
    """A signal that must be rejected, with the reason reported to firmware and metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def validate(
    signal: SignalIn, now_ms: int, max_age_ms: int, max_ahead_ms: int
) -> tuple[SignalSpec, Scalar]:
    """Return the signal's spec and normalised value, or raise :class:`Invalid`.

    Checks run in the order docs/architecture.md fixes (name, value, timestamp), so every
    implementation (and firmware_sim's ground truth) reports the same reason.
    """
    try:
        spec = signal_spec(signal.name)
        value = check_signal_value(spec, signal.value)
    except SchemaError as exc:
        raise Invalid(exc.reason, str(exc)) from None
    if not now_ms - max_age_ms <= signal.ts <= now_ms + max_ahead_ms:
        raise Invalid("timestamp", f"{signal.name}: ts {signal.ts} outside the accepted window")
    return spec, value
