"""Device administration with the real console command: provisioning refuses to replace
an identity without --force, --force locks the old bundle out, and ``hub device list`` /
``hub device revoke`` work against a running hub (real mosquitto and InfluxDB)."""

from __future__ import annotations

import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from _cli import one_line_error, run_twinsync
from _fakes import FakeDevice, now_hlc
from _poll import eventually

from cloud_hub import Hub, HubConfig, load_hub_config
from twinsync.services import LocalServices


@dataclass
class Admin:
    """A hub configuration on the session's services, and the console command on it."""

    toml: Path
    brand: str
    root: Path
    services: LocalServices

    @property
    def config(self) -> HubConfig:
        return load_hub_config(self.toml, environ={})

    def hub(self, *args: str) -> tuple[int, str, str]:
        proc = run_twinsync("hub", args[0], "--config", str(self.toml), *args[1:])
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, proc.stdout, proc.stderr

    def provision(self, device: str, *extra: str) -> tuple[int, str, str]:
        out = self.root / "bundles" / device
        return self.hub(
            "provision", "--brand", self.brand, "--device", device, "--product", "coffee",
            "--out", str(out), *extra,
        )  # fmt: skip

    def registry_row(self, device: str) -> tuple[object, ...]:
        with sqlite3.connect(self.root / "registry.sqlite") as db:
            row = db.execute(
                "SELECT public_key, created_ms, revoked, mqtt_hash FROM devices "
                "WHERE brand=? AND device=?",
                (self.brand, device),
            ).fetchone()
        assert row is not None
        return tuple(row)


@pytest.fixture
def admin(tmp_path: Path, services: LocalServices, unique: str) -> Admin:
    brand = f"b{unique}"
    toml = tmp_path / "hub.toml"
    toml.write_text(
        f'[mqtt]\nport = {services.mosquitto.port}\nclient_id = "h{unique}"\n'
        f'shared_group = "g{unique}"\nbrands = ["{brand}"]\n'
        + services.influxd.hub_toml(f"db{unique}")
        + '[api]\nport = 0\n[registry]\npath = "registry.sqlite"\n'
        '[keys]\nsecrets_dir = "secrets"\n[models]\ndir = "models"\n'
    )
    return Admin(toml, brand, tmp_path, services)


def _files(bundle: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(bundle.iterdir())}


def test_reprovisioning_without_force_is_refused_and_changes_nothing(admin: Admin) -> None:
    assert admin.provision("m-1")[0] == 0
    bundle = admin.root / "bundles" / "m-1"
    files, row = _files(bundle), admin.registry_row("m-1")
    # The same device again, into its own bundle and into a fresh directory.
    for out in (bundle, admin.root / "elsewhere"):
        proc = run_twinsync(
            "hub", "provision", "--config", str(admin.toml), "--brand", admin.brand,
            "--device", "m-1", "--product", "coffee", "--out", str(out),
        )  # fmt: skip
        line = one_line_error(proc)
        assert f"device {admin.brand}/m-1 (since " in line
        assert "already provisioned; --force" in line
    assert _files(bundle) == files  # key, password, agent.toml: byte for byte
    assert admin.registry_row("m-1") == row  # same key, hash, time, not revoked
    assert not (admin.root / "elsewhere").exists()
    # A batch that overlaps existing devices is refused as a whole.
    assert admin.hub("provision", "--brand", admin.brand, "--device", "m", "--count", "2",
                     "--product", "coffee", "--out", str(admin.root / "batch"))[0] == 0  # fmt: skip
    code, _out, err = admin.hub(
        "provision", "--brand", admin.brand, "--device", "m", "--count", "3",
        "--product", "coffee", "--out", str(admin.root / "batch"),
    )  # fmt: skip
    assert code == 2
    assert f"devices {admin.brand}/m-0001" in err
    assert f"{admin.brand}/m-0002" in err
    assert not (admin.root / "batch" / "m-0003").exists()


async def test_force_rotates_the_keys_and_the_hub_refuses_the_old_bundle(admin: Admin) -> None:
    assert admin.provision("m-1")[0] == 0
    bundle = admin.root / "bundles" / "m-1"
    old = admin.root / "old-m-1"
    shutil.copytree(bundle, old)
    config = admin.config
    async with Hub(config) as hub:
        await hub.ready.wait()
        hub.registry.refresh_s = 0.0  # see other processes' changes at once (default 1 s)
        before = FakeDevice(old, admin.brand, "m-1", admin.services.mosquitto.port)
        try:
            before.publish(
                before.delta(1, {before.twin("ann"): [(now_hlc(), "coffee.strength", 2)]})
            )
            await before.wait_acked({1})
        finally:
            before.close()
        code, _out, err = admin.provision("m-1", "--force")
        assert code == 0
        assert f"re-provisioned {admin.brand}/m-1 with new keys" in err
        assert "broker-auth --apply" in err  # the broker side: tests/hub/test_broker_acl.py
        assert (bundle / "device.key").read_bytes() != (old / "device.key").read_bytes()
        assert (bundle / "mqtt.password").read_bytes() != (old / "mqtt.password").read_bytes()
        # The attack: the old bundle (a device that was wiped and resold, a stolen SD card)
        # keeps sending with its key. Refused, counted, never acked.
        stale = FakeDevice(old, admin.brand, "m-1", admin.services.mosquitto.port)
        try:
            stale.publish(stale.delta(2, {stale.twin("ann"): [(now_hlc(), "coffee.strength", 9)]}))

            def refused() -> bool:
                return hub.metrics.get("twinsync_hub_rejected_total") >= 1

            assert await eventually(refused, within=15)
            assert stale.acked_seqs() == set()  # never acked
        finally:
            stale.close()
        fresh = FakeDevice(bundle, admin.brand, "m-1", admin.services.mosquitto.port)
        try:
            fresh.publish(fresh.delta(3, {fresh.twin("ann"): [(now_hlc(), "coffee.strength", 4)]}))
            await fresh.wait_acked({3})
        finally:
            fresh.close()
        assert hub.metrics.get("twinsync_hub_rejected_total") == 1
        assert hub.metrics.get("twinsync_hub_rejected_total", reason="wrong_key") == 1


