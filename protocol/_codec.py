"""msgpack encoding with hard decoding limits.

Every decoder rejects early: the payload size is checked before anything is parsed, and
msgpack's own limits cap string, binary, array and map lengths (its C unpacker also caps
nesting depth). Foreign msgpack exceptions never escape: they become DecodeError or
LimitError with a reason a metric can count.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from ._errors import DecodeError, LimitError

__all__ = ["DEFAULT_LIMITS", "Limits", "packb", "unpackb"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits applied while decoding one msgpack document."""

    max_bytes: int = 256 * 1024
    max_str: int = 256
    max_bin: int = 256 * 1024
    max_array: int = 8192
    max_map: int = 64


DEFAULT_LIMITS = Limits()


def packb(obj: object) -> bytes:
    """Encode ``obj`` as msgpack (bin type for bytes, str for text)."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpackb(data: bytes, limits: Limits = DEFAULT_LIMITS) -> object:
    """Decode one whole msgpack document within ``limits``.

    Raises LimitError when a limit is exceeded and DecodeError for anything malformed
    (truncated data, trailing bytes, invalid UTF-8, non-string map keys, ext types).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > limits.max_bytes:
        raise LimitError(f"payload of {len(data)} bytes exceeds the {limits.max_bytes} byte limit")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bin,
            max_array_len=limits.max_array,
            max_map_len=limits.max_map,
            max_ext_len=0,
        )
    except ValueError as exc:
        # msgpack reports every exceeded length limit as a plain ValueError.
        if "exceeds max" in str(exc):
            raise LimitError(f"msgpack limit exceeded: {exc}") from exc
        raise DecodeError(f"malformed msgpack: {exc}") from exc
    except (msgpack.UnpackException, msgpack.ExtraData, TypeError, RecursionError) as exc:
        raise DecodeError(f"malformed msgpack: {exc.__class__.__name__}: {exc}") from exc
