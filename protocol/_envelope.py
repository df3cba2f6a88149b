"""The signed envelope every message travels in.

Wire form (msgpack): ``[signed: bin, signature: bin(64)]`` where ``signed`` is itself the
msgpack array ``[version, kind, brand, device, seq, kid, sent_ms, body: bin]``.

``version`` says how to read the body: :data:`ENVELOPE_VERSION` (1) is a plain msgpack
body, :data:`SEALED_VERSION` (2) a body encrypted to the hub (``protocol/_seal.py``). The
marker is in the signed header, so nobody guesses by trying to decrypt, and a hub that
predates sealing refuses the envelope before its signature check: it neither acks nor
rejects for good, so the device keeps the delta until a hub that can open it is there.

The signature covers the exact ``signed`` bytes, so verification needs no
canonicalisation; the header names the sender and key id, so the verifier picks the key
before touching the body; the body stays opaque bytes until the signature has been
checked (a forged message never reaches the body decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._codec import DEFAULT_LIMITS, Limits, packb, unpackb
from ._errors import IdentifierError, SchemaError, SignatureError
from ._ids import check_brand, check_device
from ._keys import SigningKey, VerifyKey
from ._topics import BROADCAST

__all__ = [
    "ENVELOPE_VERSION",
    "SEALED_VERSION",
    "Envelope",
    "Kind",
    "SignedEnvelope",
    "open_envelope",
    "seal",
]

ENVELOPE_VERSION = 1
#: the envelope version whose body is sealed to the hub (device -> hub kinds only)
SEALED_VERSION = 2
Kind = Literal[
    "delta", "status", "ack", "desired", "model", "tombstone", "consent", "tags", "offer"
]
_KINDS: frozenset[str] = frozenset(
    ("delta", "status", "ack", "desired", "model", "tombstone", "consent", "tags", "offer")
)
# Kinds the hub sends to every device of a brand: their header names no device.
_BROADCAST_KINDS: frozenset[str] = frozenset(("tombstone", "consent", "tags"))
_SEALABLE_KINDS: frozenset[str] = frozenset(("delta", "status"))
# The smallest sealed body: [hub_box_kid: str(16), device_box_pub: bin(32), tag: bin(16)].
_MIN_SEALED_BODY = len(packb(["k" * 16, bytes(32), bytes(16)]))
_HEADER_LIMITS = Limits(max_array=8, max_map=0)


@dataclass(frozen=True, slots=True)
class Envelope:
    """Header and opaque body of one message.

    ``seq`` is the sender's per-device sequence number for ``delta`` (strictly increasing,
    persisted before sending); other kinds use their own counters or 0. ``sent_ms`` is the
    sender's wall clock when sealing, used to measure clock skew, never to order data.
    """

    kind: Kind
    brand: str
    device: str
    seq: int
    kid: str
    sent_ms: int
    body: bytes
    version: int = ENVELOPE_VERSION

    @property
    def sealed(self) -> bool:
        """Whether ``body`` is sealed to the hub (open it with ``protocol.BodyOpener``)."""
        return self.version == SEALED_VERSION


@dataclass(frozen=True, slots=True)
class SignedEnvelope:
    """A decoded but not yet verified envelope."""

    envelope: Envelope
    signed: bytes
    signature: bytes

    def verify(self, key: VerifyKey) -> Envelope:
        """Return the envelope if ``key`` (whose kid must match the header) signed it."""
        if key.kid != self.envelope.kid:
            raise SignatureError(
                f"envelope names key {self.envelope.kid!r}, expected {key.kid!r}",
                reason="wrong_key",
            )
        key.verify(self.signature, self.signed)
        return self.envelope


def seal(envelope: Envelope, key: SigningKey) -> bytes:
    """Encode and sign ``envelope`` with ``key``; the header's kid must be the key's."""
    if envelope.kid != key.kid:
        raise ValueError(f"envelope kid {envelope.kid!r} is not the signing key's {key.kid!r}")
    signed = packb(
        [
            envelope.version,
            envelope.kind,
            envelope.brand,
            envelope.device,
            envelope.seq,
            envelope.kid,
            envelope.sent_ms,
            envelope.body,
        ]
    )
    return packb([signed, key.sign(signed)])


def _int(value: object, name: str, *, minimum: int = 0, maximum: int = (1 << 63) - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise SchemaError(f"envelope {name} must be an integer in [{minimum}, {maximum}]")
    return value


def open_envelope(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SignedEnvelope:
    """Decode the envelope structure; the caller must then :meth:`SignedEnvelope.verify` it."""
    outer = unpackb(
        data,
        Limits(
            max_bytes=limits.max_bytes, max_bin=limits.max_bin, max_array=2, max_map=0, max_str=0
        ),
    )
    if (
        not isinstance(outer, list)
        or len(outer) != 2
        or not isinstance(outer[0], bytes)
        or not isinstance(outer[1], bytes)
    ):
        raise SchemaError("envelope must be [signed: bin, signature: bin]")
    signed, signature = outer
    if len(signature) != 64:
        raise SchemaError(f"signature must be 64 bytes, got {len(signature)}")
    header = unpackb(
        signed,
        Limits(
            max_bytes=limits.max_bytes,
            max_bin=limits.max_bin,
            max_array=_HEADER_LIMITS.max_array,
            max_map=0,
            max_str=64,
        ),
    )
    if not isinstance(header, list) or len(header) != 8:
        raise SchemaError("envelope header must be an array of 8 elements")
    version, kind, brand, device, seq, kid, sent_ms, body = header
    if type(version) is not int or version not in (ENVELOPE_VERSION, SEALED_VERSION):
        raise SchemaError(f"unsupported envelope version {version!r}", reason="version")
    if kind not in _KINDS:
        raise SchemaError(f"unknown message kind {kind!r}")
    if version == SEALED_VERSION and kind not in _SEALABLE_KINDS:
        raise SchemaError(f"a {kind!r} envelope cannot be sealed", reason="bad_seal")
    if not isinstance(kid, str) or len(kid) != 16:
        raise SchemaError("envelope kid must be a 16-char key id")
    if not isinstance(body, bytes):
        raise SchemaError("envelope body must be bin")
    if version == SEALED_VERSION and len(body) < _MIN_SEALED_BODY:
        raise SchemaError(
            f"a sealed body is at least {_MIN_SEALED_BODY} bytes, got {len(body)}",
            reason="bad_seal",
        )
    try:
        envelope = Envelope(
            kind=kind,
            brand=check_brand(brand),
            device=BROADCAST
            if kind in _BROADCAST_KINDS and device == BROADCAST
            else check_device(device),
            seq=_int(seq, "seq"),
            kid=kid,
            sent_ms=_int(sent_ms, "sent_ms"),
            body=body,
            version=version,
        )
    except IdentifierError as exc:
        raise SchemaError(f"envelope header: {exc}") from exc
    return SignedEnvelope(envelope, bytes(signed), bytes(signature))
