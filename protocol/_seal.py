"""Sealed bodies: a message body encrypted to the hub, so the broker sees no content.

Keys (X25519):

- the **hub box key** is derived from the hub's Ed25519 signing seed with HKDF
  (:func:`hub_box_key`): every hub instance that can sign acks can open sealed deltas,
  and there is no second secret to create, copy or lose;
- the **device box key** is made by the device itself and lives in its outbox (next to
  the seq counter); its public half travels in every sealed body, covered by the
  device's Ed25519 signature, so the hub needs no registry entry for it.

Per (device box key, hub box key) the AEAD key is
``HKDF-SHA256(X25519(device, hub), info = domain, brand, device, both public keys)``.
The cipher is AES-256-GCM-SIV with a 96-bit nonce built from the message kind and its
``seq``. A device's seq is strictly increasing and persisted before it is sent, in the
*same* SQLite file as the device box key, so a key and its counter live and die together:
a wiped outbox gets a new key, a power cut resumes both. A re-send of one seq re-encrypts
the same body to the same ciphertext. GCM-SIV rather than GCM because a queued delta's
body can change under its seq (erasure drops an erased twin's ops from the outbox): with
GCM that nonce reuse would leak both plaintexts, with GCM-SIV (nonce-misuse resistant) it
reveals at most that two bodies were identical. The same holds should a key/nonce pair
ever repeat for another reason (an old outbox restored from a backup).

Associated data binds the ciphertext to the header: domain, kind, brand, device, the
topic, seq and both box key ids. A body moved to another device, topic or seq does not
open. Wire form of a sealed body (the envelope's ``body`` when its version is
:data:`SEALED_VERSION`): msgpack ``[hub_box_kid: str(16), device_box_pub: bin(32),
ciphertext: bin]``. The envelope signature covers it (encrypt, then sign), so a forged
message is rejected before any decryption is attempted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._codec import Limits, packb, unpackb
from ._envelope import SEALED_VERSION, Envelope
from ._errors import SchemaError, SignatureError
from ._keys import SigningKey, key_id
from ._topics import Channel, topic

__all__ = [
    "BodyOpener",
    "BodySealer",
    "BoxPrivateKey",
    "BoxPublicKey",
    "SealedBody",
    "hub_box_key",
    "seal_nonce",
]

_DOMAIN = b"twinsync/seal/v1"
_HUB_BOX_INFO = b"twinsync/hub-box-key/v1"
# One nonce space per kind (first byte), so a seq shared by two kinds never collides.
_KIND_CODES: dict[str, int] = {"delta": 1, "status": 2}
# The envelope decoder already capped the body's size; these cap its structure.
_SEALED_LIMITS = Limits(max_array=3, max_map=0, max_str=16)
#: derived AEADs kept by a hub opener; beyond this the oldest half is forgotten
_CACHE_MAX = 100_000


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class BoxPublicKey:
    """An X25519 public key with its key id (16 hex chars of its SHA-256)."""

    __slots__ = ("_key", "kid", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise SignatureError(
                f"an X25519 public key is 32 bytes, got {len(raw)}", reason="bad_box_key"
            )
        self.raw = bytes(raw)
        self._key = X25519PublicKey.from_public_bytes(self.raw)
        self.kid = key_id(self.raw)

    @classmethod
    def from_hex(cls, text: str) -> BoxPublicKey:
        """Load from the 64-hex-char form used in bundles (``hub-box.pub``)."""
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError as exc:
            raise SignatureError(f"box public key is not hex: {exc}", reason="bad_box_key") from exc

    def hex(self) -> str:
        """The 64-hex-char form."""
        return self.raw.hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoxPublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"BoxPublicKey(kid={self.kid!r})"


class BoxPrivateKey:
    """An X25519 private key. ``repr`` never shows key material."""

    __slots__ = ("_key", "public")

    def __init__(self, key: X25519PrivateKey) -> None:
        self._key = key
        self.public = BoxPublicKey(_raw(key.public_key()))

    @classmethod
    def generate(cls) -> BoxPrivateKey:
        """A fresh random key."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, raw: bytes) -> BoxPrivateKey:
        """Load the 32-byte raw form (as :meth:`to_bytes` gives it)."""
        if len(raw) != 32:
            raise SignatureError(
                f"an X25519 private key is 32 bytes, got {len(raw)}", reason="bad_box_key"
            )
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def to_bytes(self) -> bytes:
        """The 32-byte raw form (store it like any secret)."""
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @property
    def kid(self) -> str:
        """Key id of the public half."""
        return self.public.kid

    def exchange(self, peer: BoxPublicKey) -> bytes:
        """The X25519 shared secret with ``peer``."""
        try:
            return self._key.exchange(peer._key)
        except ValueError as exc:  # a low-order point gives an all-zero secret
            raise SignatureError(
                f"box key {peer.kid} is not a usable X25519 key", reason="bad_box_key"
            ) from exc

    def __repr__(self) -> str:
        return f"BoxPrivateKey(kid={self.kid!r})"


