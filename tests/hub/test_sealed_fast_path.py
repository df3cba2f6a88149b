"""What authenticates a sealed delta once its device box key is vouched for.

The hub checks a device's Ed25519 signature on its first sealed delta with a device box
key and from then on lets the seal authenticate it (cloud_hub/ingest/_verify.py). These
tests run against the real hub, mosquitto and InfluxDB: the fast path is taken (a body
sealed with the vouched key opens though its signature bytes are garbage), and every
attack on it is still refused, unacked and writes nothing: a forged seal, a tampered
ciphertext, a body moved to another seq, another device's box key, a replay, a revoked
device, and the old bundle of a re-provisioned device.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from _fakes import FakeDevice, now_hlc
from _poll import eventually
from hub_env import HubEnv

from cloud_hub import Hub, Registry, provision_devices
from protocol import (
    BodySealer,
    BoxPrivateKey,
    BoxPublicKey,
    Channel,
    Delta,
    Envelope,
    Op,
    SigningKey,
    TwinOps,
    open_envelope,
    packb,
    seal,
)

SUBJECT = "ivy.fastpath@example.test"


class SealingDevice:
    """A FakeDevice that seals its deltas with its own device box key, and can put any
    signature (or none) on them."""

    def __init__(self, hub_env: HubEnv, name: str) -> None:
        bundle = hub_env.bundles[name].parent
        self.fake = FakeDevice(bundle, hub_env.brand, name, hub_env.services.mosquitto.port)
        hub_box = BoxPublicKey.from_hex((bundle / "hub-box.pub").read_text())
        self.box = BoxPrivateKey.generate()
        self.sealer = BodySealer(self.box, hub_box)
        self.hub_box = hub_box

    def envelope(self, seq: int, value: float, *, device: str | None = None) -> Envelope:
        twin = self.fake.twin(SUBJECT)
        ops = (Op(now_hlc(counter=seq % 1000), "coffee.water_level_pct", value),)
        body = packb(Delta(twins=(TwinOps(twin, ops),)).to_wire())
        return Envelope(
            "delta",
            self.fake.brand,
            device or self.fake.device,
            seq,
            self.fake.key.kid,
            time.time_ns() // 1_000_000,
            body,
        )

    def signed(self, env: Envelope, key: SigningKey | None = None) -> bytes:
        return seal(self.sealer.seal(env), key or self.fake.key)


def unsigned(payload: bytes, *, kid: str | None = None) -> bytes:
    """``payload`` with its signature replaced by 64 zero bytes (and its header's key id
    replaced by ``kid``): what someone without the device's signing key can send."""
    env = open_envelope(payload).envelope
    if kid is not None:
        env = replace(env, kid=kid)
    signed = packb(
        [env.version, env.kind, env.brand, env.device, env.seq, env.kid, env.sent_ms, env.body]
    )
    return packb([signed, bytes(64)])


def rejected(hub: Hub, reason: str) -> float:
    return hub.metrics.get("twinsync_hub_rejected_total", reason=reason)


def values(hub_env: HubEnv) -> set[object]:
    return {p[4] for p in hub_env.points()}


@pytest.fixture
def dev0(hub_env: HubEnv) -> Iterator[SealingDevice]:
    d = SealingDevice(hub_env, "dev-0")
    yield d
    d.fake.close()


@pytest.fixture
def dev1(hub_env: HubEnv) -> Iterator[SealingDevice]:
    d = SealingDevice(hub_env, "dev-1")
    yield d
    d.fake.close()


async def vouch(device: SealingDevice, seq: int, value: float) -> None:
    """A correctly signed first sealed delta: the device vouches for its box key."""
    device.fake.publish(device.signed(device.envelope(seq, value)))
    await device.fake.wait_acked({seq})


async def test_after_a_signed_first_delta_the_seal_alone_authenticates_the_device(
    hub: Hub, hub_env: HubEnv, dev0: SealingDevice
) -> None:
    await vouch(dev0, 1, 11.5)
    # The same device box key, but no valid signature: the AEAD, keyed by X25519 of this
    # box key and the hub's, is what proves the sender holds the vouched key.
    dev0.fake.publish(unsigned(dev0.signed(dev0.envelope(2, 12.5))))
    await dev0.fake.wait_acked({2})
    assert await eventually(lambda: values(hub_env) == {11.5, 12.5}, within=10)
    assert rejected(hub, "signature") == 0


