"""Attacks on the broker with a device's own (valid) credentials, against a real mosquitto
secured as the docs deploy it ('twinsync hub broker-auth'): taking over another client's
id or session, joining the hub's shared-subscription group, subscribing outside the
device's downlinks, using the plugin's control API. And that the plugin's file stays
readable by the broker's own user across rewrites."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fakes import now_hlc
from _poll import eventually
from broker_env import Probe, SecuredBroker, secured_broker, wait_for

from cloud_hub import Hub, provision_devices
from cloud_hub.cli import main as hub_cli
from cloud_hub.registry import DynsecAdmin, ensure_admin_password
from edge_agent import Agent, load_config
from protocol import (
    Ack,
    Delta,
    Envelope,
    Op,
    SigningKey,
    TwinOps,
    VerifyKey,
    decode_body,
    open_envelope,
    packb,
    pseudonymize,
    seal,
)
from twinsync.services import LocalServices, Mosquitto, free_port

VICTIMS = ["v-1", "v-2", "v-3", "v-4"]
ATTACKERS = ["x-1", "x-2", "x-3", "x-4", "x-5"]


@pytest.fixture
def secured(tmp_path: Path, services: LocalServices, unique: str) -> Iterator[SecuredBroker]:
    fleets = {f"v{unique}": VICTIMS, f"x{unique}": ATTACKERS}
    with secured_broker(tmp_path, services, f"db{unique}", fleets) as b:
        yield b


def _brands(b: SecuredBroker) -> tuple[str, str]:
    victim, attacker = list(b.bundles)
    return victim, attacker


def test_a_device_cannot_take_over_another_client_id(secured: SecuredBroker) -> None:
    """Device X's credentials with another device's, the hub's, an empty or a made-up
    client id are refused, so X can neither disconnect them nor inherit a persistent
    session (and the messages queued in it)."""
    victim, attacker = _brands(secured)
    target, other = f"{victim}.v-1", f"{victim}.v-2"
    x = f"{attacker}.x-1"
    hub = secured.probe(secured.hub_user)
    live = secured.probe(other)
    offline = secured.probe(target)
    assert hub.connected.wait(5)
    assert live.connected.wait(5)
    assert offline.connected.wait(5)
    ack_topic = f"ts/v1/{victim}/v-1/ack"
    assert offline.subscribe(ack_topic)
    offline.close()  # its session (and subscription) stays: acks wait for it
    hub.c.publish(ack_topic, b"queued for v-1", qos=1).wait_for_publish(5)
    try:
        for client_id, clean in (
            (target, False),
            (other, False),
            (secured.hub_user, False),
            ("", True),
            ("made-up", False),
        ):
            thief = secured.probe(x, client_id, clean_session=clean)
            try:
                assert not thief.refused_or_connected(), client_id
                assert thief.got == []
            finally:
                thief.close()
        time.sleep(0.3)  # a takeover would have disconnected them by now
        assert hub.disconnects == 0
        assert live.disconnects == 0
        assert hub.c.is_connected()
        assert live.c.is_connected()
        # The owner gets what its session queued: nobody took it.
        back = secured.probe(target)
        try:
            assert wait_for(lambda: (ack_topic, b"queued for v-1") in back.got)
        finally:
            back.close()
    finally:
        hub.close()
        live.close()


def test_the_hub_account_cannot_take_over_a_device(secured: SecuredBroker) -> None:
    """Hub accounts are bound to their instance's client id too."""
    victim, _attacker = _brands(secured)
    device = secured.probe(f"{victim}.v-1")
    try:
        assert device.connected.wait(5)
        thief = secured.probe(secured.hub_user, f"{victim}.v-1")
        try:
            assert not thief.refused_or_connected()
        finally:
            thief.close()
        time.sleep(0.3)
        assert device.disconnects == 0
    finally:
        device.close()


