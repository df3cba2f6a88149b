"""Sealed bodies: round trip, and any change to ciphertext, header (AD) or key fails."""

from __future__ import annotations

from dataclasses import replace

import pytest

from protocol import (
    SEALED_VERSION,
    BodyOpener,
    BodySealer,
    BoxPrivateKey,
    BoxPublicKey,
    DecodeError,
    Envelope,
    SchemaError,
    SealedBody,
    SignatureError,
    SigningKey,
    hub_box_key,
    open_envelope,
    packb,
    seal,
    seal_nonce,
)

BODY = packb({"t": [["1-" + "a" * 32, [[1 << 40, "coffee.strength", 3]]]]})


@pytest.fixture
def hub() -> BoxPrivateKey:
    return BoxPrivateKey.generate()


@pytest.fixture
def device() -> BoxPrivateKey:
    return BoxPrivateKey.generate()


def _env(**kw: object) -> Envelope:
    base: dict[str, object] = {
        "kind": "delta",
        "brand": "acme",
        "device": "dev-1",
        "seq": 42,
        "kid": "k" * 16,
        "sent_ms": 1_700_000_000_000,
        "body": BODY,
    }
    base.update(kw)
    return Envelope(**base)  # type: ignore[arg-type]


def test_round_trip_opens_to_the_same_body(hub: BoxPrivateKey, device: BoxPrivateKey) -> None:
    sealed = BodySealer(device, hub.public).seal(_env())
    assert sealed.sealed
    assert sealed.version == SEALED_VERSION
    assert BODY not in sealed.body
    assert b"coffee" not in sealed.body
    assert BodyOpener([hub]).open(sealed) == BODY


def test_round_trip_through_the_signed_envelope(hub: BoxPrivateKey, device: BoxPrivateKey) -> None:
    """Encrypt, then sign: the wire form verifies and opens; the header says 'sealed'."""
    key = SigningKey.generate()
    sealed = BodySealer(device, hub.public).seal(_env(kid=key.kid))
    env = open_envelope(seal(sealed, key)).verify(key.public)
    assert env.sealed
    assert env == sealed
    assert BodyOpener([hub]).open(env) == BODY