def hub_box_key(signing_key: SigningKey) -> BoxPrivateKey:
    """The hub's box key, derived from its Ed25519 signing key.

    HKDF with its own label keeps the two keys independent; deriving instead of storing
    means every hub instance holding ``hub.key`` opens sealed bodies, and provisioning
    can put the public half into bundles without a new secret file.
    """
    ed = serialization.load_pem_private_key(signing_key.to_pem(), password=None)
    assert isinstance(ed, Ed25519PrivateKey)  # type narrowing: SigningKey wraps Ed25519 only
    seed = ed.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    raw = HKDF(hashes.SHA256(), 32, salt=None, info=_HUB_BOX_INFO).derive(seed)
    return BoxPrivateKey.from_bytes(raw)


def seal_nonce(kind: str, seq: int) -> bytes:
    """The 96-bit nonce of message ``kind`` number ``seq``: kind code, 3 zero bytes, seq.

    Unique per key as long as ``(kind, seq)`` is, which the outbox guarantees for deltas.
    """
    code = _KIND_CODES.get(kind)
    if code is None:
        raise ValueError(f"only {sorted(_KIND_CODES)} bodies can be sealed, not {kind!r}")
    return bytes((code, 0, 0, 0)) + seq.to_bytes(8, "big")


@functools.lru_cache(maxsize=4096)
def _topic(brand: str, device: str, kind: str) -> str:
    # Cached: the hub opens many messages of the same devices, and topic() checks ids.
    return topic(brand, device, Channel(kind))


def _associated(env: Envelope, hub_kid: str, device_kid: str) -> bytes:
    return packb(
        [
            _DOMAIN,
            env.kind,
            env.brand,
            env.device,
            _topic(env.brand, env.device, env.kind),
            env.seq,
            hub_kid,
            device_kid,
        ]
    )


def _split(data: bytes) -> tuple[str, bytes, bytes]:
    """``(hub_kid, device_box_pub, ciphertext)`` of a sealed body, checked for shape."""
    parts = unpackb(data, _SEALED_LIMITS)
    if (
        not isinstance(parts, list)
        or len(parts) != 3
        or not isinstance(parts[0], str)
        or len(parts[0]) != 16
        or not isinstance(parts[1], bytes)
        or len(parts[1]) != 32
        or not isinstance(parts[2], bytes)
        or len(parts[2]) < 16
    ):
        raise SchemaError(
            "sealed body must be [hub_box_kid: str(16), device_box_pub: bin(32), "
            "ciphertext: bin(>=16)]",
            reason="bad_seal",
        )
    return parts[0], parts[1], parts[2]


def _aead(
    brand: str, device: str, device_pub: BoxPublicKey, hub_pub: BoxPublicKey, shared: bytes
) -> AESGCMSIV:
    info = b"\x00".join((_DOMAIN, brand.encode(), device.encode(), device_pub.raw, hub_pub.raw))
    return AESGCMSIV(HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(shared))


@dataclass(frozen=True, slots=True)
class SealedBody:
    """The parts of a sealed body, as they travel (nothing here is secret)."""

    hub_kid: str
    device_key: BoxPublicKey
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        """The msgpack wire form."""
        return packb([self.hub_kid, self.device_key.raw, self.ciphertext])

    @classmethod
    def parse(cls, data: bytes) -> SealedBody:
        """Decode the structure (no decryption); raise SchemaError if it is not one."""
        hub_kid, device_pub, ciphertext = _split(data)
        return cls(hub_kid, BoxPublicKey(device_pub), ciphertext)