def test_devices_subscribe_only_to_their_own_downlinks(secured: SecuredBroker) -> None:
    """mosquitto 2.0.11 hands the plugin the whole subscription string, '$share/<group>/'
    included: a device's literal rules never match a shared form (not even of its own
    topics), and the hub's '$share/+/...' patterns match any group name."""
    victim, attacker = _brands(secured)
    x = secured.probe(f"{attacker}.x-1")
    hub = secured.probe(secured.hub_user)
    try:
        assert x.connected.wait(5)
        assert hub.connected.wait(5)
        own = f"ts/v1/{attacker}/x-1"
        granted = [f"{own}/ack", f"{own}/desired", f"{own}/model", f"{own}/offer"]
        granted += [f"ts/v1/{attacker}/broadcast/tombstone", f"ts/v1/{attacker}/broadcast/consent"]
        granted += [f"ts/v1/{attacker}/broadcast/tags"]
        denied = [
            "$share/twinsync-hub/ts/v1/+/+/delta",
            "$share/twinsync-hub/ts/v1/+/+/status",
            f"$share/twinsync-hub/ts/v1/{victim}/+/delta",
            f"$share/mine/{own}/ack",
            "#",
            "ts/v1/#",
            "ts/v1/+/+/delta",
            f"ts/v1/{victim}/v-1/ack",
            f"ts/v1/{attacker}/x-2/ack",
            f"ts/v1/{attacker}/x-2/offer",  # another device's offers (the strategy lab's)
            f"ts/v1/{victim}/v-1/offer",
            f"ts/v1/{attacker}/+/ack",
            f"{own}/#",
            f"ts/v1/{victim}/broadcast/tombstone",
            f"ts/v1/{victim}/broadcast/tags",
            "ts/v1/_hub/#",
            "$SYS/#",
            "$CONTROL/dynamic-security/#",
        ]
        assert {t: x.subscribe(t) for t in granted + denied} == {
            **dict.fromkeys(granted, True),
            **dict.fromkeys(denied, False),
        }
        hub_filters = {
            "$share/any-group/ts/v1/+/+/delta": True,
            f"$share/g2/ts/v1/{victim}/+/status": True,
            "ts/v1/+/+/delta": True,
            "ts/v1/_hub/#": True,
            "#": False,
            "$CONTROL/dynamic-security/#": False,
        }
        assert {t: hub.subscribe(t) for t in hub_filters} == hub_filters
    finally:
        x.close()
        hub.close()


class _Sender:
    """A provisioned device that signs deltas with its bundle's key and reads the hub's
    signed acks, over its own broker account."""

    def __init__(self, secured: SecuredBroker, brand: str, device: str) -> None:
        bundle = secured.bundles[brand][device]
        self.brand, self.device = brand, device
        self.key = SigningKey.from_bytes((bundle / "device.key").read_bytes())
        self.brand_key = (bundle / "brand.key").read_bytes()
        self.hub_key = VerifyKey.from_hex((bundle / "hub.pub").read_text())
        self.probe = secured.probe(f"{brand}.{device}")
        assert self.probe.connected.wait(5)
        assert self.probe.subscribe(f"ts/v1/{brand}/{device}/ack")

    def send(self, seq: int) -> None:
        twin = pseudonymize(self.brand_key, 1, f"customer-{seq}")
        body = Delta(twins=(TwinOps(twin, (Op(now_hlc(), "coffee.brews_total", seq),)),))
        env = Envelope(
            kind="delta",
            brand=self.brand,
            device=self.device,
            seq=seq,
            kid=self.key.kid,
            sent_ms=time.time_ns() // 1_000_000,
            body=packb(body.to_wire()),
        )
        topic = f"ts/v1/{self.brand}/{self.device}/delta"
        self.probe.c.publish(topic, seal(env, self.key), qos=1).wait_for_publish(5)

    def acked(self) -> set[int]:
        seqs: set[int] = set()
        for _topic, payload in list(self.probe.got):
            env = open_envelope(payload).verify(self.hub_key)
            ack = decode_body(env.kind, env.body)
            assert isinstance(ack, Ack)
            seqs |= set(ack.seqs)
        return seqs


