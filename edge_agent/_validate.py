"""validate: is a signal well-formed, known, sane and on time?

Two stages. A request line that is not a ``protocol.SignalIn`` at all is *malformed*:
:func:`explain_malformed` says which key is wrong and what it must be, for the reply to
firmware. A well-formed signal then goes through :func:`validate` (catalog name, value,
timestamp), whose reasons are the documented rejection reasons.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from pydantic import ValidationError

from protocol import Scalar, SchemaError, SignalIn, SignalSpec, check_signal_value, signal_spec

__all__ = ["Invalid", "Malformed", "explain_malformed", "validate"]

#: what each key of a signal must be, in the order replies name them
_MUST = {
    "seq": "a non-negative integer (the firmware's own per-device counter)",
    "ts": "an integer (the device clock, Unix ms)",
    "subject": "a string of 1 to 256 characters (the customer id)",
    "name": "a string of 1 to 64 characters (a catalog signal, e.g. coffee.brew)",
    "value": "a number, true/false or a string",
}
_SHAPE = (
    'a signal is {"seq", "ts", "subject", "name", "value"}; other requests are '
    '{"consent" | "view" | "fields": {...}}'
)
_UNKNOWN_SHOWN = 5  # unknown keys named in one reply (a 4 KiB line can hold hundreds)
_KEY_CHARS = 40


class Invalid(Exception):  # noqa: N818 - a verdict, not an error the agent raises to callers
    """A signal that must be rejected, with the reason reported to firmware and metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Malformed(NamedTuple):
    """Why a request line is not a signal."""

    #: for the sender: every wrong key and what it must be (unknown keys by name)
    detail: str
    #: for the log: the same with unknown key names withheld (a key could be anything
    #: firmware put there, even a customer id); never a value either
    loggable: str


def _kind(value: object) -> str:
    """The JSON type of ``value``, for "got ..." (the value itself is never repeated: it
    may be the raw customer id)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def explain_malformed(exc: ValidationError) -> Malformed:
    """Turn SignalIn's validation errors into one line naming each wrong key."""
    wrong: dict[str, str] = {}
    missing: list[str] = []
    unknown: list[str] = []
    for error in exc.errors():
        loc, kind = error["loc"], error["type"]
        if kind == "json_invalid":
            # The parser's position ("at line 1 column 9"), never the text around it.
            text = f"not valid JSON: {error.get('ctx', {}).get('error', 'unreadable')}"
            return Malformed(text, text)
        if not loc:
            text = f"a request line must be one JSON object, got {_kind(error['input'])}"
            return Malformed(text, text)
        key = str(loc[0])
        if kind == "missing":
            missing.append(key)
        elif kind == "extra_forbidden":
            unknown.append(key)
        elif key in _MUST and key not in wrong:
            if kind.endswith("_type"):
                wrong[key] = f"{key} must be {_MUST[key]}, got {_kind(error['input'])}"
            else:  # a constraint: pydantic's words say which (length, >= 0), not the value
                wrong[key] = f"{key} must be {_MUST[key]}: {error['msg'].lower()}"
    order = list(_MUST)
    parts = [wrong[k] for k in sorted(wrong, key=order.index)]
    if missing:
        parts.append("missing " + ", ".join(sorted(missing, key=order.index)))
    loggable = list(parts)
    if unknown:
        shown = ", ".join(json.dumps(k[:_KEY_CHARS]) for k in unknown[:_UNKNOWN_SHOWN])
        more = f" and {len(unknown) - _UNKNOWN_SHOWN} more" if len(unknown) > _UNKNOWN_SHOWN else ""
        plural = "s" if len(unknown) > 1 else ""
        parts.append(f"unknown key{plural} {shown}{more}")
        loggable.append(f"{len(unknown)} unknown key{plural} (names not logged)")
    if missing or unknown:
        parts.append(_SHAPE)
    return Malformed("; ".join(parts), "; ".join(loggable))


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
