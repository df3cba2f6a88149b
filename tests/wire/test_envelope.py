"""Signed envelopes: round trip, forgery, tampering and malformed input."""

from __future__ import annotations

import pytest

from protocol import (
    DecodeError,
    Envelope,
    LimitError,
    SchemaError,
    SignatureError,
    SigningKey,
    open_envelope,
    packb,
    seal,
)


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


def _env(key: SigningKey, **kw: object) -> Envelope:
    base: dict[str, object] = {
        "kind": "delta",
        "brand": "acme",
        "device": "dev-1",
        "seq": 42,
        "kid": key.kid,
        "sent_ms": 1_700_000_000_000,
        "body": b"\x80",
    }
    base.update(kw)
    return Envelope(**base)  # type: ignore[arg-type]


def test_round_trip_verifies(key: SigningKey) -> None:
    env = _env(key)
    assert open_envelope(seal(env, key)).verify(key.public) == env


def test_wrong_key_is_rejected(key: SigningKey) -> None:
    other = SigningKey.generate()
    with pytest.raises(SignatureError) as info:
        open_envelope(seal(_env(key), key)).verify(other.public)
    assert info.value.reason == "wrong_key"


def test_forged_signature_with_matching_kid_is_rejected(key: SigningKey) -> None:
    forger = SigningKey.generate()
    signed = packb([1, "delta", "acme", "dev-1", 42, key.kid, 1, b"\x80"])
    wire = packb([signed, forger.sign(signed)])
    with pytest.raises(SignatureError) as info:
        open_envelope(wire).verify(key.public)
    assert info.value.reason == "signature"


def test_tampered_body_fails_signature(key: SigningKey) -> None:
    wire = bytearray(seal(_env(key, body=b"\x81\xa1t\x90"), key))
    idx = wire.index(b"\xa1t")
    wire[idx + 1] = ord("u")
    with pytest.raises(SignatureError):
        open_envelope(bytes(wire)).verify(key.public)


def test_seal_refuses_mismatched_kid(key: SigningKey) -> None:
    with pytest.raises(ValueError, match="kid"):
        seal(_env(key, kid="0" * 16), key)


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (b"", DecodeError),
        (b"\xc1", DecodeError),
        (b"\x92\xc4\x01", DecodeError),  # truncated
        (packb([b"x", b"y"]) + b"\x00", DecodeError),  # trailing data
        (packb({"a": 1}), DecodeError),
        (packb([b"x"]), SchemaError),
        (packb([b"x", b"s" * 10]), SchemaError),  # short signature
        (packb([packb([1, 2, 3]), b"s" * 64]), SchemaError),
        (packb([packb([3, "delta", "acme", "d", 1, "k" * 16, 1, b""]), b"s" * 64]), SchemaError),
        (packb([packb([1, "nope", "acme", "d", 1, "k" * 16, 1, b""]), b"s" * 64]), SchemaError),
        (packb([packb([1, "delta", "ACME", "d", 1, "k" * 16, 1, b""]), b"s" * 64]), SchemaError),
        (packb([packb([1, "delta", "acme", "d", -1, "k" * 16, 1, b""]), b"s" * 64]), SchemaError),
        (packb([packb([1, "delta", "acme", "d", 1, "k" * 16, 1, "str"]), b"s" * 64]), SchemaError),
        (packb([packb([1, "delta", "acme", "d", True, "k" * 16, 1, b""]), b"s" * 64]), SchemaError),
        (b"\x92" + b"\xc6" + (300_000).to_bytes(4, "big"), DecodeError),
    ],
)
def test_malformed_envelopes_raise_decode_errors(wire: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        open_envelope(wire)


def test_oversized_payload_is_rejected_before_parsing() -> None:
    with pytest.raises(LimitError) as info:
        open_envelope(b"\x00" * (256 * 1024 + 1))
    assert info.value.reason == "oversized"


def test_deep_nesting_is_rejected() -> None:
    with pytest.raises(DecodeError):
        open_envelope(b"\x91" * 100_000 + b"\x00")