async def test_devices_joining_the_hubs_group_take_no_share_of_the_uplinks(
    secured: SecuredBroker,
) -> None:
    """Five devices of another brand try to join the hub's shared-subscription group;
    every delta a fleet then sends once is stored and acked: the broker dealt no share to
    the attackers (where it would drop it, since they may not read it)."""
    victim, attacker = _brands(secured)
    per_device = 10
    attackers = [secured.probe(f"{attacker}.{d}") for d in ATTACKERS]
    senders: list[_Sender] = []
    try:
        async with Hub(secured.config) as hub:
            await hub.ready.wait()
            for a in attackers:
                assert a.connected.wait(5)
                for channel in ("delta", "status"):
                    granted = await asyncio.to_thread(
                        a.subscribe, f"$share/twinsync-hub/ts/v1/+/+/{channel}"
                    )
                    assert not granted
            senders = [_Sender(secured, victim, d) for d in VICTIMS]

            def send_all() -> None:
                for seq in range(1, per_device + 1):
                    for s in senders:
                        s.send(seq)

            await asyncio.to_thread(send_all)
            everything = set(range(1, per_device + 1))

            def all_acked() -> bool:
                return all(s.acked() == everything for s in senders)

            assert await eventually(all_acked, within=30)
            written = hub.metrics.get("twinsync_hub_deltas_written_total")
            assert written == per_device * len(VICTIMS)
        assert all(a.got == [] for a in attackers)
    finally:
        for a in attackers:
            a.close()
        for s in senders:
            s.probe.close()


def test_a_device_cannot_use_the_control_api(secured: SecuredBroker) -> None:
    """Publishing plugin commands with a device's credentials changes nothing (the
    broker checks the publish before the plugin sees it)."""
    victim, attacker = _brands(secured)
    x = secured.probe(f"{attacker}.x-1")
    try:
        assert x.connected.wait(5)
        commands = [
            {"command": "createClient", "username": "evil", "password": "evil"},
            {"command": "addClientRole", "username": f"{attacker}.x-1", "rolename": "twinsync.hub"},
            {"command": "setClientId", "username": f"{victim}.v-1", "clientid": "taken"},
            {"command": "setDefaultACLAccess", "acls": [{"acltype": "subscribe", "allow": True}]},
        ]
        payload = json.dumps({"commands": commands})
        x.c.publish("$CONTROL/dynamic-security/v1", payload, qos=1).wait_for_publish(5)
        time.sleep(0.3)
        assert not x.subscribe("$share/twinsync-hub/ts/v1/+/+/delta")
    finally:
        x.close()
    admin_password = ensure_admin_password(secured.config.keys.secrets_dir).read_text().strip()
    with DynsecAdmin(secured.config.mqtt, admin_password) as admin:
        clients, default = admin.run(
            [{"command": "listClients", "verbose": True}, {"command": "getDefaultACLAccess"}]
        )
    by_user = {c["username"]: c for c in clients["data"]["clients"]}
    assert "evil" not in by_user
    assert [r["rolename"] for r in by_user[f"{attacker}.x-1"]["roles"]] == [
        f"twinsync.device.{attacker}.x-1"
    ]
    assert by_user[f"{victim}.v-1"]["clientid"] == f"{victim}.v-1"
    assert {a["acltype"]: a["allow"] for a in default["data"]["acls"]}["subscribe"] is False


