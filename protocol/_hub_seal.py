"""Sealed hub-to-hub messages: what one hub instance tells the others over the broker.

Hub instances share one secret, ``hub.key``. Each derives the same AES-256-GCM-SIV key
from it (HKDF with its own label, independent of the signing key and of the hub box
key), so a message is encrypted to "every hub" and signed by "a hub": the broker, and any
client on it, sees no twin id, device id or value, and nobody without ``hub.key`` can
make one (a device's key is not the hub's, and the AEAD key follows from nothing public).

Wire form (msgpack): ``[signed: bin, signature: bin(64)]`` where ``signed`` is
``[domain, brand, channel, kid, sent_ms, nonce: bin(12), ciphertext: bin]``; the
ciphertext's associated data is the header before it, so a message moved to another
brand or channel, or re-stamped, does not open. Encrypt, then sign: the signature is
checked before anything is decrypted. The nonce is random (GCM-SIV tolerates a repeat)
and names the message, which lets a receiver refuse a replay it has seen; refusing
messages older than its window is the receiver's job (``sent_ms`` is the sender's hub
clock, comparable with the receiver's: both are hubs).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._codec import Limits, packb, unpackb
from ._errors import SchemaError, SignatureError, TwinSyncError
from ._keys import SigningKey

__all__ = ["HubMessage", "HubSealer"]

_DOMAIN = "twinsync/hub-msg/v1"
_KEY_INFO = b"twinsync/hub-msg-key/v1"
_NONCE = 12
_TAG = 16


@dataclass(frozen=True, slots=True)
class HubMessage:
    """An opened hub-to-hub message: authentic (signed by the hub key) and decrypted."""

    brand: str
    channel: str
    kid: str
    sent_ms: int
    #: random per message: what a receiver remembers to refuse a replay
    nonce: bytes
    body: bytes


def _message_key(key: SigningKey) -> bytes:
    ed = serialization.load_pem_private_key(key.to_pem(), password=None)
    assert isinstance(ed, Ed25519PrivateKey)  # type narrowing: SigningKey wraps Ed25519 only
    seed = ed.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return HKDF(hashes.SHA256(), 32, salt=None, info=_KEY_INFO).derive(seed)


class HubSealer:
    """Seals messages for the other hub instances and opens theirs (same ``hub.key``)."""

    __slots__ = ("_aead", "_key")

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self._aead = AESGCMSIV(_message_key(key))

    @property
    def kid(self) -> str:
        """Key id of the hub key messages are signed with."""
        return self._key.kid

    def seal(self, brand: str, channel: str, body: bytes, *, sent_ms: int) -> bytes:
        """Encrypt ``body`` for every hub instance, then sign; ``sent_ms`` is hub time."""
        nonce = secrets.token_bytes(_NONCE)
        header = [_DOMAIN, brand, channel, self._key.kid, sent_ms, nonce]
        ciphertext = self._aead.encrypt(nonce, body, packb(header))
        signed = packb([*header, ciphertext])
        return packb([signed, self._key.sign(signed)])

    def open(self, data: bytes, *, brand: str, channel: str, max_bytes: int) -> HubMessage:
        """Verify and decrypt a message that came on ``brand``'s ``channel``.

        Raises SchemaError (reason ``malformed``: not such a message, or over
        ``max_bytes``) or SignatureError (``wrong_key``: not signed with this hub key;
        ``signature``; ``misdirected``: made for another brand or channel; ``seal_tag``:
        does not decrypt).
        """
        try:
            outer = unpackb(
                data, Limits(max_bytes=max_bytes, max_bin=max_bytes, max_array=2, max_map=0)
            )
            if (
                not isinstance(outer, list)
                or len(outer) != 2
                or not isinstance(outer[0], bytes)
                or not isinstance(outer[1], bytes)
                or len(outer[1]) != 64
            ):
                raise SchemaError("a hub message is [signed: bin, signature: bin(64)]")
            signed, signature = outer
            header = unpackb(
                signed,
                Limits(max_bytes=max_bytes, max_bin=max_bytes, max_array=7, max_map=0, max_str=64),
            )
        except TwinSyncError as exc:
            raise SchemaError(f"not a hub message: {exc}", reason="malformed") from None
        if not isinstance(header, list) or len(header) != 7 or header[0] != _DOMAIN:
            raise SchemaError(f"not a hub message (no {_DOMAIN!r} header)", reason="malformed")
        _domain, m_brand, m_channel, kid, sent_ms, nonce, ciphertext = header
        if (
            not isinstance(kid, str)
            or type(sent_ms) is not int
            or sent_ms < 0
            or not isinstance(nonce, bytes)
            or len(nonce) != _NONCE
            or not isinstance(ciphertext, bytes)
            or len(ciphertext) < _TAG
        ):
            raise SchemaError("hub message header has the wrong shape", reason="malformed")
        if kid != self._key.kid:
            raise SignatureError(
                f"hub message names key {kid!r}, not this hub's {self._key.kid!r}",
                reason="wrong_key",
            )
        self._key.public.verify(signature, signed)
        if (m_brand, m_channel) != (brand, channel):
            raise SignatureError(
                f"hub message for {m_brand}/{m_channel} arrived on {brand}/{channel}",
                reason="misdirected",
            )
        try:
            body = self._aead.decrypt(nonce, ciphertext, packb(header[:6]))
        except InvalidTag:
            raise SignatureError("hub message does not decrypt", reason="seal_tag") from None
        return HubMessage(brand, channel, kid, sent_ms, bytes(nonce), body)
