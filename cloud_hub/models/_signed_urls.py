"""Signed model download URLs: a capability a device presents instead of an API key.

The hub puts ``?sig=...`` on each URL of a device's signed model set: an HMAC over brand,
model, version and file hash with a secret derived from the hub's signing key, so every
instance sharing ``hub.key`` accepts it and nobody without it can make one. The API's
guard (cloud_hub.api) checks it on the model file route.
"""

from __future__ import annotations

import hashlib
import hmac

from protocol import SigningKey

__all__ = ["model_url_signature", "url_signer"]


def url_signer(hub_key: SigningKey) -> bytes:
    """The HMAC key for model download URLs (Ed25519 signatures are deterministic)."""
    return hashlib.sha256(hub_key.sign(b"twinsync/v1 model download urls")).digest()


def model_url_signature(signer: bytes, brand: str, name: str, version: int, sha256: str) -> str:
    """The ``sig`` that lets a device download exactly this file."""
    message = f"{brand}/{name}/{version}/{sha256}".encode()
    return hmac.new(signer, message, hashlib.sha256).hexdigest()[:32]