async def test_an_agent_with_another_client_id_is_refused_and_says_why(
    secured: SecuredBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victim, _attacker = _brands(secured)
    config = load_config(
        secured.bundles[victim]["v-1"] / "agent.toml",
        {
            "mqtt": {"client_id": "custom-id"},
            "models": {"enabled": False},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        },
        environ={},
    )
    caplog.set_level(logging.ERROR, logger="edge_agent.sync")
    async with Agent(config):

        def explained() -> bool:
            return any(
                "refused" in r.getMessage()
                and f"mqtt.client_id 'custom-id' is not '{victim}.v-1'" in r.getMessage()
                for r in caplog.records
            )

        assert await eventually(explained, within=10)


def _mosquitto_ids() -> tuple[int, int]:
    user = pwd.getpwnam("mosquitto")  # made by Debian's mosquitto package
    return user.pw_uid, user.pw_gid


def test_the_broker_file_stays_readable_by_the_broker_user(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    """A broker that drops to the 'mosquitto' user (as Debian's does) loads the file of
    'broker-auth --out --owner mosquitto --group mosquitto' and can save the changes of
    '--apply' into it (mosquitto 2.0.11 rewrites the file in place, so it must be the
    broker user's); later rewrites by broker-auth keep its owner and group and never
    leave it world-readable."""
    uid, gid = _mosquitto_ids()
    brand = f"o{unique}"
    # A directory the mosquitto user can reach (pytest's tmp_path is private to root).
    root = Path(tempfile.mkdtemp(prefix="twinsync-dynsec-", dir="/tmp"))
    try:
        os.chown(root, uid, gid)
        broker_dir, work = root / "broker", root / "mosquitto"
        for d in (broker_dir, work):
            d.mkdir()
            os.chown(d, uid, gid)  # the plugin writes <file>.new beside its file
        port = free_port()
        toml = tmp_path / "hub.toml"
        toml.write_text(
            f'[mqtt]\nport = {port}\nclient_id = "hub-{unique}"\n'
            f'[registry]\npath = "{tmp_path}/registry.sqlite"\n'
            f'[keys]\nsecrets_dir = "{tmp_path}/secrets"\n'
        )
        provision_devices(
            tmp_path / "registry.sqlite",
            tmp_path / "secrets",
            brand,
            [("d-1", "coffee")],
            tmp_path / "bundles",
        )
        out = ["broker-auth", "--config", str(toml), "--out", str(broker_dir)]
        assert hub_cli([*out, "--owner", "mosquitto", "--group", "mosquitto"]) == 0
        path = broker_dir / "dynamic-security.json"
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o640)
        broker = Mosquitto(
            work,
            port,
            f"listener {port} 127.0.0.1\nallow_anonymous false\n",
            dynsec_file=path,
            user="mosquitto",
        )
        password = (tmp_path / "bundles" / "d-1" / "mqtt.password").read_text().strip()
        broker.start()
        try:
            assert _logs_in(port, f"{brand}.d-1", password)
            # A device added on the running broker: the plugin rewrites the file itself.
            provision_devices(
                tmp_path / "registry.sqlite",
                tmp_path / "secrets",
                brand,
                [("d-2", "coffee")],
                tmp_path / "bundles",
            )
            apply = ["broker-auth", "--config", str(toml), "--apply"]
            assert hub_cli([*apply, "--bundles", str(tmp_path / "bundles")]) == 0
            # The broker saved the new account itself (else a restart would lose it).
            saved = {c["username"] for c in json.loads(path.read_text())["clients"]}
            assert f"{brand}.d-2" in saved
            path.chmod(0o644)  # lax, as a broker's umask may leave a file it replaced
            assert hub_cli(out) == 0  # a later rewrite without --group
            st = path.stat()
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o640)
            broker.restart()
            password2 = (tmp_path / "bundles" / "d-2" / "mqtt.password").read_text().strip()
            assert _logs_in(port, f"{brand}.d-2", password2)
        finally:
            broker.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _logs_in(port: int, username: str, password: str) -> bool:
    probe = Probe(port, username, password)
    try:
        return probe.refused_or_connected()
    finally:
        probe.close()
