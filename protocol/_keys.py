"""Ed25519 keys and key ids (bytes in, bytes out: loading files is the caller's job)."""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._errors import SignatureError

__all__ = ["SigningKey", "VerifyKey", "key_id"]


def key_id(public_raw: bytes) -> str:
    """Short, stable id of a public key: 16 hex chars of its SHA-256."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


class VerifyKey:
    """An Ed25519 public key with its key id."""

    __slots__ = ("_key", "kid", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise SignatureError(
                f"an Ed25519 public key is 32 bytes, got {len(raw)}", reason="bad_key"
            )
        self.raw = bytes(raw)
        self._key = Ed25519PublicKey.from_public_bytes(self.raw)
        self.kid = key_id(self.raw)

    @classmethod
    def from_hex(cls, text: str) -> VerifyKey:
        """Load from the 64-hex-char form used in registries and config files."""
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError as exc:
            raise SignatureError(f"public key is not hex: {exc}", reason="bad_key") from exc

    def hex(self) -> str:
        """The 64-hex-char form."""
        return self.raw.hex()

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raise SignatureError unless ``signature`` is this key's signature of ``data``."""
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            raise SignatureError(f"signature does not verify with key {self.kid}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"VerifyKey(kid={self.kid!r})"


class SigningKey:
    """An Ed25519 private key. ``repr`` never shows key material."""

    __slots__ = ("_key", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = VerifyKey(
            key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, data: bytes) -> SigningKey:
        """Load a 32-byte raw seed or a PEM (PKCS#8) private key."""
        try:
            if len(data) == 32:
                return cls(Ed25519PrivateKey.from_private_bytes(data))
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as exc:
            raise SignatureError(
                f"cannot load Ed25519 private key: {exc}", reason="bad_key"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureError("private key is not Ed25519", reason="bad_key")
        return cls(key)

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted (protect the file with permissions)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def kid(self) -> str:
        """Key id of the public half."""
        return self.public.kid

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"