async def test_attacks_on_a_vouched_box_key_are_refused_unacked_and_write_nothing(
    hub: Hub, hub_env: HubEnv, dev0: SealingDevice, dev1: SealingDevice
) -> None:
    await vouch(dev0, 1, 21.5)
    await vouch(dev1, 1, 31.5)
    assert await eventually(lambda: values(hub_env) == {21.5, 31.5}, within=10)

    async def refused(payload: bytes, reason: str, via: SealingDevice = dev0) -> None:
        count = rejected(hub, reason)
        via.fake.publish(payload)
        assert await eventually(lambda: rejected(hub, reason) == count + 1, within=10), reason

    # Forged: someone with the bundle's hub-box.pub (public) but not the device's box or
    # signing key seals a body of their own: their box key was never vouched for.
    forger = BodySealer(BoxPrivateKey.generate(), dev0.hub_box)
    forged = seal(forger.seal(dev0.envelope(100, 66.6)), dev0.fake.key)
    await refused(unsigned(forged), "signature")
    # Tampered: a body sealed with the vouched key, one ciphertext byte flipped.
    good = dev0.signed(dev0.envelope(101, 66.7))
    env = open_envelope(good).envelope
    body = bytearray(env.body)
    body[-1] ^= 1
    await refused(unsigned(seal(replace(env, body=bytes(body)), dev0.fake.key)), "signature")
    # Moved: the vouched key's body for seq 101 under seq 102.
    await refused(unsigned(seal(replace(env, seq=102), dev0.fake.key)), "signature")
    # Wrong device: dev-1 seals, with its own vouched box key, a body for dev-0 and sends it
    # as dev-0 (header and topic): the key was vouched for dev-1, not dev-0.
    as_dev0 = dev1.signed(dev1.envelope(103, 66.8, device="dev-0"), dev1.fake.key)
    await refused(unsigned(as_dev0, kid=dev0.fake.key.kid), "signature")
    # ... and under dev-1's own key id: not dev-0's key.
    await refused(as_dev0, "wrong_key")
    # Replayed: the first delta again is acked again and written again as the same point.
    await refused(dev0.signed(dev0.envelope(1, 21.5)), "replay")
    assert values(hub_env) == {21.5, 31.5}
    acked = dev0.fake.acked_seqs() | set(dev0.fake.rejected())
    assert not acked & {100, 101, 102, 103}


async def test_revoked_and_re_provisioned_devices_lose_their_vouched_box_keys(
    hub: Hub, hub_env: HubEnv, dev0: SealingDevice, dev1: SealingDevice
) -> None:
    await vouch(dev0, 1, 41.5)
    await vouch(dev1, 1, 51.5)

    async def hub_sees(device: SealingDevice, reason: str) -> None:
        # Hubs re-read the registry about once a second: signed status messages (they
        # write no twin point) until one is refused for ``reason``.
        async def refused() -> bool:
            count = rejected(hub, reason)
            device.fake.publish(device.fake.status(), Channel.STATUS)
            return await eventually(lambda: rejected(hub, reason) > count, within=1)

        assert await eventually(refused, within=15), reason

    # Revoked: refused before any key is looked at, vouched or not.
    Registry(hub_env.config.registry.path).revoke(hub_env.brand, "dev-0")
    await hub_sees(dev0, "revoked")
    before = rejected(hub, "revoked")
    dev0.fake.publish(unsigned(dev0.signed(dev0.envelope(2, 42.5))))
    assert await eventually(lambda: rejected(hub, "revoked") == before + 1, within=10)
    # Re-provisioned (--force): a new signing key. The old bundle still holds the old box
    # key, vouched for under the old key; under the new key id it is not vouched for.
    out = hub_env.config.registry.path.parent / "reprovisioned"
    provision_devices(
        hub_env.config.registry.path,
        hub_env.config.keys.secrets_dir,
        hub_env.brand,
        [("dev-1", "coffee")],
        out,
        force=True,
    )
    new_kid = SigningKey.from_bytes((out / "dev-1" / "device.key").read_bytes()).kid
    await hub_sees(dev1, "wrong_key")  # the old bundle's signed status, old key id
    before = rejected(hub, "signature")
    dev1.fake.publish(unsigned(dev1.signed(dev1.envelope(5, 52.5)), kid=new_kid))
    assert await eventually(lambda: rejected(hub, "signature") == before + 1, within=10)
    # Under the old key id, signed with the old key: the registry no longer has that key.
    before = rejected(hub, "wrong_key")
    dev1.fake.publish(dev1.signed(dev1.envelope(6, 53.5)))
    assert await eventually(lambda: rejected(hub, "wrong_key") == before + 1, within=10)
    assert values(hub_env) == {41.5, 51.5}
    assert not (dev0.fake.acked_seqs() | set(dev0.fake.rejected())) & {2}
    assert not (dev1.fake.acked_seqs() | set(dev1.fake.rejected())) & {5, 6}
