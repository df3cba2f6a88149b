"""A real mosquitto with the Dynamic Security accounts 'twinsync hub broker-auth' makes:
who may publish, read and log in, revocation and provisioning on a running broker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fakes import get_json
from _poll import eventually
from broker_env import Probe, SecuredBroker, secured_broker, wait_for

from cloud_hub import SCOPES, ApiKeys, Hub, Registry
from cloud_hub.cli import main as hub_cli
from edge_agent import Agent, load_config
from protocol import SignalIn
from twinsync.services import LocalServices


@pytest.fixture
def acl_broker(tmp_path: Path, services: LocalServices, unique: str) -> Iterator[SecuredBroker]:
    with secured_broker(
        tmp_path, services, f"db{unique}", {f"a{unique}": ["dev-a", "dev-b"]}
    ) as secured:
        yield secured


def _brand(b: SecuredBroker) -> str:
    return next(iter(b.bundles))


def test_each_device_reads_and_writes_only_its_own_topics(acl_broker: SecuredBroker) -> None:
    brand = _brand(acl_broker)
    hub = acl_broker.probe(acl_broker.hub_user)
    a = acl_broker.probe(f"{brand}.dev-a")
    b = acl_broker.probe(f"{brand}.dev-b")
    clients = [hub, a, b]
    try:
        assert all(c.connected.wait(5) for c in clients)
        assert hub.subscribe(f"ts/v1/{brand}/+/delta")
        assert not a.subscribe(f"ts/v1/{brand}/dev-b/ack")  # not A's to read
        assert not a.subscribe(f"ts/v1/{brand}/+/delta")  # nor other devices' uplinks
        assert b.subscribe(f"ts/v1/{brand}/dev-b/ack")
        # the strategy lab's offers: B reads its own; A may neither read nor forge them
        assert not a.subscribe(f"ts/v1/{brand}/dev-b/offer")
        assert b.subscribe(f"ts/v1/{brand}/dev-b/offer")
        a.c.publish(f"ts/v1/{brand}/dev-b/offer", b"forged-offer", qos=1).wait_for_publish(5)
        hub.c.publish(f"ts/v1/{brand}/dev-b/offer", b"offer-for-b", qos=1).wait_for_publish(5)
        a.c.publish(f"ts/v1/{brand}/dev-a/delta", b"own", qos=1).wait_for_publish(5)
        a.c.publish(f"ts/v1/{brand}/dev-b/delta", b"forged", qos=1).wait_for_publish(5)
        a.c.publish(f"ts/v1/{brand}/dev-a/ack", b"self-ack", qos=1).wait_for_publish(5)
        hub.c.publish(f"ts/v1/{brand}/dev-b/ack", b"for-b", qos=1).wait_for_publish(5)
        assert wait_for(lambda: (f"ts/v1/{brand}/dev-b/ack", b"for-b") in b.got)
        assert wait_for(lambda: (f"ts/v1/{brand}/dev-b/offer", b"offer-for-b") in b.got)
        assert wait_for(lambda: (f"ts/v1/{brand}/dev-a/delta", b"own") in hub.got)
        time.sleep(0.5)  # what was refused would have arrived by now
        assert [p for _t, p in hub.got] == [b"own"]  # the forged delta never reached the hub
        assert a.got == []  # A saw neither B's ack nor any delta
        assert b"forged-offer" not in [p for _t, p in b.got]  # A could not forge an offer
    finally:
        for c in clients:
            c.close()


def test_only_the_hub_may_publish_a_tag_catalog(acl_broker: SecuredBroker) -> None:
    """Devices subscribe to their brand's ``broadcast/tags`` (the hub's retained tag
    catalog); a device's publish there never reaches another device."""
    brand = _brand(acl_broker)
    hub = acl_broker.probe(acl_broker.hub_user)
    a = acl_broker.probe(f"{brand}.dev-a")
    b = acl_broker.probe(f"{brand}.dev-b")
    clients = [hub, a, b]
    topic_ = f"ts/v1/{brand}/broadcast/tags"
    try:
        assert all(c.connected.wait(5) for c in clients)
        assert b.subscribe(topic_)
        a.c.publish(topic_, b"forged catalog", qos=1).wait_for_publish(5)
        hub.c.publish(topic_, b"hub catalog", qos=1).wait_for_publish(5)
        assert wait_for(lambda: (topic_, b"hub catalog") in b.got)
        time.sleep(0.5)  # what was refused would have arrived by now
        assert [p for _t, p in b.got] == [b"hub catalog"]
    finally:
        for c in clients:
            c.close()


