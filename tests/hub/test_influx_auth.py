"""InfluxDB with authentication, as deployed: the launcher's influxd refuses anonymous and
wrongly authenticated requests, the hub sends its credentials on every request (reads,
writes and the POSTed DELETE/CREATE statements), and a least-privilege user as
docs/hub.md describes it (``GRANT ALL`` on the hub's database only) is all the hub needs
once the database exists."""

from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from _fakes import FakeDevice, get_json, now_hlc, send_json
from hub_env import HubEnv

from cloud_hub import Hub, InfluxStore, StoreError
from twinsync.services import Influxd


def _status(url: str, data: bytes | None = None, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=data)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_anonymous_requests_are_refused_while_the_hub_works(
    hub: Hub, hub_env: HubEnv, device: FakeDevice
) -> None:
    env = hub_env
    influxd, db = env.services.influxd, env.config.influx.database
    twin = device.twin("ann@example.test")
    device.publish(device.delta(1, {twin: [(now_hlc(), "coffee.brews_total", 3)]}))
    await device.wait_acked({1})  # written (acks follow the durable write)
    answer = await get_json(f"{hub.api_url}/v1/brands/{env.brand}/twins/{twin}", token=env.token)
    assert answer["fields"]["coffee.brews_total"]["value"] == 3
    read = f"{influxd.url}/query?" + urllib.parse.urlencode({"db": db, "q": 'SELECT * FROM "twin"'})
    drop = urllib.parse.urlencode({"q": f'DROP DATABASE "{db}"'}).encode()
    write = f"{influxd.url}/write?db={db}"
    line = f"twin,brand={env.brand},device=x,twin={twin} coffee.brews_total=99i".encode()
    wrong = (influxd.username, influxd.password + "x")
    assert _status(read) == 401
    assert _status(f"{influxd.url}/query", drop) == 401
    assert _status(write, line) == 401
    assert _status(read, auth=wrong) == 401
    assert _status(f"{influxd.url}/query", drop, auth=wrong) == 401
    assert _status(read, auth=(influxd.username, influxd.password)) == 200
    assert _status(f"{influxd.url}/ping") == 204  # readiness stays open
    assert {p[4] for p in env.points()} == {3}  # nothing anonymous landed or was dropped


async def test_the_hub_client_authenticates_every_kind_of_request(hub_env: HubEnv) -> None:
    """Reads go as GET, DELETE/CREATE as POST: InfluxDB 1.x takes ``u``/``p`` only from
    the URL, so credentials in a POSTed form were anonymous (401) before."""
    env = hub_env
    env.write([f"twin,brand={env.brand},device=d,twin=1-{'a' * 32} coffee.brews_total=1i"])
    async with InfluxStore(env.config.influx) as store:
        await store.ensure_database()  # POST
        assert (await store.query('SELECT count(*) FROM "twin"'))[0]["series"]  # GET
        await store.write([f"twin,brand={env.brand},device=d,twin=1-{'c' * 32} x=1i"])
        await store.query(f'DELETE FROM "twin" WHERE "twin" = \'1-{"a" * 32}\'', write=True)
    assert {p[1] for p in env.points()} == {f"1-{'c' * 32}"}
    wrong = env.config.influx.model_copy(update={"password": "not-it"})
    async with InfluxStore(wrong) as store:
        for write in (False, True):
            with pytest.raises(StoreError, match="401"):
                await store.query('SELECT count(*) FROM "twin"', write=write)
        with pytest.raises(StoreError, match="401"):
            await store.write([f"twin,brand={env.brand},device=d,twin=1-{'d' * 32} x=1i"])


async def test_a_least_privilege_user_runs_the_hub_on_a_database_made_beforehand(
    hub_env: HubEnv, unique: str
) -> None:
    """docs/hub.md: ``CREATE USER twinsync ...; GRANT ALL ON twinsync TO twinsync``, the
    database (and retention policy) made by an admin, ``influx.create_database = false``."""
    env = hub_env
    influxd, db = env.services.influxd, env.config.influx.database
    user, password = f"hub{unique}", f"pw-{unique}"
    influxd.query(f'CREATE DATABASE "{db}"')
    influxd.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}'")
    influxd.query(f'GRANT ALL ON "{db}" TO "{user}"')
    limited = env.config.influx.model_copy(
        update={"username": user, "password": password, "create_database": False}
    )
    influxd.query(f'CREATE DATABASE "other{unique}"')
    influxd.write(f"other{unique}", ["m v=1i 1"])
    async with InfluxStore(limited) as store:
        with pytest.raises(StoreError, match="not authorized"):  # needs an admin
            await store.ensure_database()
    other = limited.model_copy(update={"database": f"other{unique}"})
    async with InfluxStore(other) as elsewhere:
        with pytest.raises(StoreError, match="not authorized"):  # the hub's database only
            await elsewhere.query('SELECT * FROM "m"')
    config = env.config.model_copy(update={"influx": limited})
    device = FakeDevice(
        env.bundles["dev-0"].parent, env.brand, "dev-0", env.services.mosquitto.port
    )
    try:
        async with Hub(config) as hub:
            await hub.ready.wait()
            ann = device.twin("ann@example.test")
            device.publish(device.delta(1, {ann: [(now_hlc(), "coffee.brews_total", 2)]}))
            await device.wait_acked({1})
            assert {p[1] for p in env.points()} == {ann}
            status, receipt = await send_json(
                "POST",
                f"{hub.api_url}/v1/brands/{env.brand}/privacy/erasure",
                {"subject": "ann@example.test"},
                env.token,
            )
            assert status == 200, receipt  # DELETE needs only the database grant
            assert receipt["points_found"] == 1
            assert env.points() == set()
    finally:
        device.close()


def test_the_launcher_keeps_its_credentials_across_restarts(tmp_path: Path) -> None:
    influxd = Influxd(tmp_path / "influxd")
    influxd.start()
    try:
        password = influxd.password
        assert (influxd.password_file.stat().st_mode & 0o777) == 0o600
        influxd.query('CREATE DATABASE "kept"')
        influxd.write("kept", ["m v=1i 1"])
        influxd.restart()
        again = Influxd(influxd.workdir, influxd.http_port, influxd.rpc_port)
        assert again.password == password  # read back from the work directory
        assert again.query('SELECT v FROM "m"', "kept")[0]["series"][0]["values"] == [[1, 1]]
        query = f"{influxd.url}/query?q=SHOW+DATABASES"
        assert _status(query, auth=(influxd.username, "guessed")) == 401
        assert _status(query) == 401
    finally:
        influxd.stop()