def test_device_list_shows_every_device_and_never_a_secret(admin: Admin) -> None:
    for device in ("m-1", "m-2"):
        assert admin.provision(device)[0] == 0
    other = f"{admin.brand}x"
    assert admin.hub("provision", "--brand", other, "--device", "o-1", "--product", "tv",
                     "--out", str(admin.root / "o-1"))[0] == 0  # fmt: skip
    assert admin.hub("device", "revoke", "--brand", admin.brand, "--device", "m-2")[0] == 0
    code, out, _err = admin.hub("device", "list")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["brand", "device", "product", "provisioned", "state"]
    assert [(r[0], r[1], r[2], r[-1]) for r in rows[1:]] == [
        (admin.brand, "m-1", "coffee", "active"),
        (admin.brand, "m-2", "coffee", "revoked"),
        (other, "o-1", "tv", "active"),
    ]
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", " ".join(r[3:6])) for r in rows[1:]
    )
    secrets = []
    for bundle in (
        admin.root / "bundles" / "m-1",
        admin.root / "bundles" / "m-2",
        admin.root / "o-1",
    ):
        secrets.append((bundle / "mqtt.password").read_text().strip())
        secrets.append((bundle / "hub.pub").read_text().strip())
    with sqlite3.connect(admin.root / "registry.sqlite") as db:
        for key, mqtt_hash in db.execute("SELECT public_key, mqtt_hash FROM devices"):
            secrets += [key, mqtt_hash]
    assert not [s for s in secrets if s in out]
    assert "$7$" not in out
    assert "PRIVATE KEY" not in out
    code, out, _err = admin.hub("device", "list", "--brand", other)
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["o-1"]


def test_revoking_an_unknown_device_is_one_line_and_changes_nothing(admin: Admin) -> None:
    assert admin.provision("m-1")[0] == 0
    row = admin.registry_row("m-1")
    proc = run_twinsync(
        "hub", "device", "revoke", "--config", str(admin.toml), "--brand", admin.brand,
        "--device", "m-9",
    )  # fmt: skip
    assert one_line_error(proc).startswith(f"twinsync hub: no device {admin.brand}/m-9 in the")
    assert admin.registry_row("m-1") == row


async def test_a_revoked_device_is_refused_and_counted_by_a_running_hub(admin: Admin) -> None:
    assert admin.provision("m-1")[0] == 0
    assert admin.provision("m-2")[0] == 0
    bundles = admin.root / "bundles"
    async with Hub(admin.config) as hub:
        await hub.ready.wait()
        hub.registry.refresh_s = 0.0  # see other processes' changes at once (default 1 s)
        port = admin.services.mosquitto.port
        revoked = FakeDevice(bundles / "m-1", admin.brand, "m-1", port)
        kept = FakeDevice(bundles / "m-2", admin.brand, "m-2", port)
        try:
            revoked.publish(
                revoked.delta(1, {revoked.twin("ann"): [(now_hlc(), "coffee.strength", 2)]})
            )
            await revoked.wait_acked({1})  # known to the hub (and in its cache) before
            # The operator revokes it from another process while the hub runs.
            code, out, err = admin.hub(
                "device", "revoke", "--brand", admin.brand, "--device", "m-1"
            )
            assert code == 0
            assert out.strip() == f"revoked {admin.brand}/m-1"
            assert "broker-auth" in err
            # The attack: the revoked device still holds a valid key and keeps sending.
            revoked.publish(
                revoked.delta(2, {revoked.twin("ann"): [(now_hlc(), "coffee.strength", 7)]})
            )

            def counted() -> bool:
                return hub.metrics.get("twinsync_hub_rejected_total", reason="revoked") == 1

            assert await eventually(counted, within=15)
            # Another device of the brand is unaffected; the revoked one got no ack.
            kept.publish(kept.delta(1, {kept.twin("bob"): [(now_hlc(), "coffee.strength", 3)]}))
            await kept.wait_acked({1})
            assert revoked.acked_seqs() == {1}
            assert revoked.rejected() == {}
        finally:
            revoked.close()
            kept.close()
        assert hub.metrics.get("twinsync_hub_rejected_total") == 1
    # Nothing of seq 2 was written: m-1's only point is the one from before.
    db = admin.config.influx.database
    (result,) = admin.services.influxd.query(
        "SELECT \"coffee.strength\" FROM twin WHERE device='m-1'", db
    )
    assert [row[1] for row in result["series"][0]["values"]] == [2]
    code, out, _err = admin.hub("device", "list", "--brand", admin.brand)
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["revoked", "active"]