def test_wrong_and_anonymous_logins_are_refused(acl_broker: SecuredBroker) -> None:
    brand = _brand(acl_broker)
    b_password = acl_broker.passwords[f"{brand}.dev-b"]
    attempts = [
        (f"{brand}.dev-a", "wrong", None),
        (f"{brand}.dev-a", b_password, None),  # B's password for A
        (None, None, "anonymous"),  # no username at all
        (acl_broker.hub_user, "wrong", None),
    ]
    for username, password, client_id in attempts:
        c = Probe(acl_broker.port, username, password, client_id)
        try:
            assert not c.refused_or_connected(), username
        finally:
            c.close()


def test_revoking_a_device_disconnects_it_at_once(
    acl_broker: SecuredBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    """'broker-auth --apply' after a revocation deletes the device's account: its open
    connection is dropped and it cannot log in again; no broker reload is needed. A
    second run finds nothing to change."""
    brand = _brand(acl_broker)
    a = acl_broker.probe(f"{brand}.dev-a")
    b = acl_broker.probe(f"{brand}.dev-b")
    try:
        assert a.connected.wait(5)
        assert b.connected.wait(5)
        Registry(acl_broker.config.registry.path).revoke(brand, "dev-a")
        assert hub_cli(["broker-auth", "--config", str(acl_broker.toml), "--apply"]) == 0
        assert wait_for(lambda: a.disconnects == 1)
        assert "0 accounts created, 0 updated, 1 deleted" in capsys.readouterr().out
        assert hub_cli(["broker-auth", "--config", str(acl_broker.toml), "--apply"]) == 0
        assert ", 0 updated, 0 deleted (disconnected), 0 roles" in capsys.readouterr().out
        again = acl_broker.probe(f"{brand}.dev-a")
        try:
            assert not again.refused_or_connected()
        finally:
            again.close()
        assert b.disconnects == 0  # the rest of the fleet is untouched
        assert b.c.is_connected()
        # The file for the broker's next start no longer has the account either.
        rewrite = ["broker-auth", "--config", str(acl_broker.toml), "--out", str(acl_broker.out)]
        assert hub_cli(rewrite) == 0
        users = {c["username"] for c in _dynsec(acl_broker)["clients"]}
        assert f"{brand}.dev-a" not in users
        assert f"{brand}.dev-b" in users
    finally:
        a.close()
        b.close()


def _dynsec(b: SecuredBroker) -> dict[str, object]:
    data: dict[str, object] = json.loads((b.out / "dynamic-security.json").read_text())
    return data


async def test_an_agent_syncs_through_the_confined_broker(
    acl_broker: SecuredBroker, tmp_path: Path
) -> None:
    config = acl_broker.config
    brand = _brand(acl_broker)
    _key, token = ApiKeys(config.registry.path).create(brand, "t", SCOPES)
    agent_config = load_config(
        acl_broker.bundles[brand]["dev-a"] / "agent.toml",
        {"models": {"enabled": False}},
        environ={},
    )
    async with Hub(config) as hub, Agent(agent_config) as agent:
        await hub.ready.wait()
        await agent.ingest(
            SignalIn(seq=1, ts=int(time.time() * 1000), subject="ann", name="coffee.brew", value=1)
        )
        assert await agent.drained(15)
        url = f"{hub.api_url}/v1/brands/{brand}/twins"

        async def listed() -> bool:
            return len((await get_json(url, token=token))["twins"]) == 1

        assert await eventually(listed, within=10)


def test_provisioning_can_write_the_broker_file_at_once(tmp_path: Path) -> None:
    toml = tmp_path / "hub.toml"
    toml.write_text('[registry]\npath = "registry.sqlite"\n[keys]\nsecrets_dir = "secrets"\n')
    broker = tmp_path / "broker"
    argv = ["provision", "--config", str(toml), "--brand", "acme", "--device", "m-1"]
    argv += ["--product", "coffee", "--out", str(tmp_path / "m-1"), "--broker-dir", str(broker)]
    assert hub_cli(argv) == 0
    assert (tmp_path / "m-1" / "agent.toml").exists()
    data = json.loads((broker / "dynamic-security.json").read_text())
    (client,) = [c for c in data["clients"] if c["username"] == "acme.m-1"]
    assert client["clientid"] == "acme.m-1"
    (role,) = [r for r in data["roles"] if r["rolename"] == client["roles"][0]["rolename"]]
    topics = {(a["acltype"], a["topic"]) for a in role["acls"]}
    assert ("publishClientSend", "ts/v1/acme/m-1/delta") in topics
    assert data["defaultACLAccess"]["subscribe"] is False


def test_provisioning_onto_a_running_broker(acl_broker: SecuredBroker, tmp_path: Path) -> None:
    """A device provisioned while the broker runs can log in at once with
    'provision --broker-apply'; 'broker-auth --apply' without its password reports it and
    creates it from its bundle; a re-provisioned device's old password stops working."""
    brand, toml = _brand(acl_broker), str(acl_broker.toml)
    base = ["provision", "--config", toml, "--brand", brand, "--product", "coffee"]
    assert (
        hub_cli([*base, "--device", "new-1", "--out", str(tmp_path / "n1"), "--broker-apply"]) == 0
    )
    password = (tmp_path / "n1" / "mqtt.password").read_text().strip()
    p = Probe(acl_broker.port, f"{brand}.new-1", password)
    assert p.refused_or_connected()
    p.close()
    # Provisioned without touching the broker: --apply cannot invent its password...
    assert hub_cli([*base, "--device", "new-2", "--out", str(tmp_path / "n2")]) == 0
    assert hub_cli(["broker-auth", "--config", toml, "--apply"]) == 1
    password2 = (tmp_path / "n2" / "mqtt.password").read_text().strip()
    p = Probe(acl_broker.port, f"{brand}.new-2", password2)
    assert not p.refused_or_connected()
    p.close()
    # ... but takes it from the bundle.
    apply = ["broker-auth", "--config", toml, "--apply", "--bundles", str(tmp_path / "n2")]
    assert hub_cli(apply) == 0
    p = Probe(acl_broker.port, f"{brand}.new-2", password2)
    assert p.refused_or_connected()
    p.close()
    # Re-provisioned (new password) without the new bundle at hand: the old one is shut out.
    old = Probe(acl_broker.port, f"{brand}.new-1", password)
    assert old.refused_or_connected()
    assert hub_cli([*base, "--device", "new-1", "--out", str(tmp_path / "n1b"), "--force"]) == 0
    assert hub_cli(["broker-auth", "--config", toml, "--apply"]) == 1
    assert wait_for(lambda: old.disconnects == 1)
    old.close()
    p = Probe(acl_broker.port, f"{brand}.new-1", password)
    assert not p.refused_or_connected()
    p.close()


def test_hub_accounts_follow_the_remembered_instance_list(acl_broker: SecuredBroker) -> None:
    """'--hub-ids' gives each hub instance its account (one shared password); a later run
    with another config's client id keeps them; naming fewer ids retires the others,
    which are disconnected at once."""
    toml, password = str(acl_broker.toml), acl_broker.passwords[acl_broker.hub_user]
    apply = ["broker-auth", "--config", toml, "--apply"]
    assert hub_cli([*apply, "--hub-ids", f"{acl_broker.hub_user},hub-2"]) == 0
    second = Probe(acl_broker.port, "hub-2", password)
    assert second.refused_or_connected()
    other = acl_broker.toml.with_name("other.toml")
    other.write_text(acl_broker.toml.read_text().replace(acl_broker.hub_user, "hub-9"))
    assert hub_cli(["broker-auth", "--config", str(other), "--apply"]) == 0
    time.sleep(0.3)
    assert second.disconnects == 0  # hub-9 got no account, hub-2 kept its own
    ninth = Probe(acl_broker.port, "hub-9", password)
    assert not ninth.refused_or_connected()
    ninth.close()
    assert hub_cli([*apply, "--hub-ids", acl_broker.hub_user]) == 0
    assert wait_for(lambda: second.disconnects == 1)
    second.close()