@pytest.mark.parametrize(
    "change",
    [
        {"device": "dev-2"},
        {"brand": "other"},
        {"seq": 43},
        {"kind": "status"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_any_change_to_the_associated_header_fails(
    hub: BoxPrivateKey, device: BoxPrivateKey, change: dict[str, object]
) -> None:
    """Device, brand, topic (follows kind/brand/device) and seq are associated data."""
    sealed = BodySealer(device, hub.public).seal(_env())
    with pytest.raises(SignatureError) as info:
        BodyOpener([hub]).open(replace(sealed, **change))  # type: ignore[arg-type]
    assert info.value.reason == "seal_tag"


def test_every_single_bit_flip_of_the_sealed_body_fails(
    hub: BoxPrivateKey, device: BoxPrivateKey
) -> None:
    sealed = BodySealer(device, hub.public).seal(_env())
    opener = BodyOpener([hub])
    for i in range(len(sealed.body)):
        for bit in (0, 3, 7):
            body = bytearray(sealed.body)
            body[i] ^= 1 << bit
            with pytest.raises((SignatureError, DecodeError)):
                opener.open(replace(sealed, body=bytes(body)))


def test_a_swapped_device_key_id_fails(hub: BoxPrivateKey, device: BoxPrivateKey) -> None:
    """The device box key is in the AD and the key derivation: another one cannot open."""
    sealed = BodySealer(device, hub.public).seal(_env())
    parts = SealedBody.parse(sealed.body)
    forged = SealedBody(parts.hub_kid, BoxPrivateKey.generate().public, parts.ciphertext)
    with pytest.raises(SignatureError) as info:
        BodyOpener([hub]).open(replace(sealed, body=forged.to_bytes()))
    assert info.value.reason == "seal_tag"


def test_a_wrong_hub_key_fails_with_a_clear_reason(
    hub: BoxPrivateKey, device: BoxPrivateKey
) -> None:
    sealed = BodySealer(device, hub.public).seal(_env())
    with pytest.raises(SignatureError) as info:
        BodyOpener([BoxPrivateKey.generate()]).open(sealed)
    assert info.value.reason == "unknown_box_key"
    assert hub.kid in str(info.value)
    # Claiming the right key id without holding the key does not help either.
    parts = SealedBody.parse(sealed.body)
    other = BoxPrivateKey.generate()
    relabelled = SealedBody(other.kid, parts.device_key, parts.ciphertext)
    with pytest.raises(SignatureError) as info:
        BodyOpener([other]).open(replace(sealed, body=relabelled.to_bytes()))
    assert info.value.reason == "seal_tag"


def test_an_opener_with_several_hub_keys_picks_by_key_id(device: BoxPrivateKey) -> None:
    old, new = BoxPrivateKey.generate(), BoxPrivateKey.generate()
    opener = BodyOpener([old, new])
    for hub in (old, new):
        assert opener.open(BodySealer(device, hub.public).seal(_env())) == BODY


def test_nonces_are_unique_per_seq_and_kind() -> None:
    seqs = [0, 1, 2, 255, 256, 1 << 32, (1 << 63) - 1, 1_700_000_000_000_000]
    nonces = {seal_nonce(kind, s) for kind in ("delta", "status") for s in seqs}
    assert len(nonces) == 2 * len(seqs)
    assert all(len(n) == 12 for n in nonces)
    with pytest.raises(ValueError, match="sealed"):
        seal_nonce("ack", 1)


def test_same_seq_same_ciphertext_different_seq_different_ciphertext(
    hub: BoxPrivateKey, device: BoxPrivateKey
) -> None:
    """A re-send of one seq is byte-identical; another seq with the same body is not."""
    sealer = BodySealer(device, hub.public)
    a, again, b = sealer.seal(_env()), sealer.seal(_env()), sealer.seal(_env(seq=43))
    assert a.body == again.body
    assert SealedBody.parse(a.body).ciphertext != SealedBody.parse(b.body).ciphertext


def test_hub_box_key_is_derived_stably_from_the_signing_key() -> None:
    key = SigningKey.generate()
    assert hub_box_key(key).public == hub_box_key(SigningKey.from_bytes(key.to_pem())).public
    assert hub_box_key(key).public != hub_box_key(SigningKey.generate()).public
    assert hub_box_key(key).public.raw != key.public.raw


def test_box_keys_round_trip_and_reject_bad_material() -> None:
    key = BoxPrivateKey.generate()
    assert BoxPrivateKey.from_bytes(key.to_bytes()).public == key.public
    assert BoxPublicKey.from_hex(key.public.hex()) == key.public
    assert "BoxPrivateKey(kid=" in repr(key)
    assert key.to_bytes().hex() not in repr(key)
    for bad in ("zz", "00" * 31):
        with pytest.raises(SignatureError):
            BoxPublicKey.from_hex(bad)
    with pytest.raises(SignatureError):
        BoxPrivateKey.from_bytes(b"short")


def test_a_low_order_device_key_is_refused(hub: BoxPrivateKey) -> None:
    sealed = BodySealer(BoxPrivateKey.generate(), hub.public).seal(_env())
    parts = SealedBody.parse(sealed.body)
    zero = SealedBody(parts.hub_kid, BoxPublicKey(bytes(32)), parts.ciphertext)
    with pytest.raises(SignatureError) as info:
        BodyOpener([hub]).open(replace(sealed, body=zero.to_bytes()))
    assert info.value.reason == "bad_box_key"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        packb([]),
        packb(["k" * 16, bytes(32)]),
        packb(["k" * 15, bytes(32), bytes(16)]),
        packb(["k" * 16, bytes(31), bytes(16)]),
        packb(["k" * 16, bytes(32), bytes(15)]),
        packb(["k" * 16, bytes(32), "text"]),
        packb({"k": 1}),
    ],
)
def test_malformed_sealed_bodies_raise_decode_errors(hub: BoxPrivateKey, body: bytes) -> None:
    with pytest.raises(DecodeError):
        BodyOpener([hub]).open(_env(body=body, version=SEALED_VERSION))


def test_only_device_uplink_kinds_can_be_sealed(hub: BoxPrivateKey, device: BoxPrivateKey) -> None:
    with pytest.raises(ValueError, match="sealed"):
        BodySealer(device, hub.public).seal(_env(kind="ack"))
    key = SigningKey.generate()
    wire = packb([packb([SEALED_VERSION, "ack", "acme", "d", 1, key.kid, 1, bytes(80)]), bytes(64)])
    with pytest.raises(SchemaError) as info:
        open_envelope(wire)
    assert info.value.reason == "bad_seal"


def test_an_unsealed_envelope_is_not_opened_and_sealing_twice_is_refused(
    hub: BoxPrivateKey, device: BoxPrivateKey
) -> None:
    with pytest.raises(SchemaError):
        BodyOpener([hub]).open(_env())
    with pytest.raises(ValueError, match="already"):
        BodySealer(device, hub.public).seal(BodySealer(device, hub.public).seal(_env()))
    with pytest.raises(ValueError, match="at least one"):
        BodyOpener([])


def test_a_short_sealed_body_is_refused_at_envelope_decode() -> None:
    key = SigningKey.generate()
    wire = packb([packb([SEALED_VERSION, "delta", "acme", "d", 1, key.kid, 1, b"x"]), bytes(64)])
    with pytest.raises(SchemaError) as info:
        open_envelope(wire)
    assert info.value.reason == "bad_seal"


def test_the_openers_key_cache_is_bounded(hub: BoxPrivateKey) -> None:
    """Every new device box key costs one cache entry; old ones are forgotten, not kept
    forever (a device that wipes its outbox daily must not grow the hub)."""
    opener = BodyOpener([hub], cache_max=4)
    assert opener.kids == {hub.kid}
    for _ in range(10):
        sealer = BodySealer(BoxPrivateKey.generate(), hub.public)
        assert (sealer.hub_kid, len(sealer.device_kid)) == (hub.kid, 16)
        assert opener.open(sealer.seal(_env())) == BODY
        assert len(opener._cache) <= 4