class BodySealer:
    """Device side: seals envelope bodies to one hub box key with this device's box key."""

    __slots__ = ("_aead", "_device", "_hub", "_ident")

    def __init__(self, device_key: BoxPrivateKey, hub_key: BoxPublicKey) -> None:
        self._device = device_key
        self._hub = hub_key
        self._aead: AESGCMSIV | None = None
        self._ident: tuple[str, str] | None = None

    @property
    def hub_kid(self) -> str:
        """Key id of the hub box key bodies are sealed to."""
        return self._hub.kid

    @property
    def device_kid(self) -> str:
        """Key id of this device's box key."""
        return self._device.kid

    def seal(self, envelope: Envelope) -> Envelope:
        """``envelope`` with its body sealed and its version :data:`SEALED_VERSION`.

        Sign the result as usual (:func:`protocol.seal`): the signature then covers the
        ciphertext. Deterministic: the same envelope always gives the same ciphertext.
        """
        if envelope.version == SEALED_VERSION:
            raise ValueError("envelope body is already sealed")
        ident = (envelope.brand, envelope.device)
        if self._aead is None or self._ident != ident:
            # One device seals for one identity; derive once, not per message.
            shared = self._device.exchange(self._hub)
            self._aead = _aead(*ident, self._device.public, self._hub, shared)
            self._ident = ident
        nonce = seal_nonce(envelope.kind, envelope.seq)
        aad = _associated(envelope, self._hub.kid, self._device.kid)
        sealed = SealedBody(
            self._hub.kid, self._device.public, self._aead.encrypt(nonce, envelope.body, aad)
        )
        return replace(envelope, body=sealed.to_bytes(), version=SEALED_VERSION)


class BodyOpener:
    """Hub side: opens sealed bodies with any of the hub's box keys.

    The AEAD derived for each (brand, device, device box key, hub box key) is cached, so
    a device's stream costs one X25519 exchange, not one per message. The cache is a pure
    function of its key: two hub instances can never disagree because of it. It holds at
    most ``cache_max`` entries; beyond that the oldest half is forgotten.
    """

    def __init__(self, keys: Iterable[BoxPrivateKey], *, cache_max: int = _CACHE_MAX) -> None:
        self._keys = {k.kid: k for k in keys}
        if not self._keys:
            raise ValueError("a BodyOpener needs at least one hub box key")
        if cache_max < 2:  # forgetting the oldest half must forget something
            raise ValueError("a BodyOpener's cache_max must be at least 2")
        self._cache_max = cache_max
        #: (brand, device, device box pub, hub kid) -> (AEAD, device box kid)
        self._cache: dict[tuple[str, str, bytes, str], tuple[AESGCMSIV, str]] = {}

    @property
    def kids(self) -> frozenset[str]:
        """Key ids of the hub box keys this opener holds."""
        return frozenset(self._keys)

    def open(self, envelope: Envelope) -> bytes:
        """The plaintext body of a *verified* sealed envelope.

        Raises SchemaError (reason ``bad_seal``) for a malformed sealed body, and
        SignatureError for a hub box key this hub does not hold (``unknown_box_key``) or a
        body that does not open under this header (``seal_tag``: tampered, or moved to
        another device, topic or seq).
        """
        if envelope.version != SEALED_VERSION:
            raise SchemaError("envelope body is not sealed", reason="bad_seal")
        try:
            nonce = seal_nonce(envelope.kind, envelope.seq)
        except ValueError as exc:
            raise SchemaError(str(exc), reason="bad_seal") from None
        hub_kid, device_pub, ciphertext = _split(envelope.body)
        hub = self._keys.get(hub_kid)
        if hub is None:
            raise SignatureError(
                f"body is sealed to hub box key {hub_kid}, which this hub does not "
                f"hold (it has {', '.join(sorted(self._keys))}); give the device the current "
                "hub-box.pub or keep the old hub key",
                reason="unknown_box_key",
            )
        cache_key = (envelope.brand, envelope.device, device_pub, hub.kid)
        cached = self._cache.get(cache_key)
        if cached is None:
            # Only a new device box key costs an X25519 exchange and a key derivation.
            device_key = BoxPublicKey(device_pub)
            aead = _aead(
                envelope.brand, envelope.device, device_key, hub.public, hub.exchange(device_key)
            )
            if len(self._cache) >= self._cache_max:
                # Dicts keep insertion order: forget the oldest half.
                for old in list(self._cache)[: self._cache_max // 2]:
                    del self._cache[old]
            cached = self._cache[cache_key] = (aead, device_key.kid)
        aead, device_kid = cached
        aad = _associated(envelope, hub.kid, device_kid)
        try:
            return aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise SignatureError(
                f"sealed body of {envelope.kind} seq {envelope.seq} does not open for "
                f"{envelope.brand}/{envelope.device} (tampered, or moved to another device, "
                "topic or seq)",
                reason="seal_tag",
            ) from None
