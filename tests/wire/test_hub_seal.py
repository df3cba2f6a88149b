"""Sealed hub-to-hub messages: only a holder of hub.key makes one, and nothing of the body
shows; a moved, re-stamped, tampered, unsigned or device-signed message does not open.
Also the consent time bounds (entries and commands)."""

from __future__ import annotations

import json

import pytest

from protocol import (
    CONSENT_TIME_LIMIT_MS,
    ConsentCommand,
    HubSealer,
    SchemaError,
    SignatureError,
    SigningKey,
    TwinSyncError,
    check_consent_time,
    decode_body,
    packb,
    unpackb,
)

TWIN = "1-" + "a" * 32
BODY = packb([["coffee", TWIN, "dev-7", 1_700_000_000_000_000_000, 2, "seg@1"]])


@pytest.fixture
def hub() -> SigningKey:
    return SigningKey.generate()


def _open(sealer: HubSealer, data: bytes, brand: str = "acme") -> bytes:
    return sealer.open(data, brand=brand, channel="segment-changes", max_bytes=1 << 20).body


def test_another_instance_with_the_same_key_opens_it(hub: SigningKey) -> None:
    data = HubSealer(hub).seal("acme", "segment-changes", BODY, sent_ms=123)
    other = HubSealer(SigningKey.from_bytes(hub.to_pem()))  # a second instance, same hub.key
    message = other.open(data, brand="acme", channel="segment-changes", max_bytes=1 << 20)
    assert (message.body, message.sent_ms, message.kid) == (BODY, 123, hub.kid)
    for clear in (TWIN.encode(), b"dev-7", b"coffee", b"seg@1", BODY):
        assert clear not in data  # the broker sees none of it


def test_two_seals_of_one_body_differ(hub: SigningKey) -> None:
    sealer = HubSealer(hub)
    one, two = (sealer.seal("acme", "segment-changes", BODY, sent_ms=1) for _ in range(2))
    assert one != two  # a fresh nonce each: a receiver tells a replay from a new message
    assert sealer.open(one, brand="acme", channel="segment-changes", max_bytes=1 << 20).nonce != (
        sealer.open(two, brand="acme", channel="segment-changes", max_bytes=1 << 20).nonce
    )


def test_a_device_key_or_no_key_cannot_make_one(hub: SigningKey) -> None:
    receiver = HubSealer(hub)
    forged = HubSealer(SigningKey.generate()).seal("acme", "segment-changes", BODY, sent_ms=1)
    with pytest.raises(SignatureError) as err:
        _open(receiver, forged)
    assert err.value.reason == "wrong_key"
    with pytest.raises(SchemaError) as bad:
        _open(receiver, json.dumps([["coffee", TWIN, "dev-7", 1, 2, None]]).encode())
    assert bad.value.reason == "malformed"


def test_a_signature_by_another_key_under_the_hub_kid_fails(hub: SigningKey) -> None:
    data = HubSealer(hub).seal("acme", "segment-changes", BODY, sent_ms=1)
    signed, _sig = unpackb(data)  # type: ignore[misc]
    attacker = SigningKey.generate()
    with pytest.raises(SignatureError) as err:
        _open(HubSealer(hub), packb([signed, attacker.sign(signed)]))
    assert err.value.reason == "signature"


def test_moved_restamped_or_tampered_messages_do_not_open(hub: SigningKey) -> None:
    sealer = HubSealer(hub)
    data = sealer.seal("acme", "segment-changes", BODY, sent_ms=1)
    with pytest.raises(SignatureError) as moved:
        _open(sealer, data, brand="other")
    assert moved.value.reason == "misdirected"
    signed, sig = unpackb(data)  # type: ignore[misc]
    header = unpackb(signed)
    assert isinstance(header, list)
    for index, value in ((4, 2), (6, header[6][:-1] + bytes([header[6][-1] ^ 1]))):
        changed = packb([*header[:index], value, *header[index + 1 :]])
        # Re-signed with the hub key itself: only the AEAD can tell (the header is its AD).
        with pytest.raises(SignatureError) as err:
            _open(sealer, packb([changed, hub.sign(changed)]))
        assert err.value.reason == "seal_tag"
    with pytest.raises(SignatureError):
        _open(sealer, packb([signed[:-1] + bytes([signed[-1] ^ 1]), sig]))


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", packb([1, 2]), packb([b"x", b"y" * 64]), packb([packb(["x"] * 7), b"y" * 64])],
)
def test_garbage_is_malformed(hub: SigningKey, data: bytes) -> None:
    with pytest.raises(TwinSyncError) as err:
        _open(HubSealer(hub), data)
    assert err.value.reason == "malformed"


def test_oversized_is_refused_before_parsing(hub: SigningKey) -> None:
    data = HubSealer(hub).seal("acme", "segment-changes", b"x" * 4096, sent_ms=1)
    with pytest.raises(TwinSyncError) as err:
        HubSealer(hub).open(data, brand="acme", channel="segment-changes", max_bytes=1024)
    assert err.value.reason == "malformed"


def test_consent_times_are_bounded() -> None:
    assert check_consent_time(CONSENT_TIME_LIMIT_MS - 1) == CONSENT_TIME_LIMIT_MS - 1
    for bad in (-1, CONSENT_TIME_LIMIT_MS, 1.5, True, "1"):
        with pytest.raises(SchemaError) as err:
            check_consent_time(bad)
        assert err.value.reason == "timestamp"
    entry = [TWIN, CONSENT_TIME_LIMIT_MS, {"marketing": True}, "hub", "v1"]
    with pytest.raises(SchemaError) as entry_err:
        decode_body("delta", packb({"t": [], "c": [entry]}))
    assert entry_err.value.reason == "timestamp"
    command = ConsentCommand(
        twins=(TWIN,), purposes={"marketing": True}, notice="v1", request_id="r", ts_ms=1
    )
    wire = {**command.to_wire(), "ts_ms": CONSENT_TIME_LIMIT_MS}
    with pytest.raises(SchemaError):
        decode_body("consent", packb(wire))
