"""deploy/compose.yaml: valid, consistent with the code and configs it names, and working.

Docker Engine is not available on the machines these tests run on, so nothing here starts
a container. Instead:

- the file is validated against the Compose specification's JSON schema, vendored as
  ``compose-spec.json`` next to this file (compose-spec/compose-spec,
  ``schema/compose-spec.json`` at commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6;
  Apache-2.0 like this project);
- what it describes is checked against what exists: mounted files, the ``.env``
  deploy/README.md makes, the hub's settings (HubConfig), deploy/mosquitto/mosquitto.conf,
  the Grafana provisioning and dashboards, the Dockerfile's build context;
- deploy/README.md's Compose walk-through runs as local processes
  (:func:`test_compose_walkthrough_runs_as_local_processes`): each ``docker compose``
  command becomes the same command in the service's environment, with container paths
  mapped to temporary directories standing for the volumes, service names to 127.0.0.1
  and container ports to free loopback ports; ``up -d --wait postgres`` starts a private
  PostgreSQL with the user and database the postgres service's image makes; ``up -d``
  starts mosquitto with the compose file's broker configuration, a private InfluxDB with
  the users deploy/README.md lists, and both hubs. The rest of each command is typed as
  written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from _markdown import REPO, Command, blocks, commands, section_blocks
from _shell import Shell, checkout, influx_setup, set_toml
from _tls import make_pki

from cloud_hub import HubConfig, load_hub_config
from cloud_hub.registry import ensure_hub_password
from cloud_hub.store import TWIN_MEASUREMENTS
from protocol import pseudonymize
from twinsync.services import Influxd, Mosquitto, Postgres, free_port, wait_port

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SCHEMA = Path(__file__).with_name("compose-spec.json")
DEPLOY_README = DEPLOY / "README.md"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
#: InfluxQL keys whose value is a path: compared by presence, not value
_PATH_KEYS = {
    "persistence_location",
    "certfile",
    "keyfile",
    "cafile",
    "capath",
    "plugin",
    "plugin_opt_config_file",
    "password_file",
    "acl_file",
    "include_dir",
    "pid_file",
}
#: broker settings that differ by design between a host and the image: where logs go,
#: and the user (the image's entrypoint runs mosquitto as its own user)
_HOST_ONLY_KEYS = {"log_dest", "user"}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _compose_block() -> list[Command]:
    return [c for b in section_blocks(DEPLOY_README, "Compose") for c in commands(b)]


def _interpolate(value: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env and (env[name] or op not in (":-", ":?")):
            return env[name]
        if op in (":-", "-"):
            return arg or ""
        raise AssertionError(f"compose.yaml needs ${{{name}}}: {arg}")

    return _VAR.sub(one, value)


def _dotenv(workdir: Path) -> dict[str, str]:
    """Run deploy/README.md's commands up to the one writing ``.env`` (in a copy of
    deploy/) and return what it wrote."""
    steps: list[str] = []
    for command in _compose_block():
        steps.append(command.text)
        if "> .env" in command.text:
            break
    else:
        raise AssertionError("deploy/README.md, Compose, never writes deploy/.env")
    (workdir / "deploy").mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", "-euc", "\n".join(steps)], cwd=workdir, check=True, timeout=60)
    env_file = workdir / "deploy/.env"
    assert stat.S_IMODE(env_file.stat().st_mode) & 0o077 == 0, "deploy/.env holds passwords"
    out = {}
    for line in env_file.read_text().splitlines():
        name, _, value = line.partition("=")
        out[name] = value
    return out


@pytest.fixture(scope="module")
def dotenv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _dotenv(tmp_path_factory.mktemp("dotenv"))


def _service_env(service: dict[str, Any], dotenv: dict[str, str]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping"
    return {k: _interpolate(str(v), dotenv) for k, v in env.items()}


def _hubs(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: s
        for name, s in compose["services"].items()
        if s.get("command", [])[:3] == ["twinsync", "hub", "run"]
    }


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """``(source, target)`` of a service's short-syntax volumes."""
    out = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        out.append((source, target))
    return out


def _conf(text: str) -> list[tuple[str, str]]:
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.append((key, value.strip()))
    return out


# -- the file itself ------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification_schema() -> None:
    """compose.yaml passes the Compose spec's JSON schema, which does refuse a misspelt
    key (so the check can fail)."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    compose = _compose()
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    broken = json.loads(json.dumps(compose))
    broken["services"]["influxdb"]["enviroment"] = {}
    assert not validator.is_valid(broken)


def test_every_mounted_file_and_build_input_exists() -> None:
    """Bind mounts, the build context and the Dockerfile are files of this repository
    (deploy/mosquitto/certs is the operator's, per deploy/README.md)."""
    compose = _compose()
    operator_provided = {"./mosquitto/certs"}
    for name, service in compose["services"].items():
        for source, _target in _mounts(service):
            if source.startswith((".", "/")) and source not in operator_provided:
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    for name, config in compose.get("configs", {}).items():
        assert "content" in config or (DEPLOY / config["file"]).exists(), name


def test_env_file_command_makes_every_variable_compose_needs(dotenv: dict[str, str]) -> None:
    """Every ${VAR} in compose.yaml is written by deploy/README.md's .env command, with a
    value (so 'docker compose up' does not refuse to start), in a file only its owner
    can read."""
    needed = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text())}
    assert needed
    assert needed <= set(dotenv), needed - set(dotenv)
    assert all(len(dotenv[name]) >= 32 for name in needed)


# -- the hubs ---------------------------------------------------------------------------


def test_hub_environment_is_real_hub_settings_that_load(dotenv: dict[str, str]) -> None:
    """Every hub variable names a HubConfig setting, and the hubs' configuration (the
    mounted hub.example.toml plus their environment) loads."""
    hubs = _hubs(_compose())
    assert len(hubs) >= 2
    for name, service in hubs.items():
        env = _service_env(service, dotenv)
        for key in env:
            assert key.startswith("TWINSYNC_HUB__"), (name, key)
            section, field = key.removeprefix("TWINSYNC_HUB__").lower().split("__")
            assert section in HubConfig.model_fields, (name, key)
            model = HubConfig.model_fields[section].annotation
            assert model is not None
            assert field in model.model_fields, f"{name}: {key} is not a hub setting"
        toml = {t: s for s, t in _mounts(service)}["/etc/twinsync/hub.toml"]
        load_hub_config(DEPLOY / toml, environ=env)


def test_hubs_share_state_and_group_with_distinct_identities(
    dotenv: dict[str, str], tmp_path: Path
) -> None:
    """Both hubs keep their shared state in the postgres service's database, as its user
    with its password, mount the same volume where their secrets and models are, share
    one subscription group, and have distinct client ids, each its broker user; they
    reach the broker and InfluxDB by service name, with the hub's InfluxDB user, which is
    not an admin, so the hubs do not create the database; deploy/README.md makes a broker
    account for exactly these client ids."""
    compose = _compose()
    services, hubs = compose["services"], _hubs(compose)
    configs = {}
    for name, service in hubs.items():
        toml = {t: s for s, t in _mounts(service)}["/etc/twinsync/hub.toml"]
        configs[name] = load_hub_config(DEPLOY / toml, environ=_service_env(service, dotenv))
        assert {"mosquitto", "influxdb"} <= set(service["depends_on"])
    state = {
        (source, target)
        for service in hubs.values()
        for source, target in _mounts(service)
        if target == "/var/lib/twinsync"
    }
    assert len(state) == 1, "every hub mounts one state volume at one place"
    ((volume, target),) = state
    assert volume in compose["volumes"]
    postgres = services["postgres"]["environment"]
    for name, config in configs.items():
        written = [config.keys.secrets_dir, config.models.dir]
        written += [config.mqtt.password_file] if config.mqtt.password_file else []
        assert all(p.is_relative_to(target) for p in written), written
        state = config.state.target
        assert (state.scheme, state.host, state.user, state.database) == (
            "postgresql",
            "postgres",
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_DB"],
        )
        raw = hubs[name]["environment"]["TWINSYNC_HUB__STATE__PASSWORD"]
        assert _VAR.match(raw).group(1) == _VAR.match(postgres["POSTGRES_PASSWORD"]).group(1)  # type: ignore[union-attr]
        assert "postgres" in hubs[name]["depends_on"]
    ids = [c.mqtt.client_id for c in configs.values()]
    assert len(set(ids)) == len(ids)
    assert all(c.mqtt.username == c.mqtt.client_id for c in configs.values())
    # Each hub's broker account: deploy/README.md's broker-auth makes one per listed id,
    # with the password in the file the hubs read.
    made = ensure_hub_password(tmp_path / "secrets").name
    assert all(c.mqtt.password_file == c.keys.secrets_dir / made for c in configs.values())
    (broker_auth,) = [c.words for c in _compose_block() if "broker-auth" in c.text]
    listed = broker_auth[broker_auth.index("--hub-ids") + 1].split(",")
    assert sorted(listed) == sorted(ids)
    assert len({c.mqtt.shared_group for c in configs.values()}) == 1
    assert next(iter(configs.values())).mqtt.shared_group
    influx_env = services["influxdb"]["environment"]
    for name, config in configs.items():
        assert config.mqtt.host in services
        assert urllib.parse.urlparse(config.influx.url).hostname in services
        assert config.influx.username == influx_env["INFLUXDB_USER"]
        assert config.influx.database == influx_env["INFLUXDB_DB"]
        raw = hubs[name]["environment"]["TWINSYNC_HUB__INFLUX__PASSWORD"]
        assert _VAR.match(raw).group(1) == _VAR.match(influx_env["INFLUXDB_USER_PASSWORD"]).group(1)  # type: ignore[union-attr]
        assert config.influx.create_database is False
    ports = [p for s in hubs.values() for p in s["ports"]]
    assert len({p.split(":")[0] for p in ports}) == len(ports), "distinct host ports"


# -- the broker ---------------------------------------------------------------------------


def test_broker_config_carries_every_setting_of_deploy_mosquitto_conf() -> None:
    """The compose broker configuration has each setting of deploy/mosquitto/mosquitto.conf
    (values equal, paths in the image's layout, the same listener ports), publishes only
    its TLS listener (plain MQTT stays on the compose network), loads its
    accounts from a volume the hubs mount where deploy/README.md's 'broker-auth --out'
    writes (the walk-through below runs a real mosquitto with it)."""
    compose = _compose()
    content = compose["configs"]["mosquitto-conf"]["content"]
    host, image = _conf((DEPLOY / "mosquitto/mosquitto.conf").read_text()), _conf(content)

    def settings(conf: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return sorted(
            (k, "<path>" if k in _PATH_KEYS else v)
            for k, v in conf
            if k not in _HOST_ONLY_KEYS and k != "listener"
        )

    assert settings(image) == settings(host)
    ports = sorted(v.split()[0] for k, v in image if k == "listener")
    assert ports == sorted(v.split()[0] for k, v in host if k == "listener")
    mosquitto = compose["services"]["mosquitto"]
    # Only the TLS listener is published: plain MQTT never leaves the compose network.
    published = [p.split(":")[-1] for p in mosquitto["ports"]]
    keys_of: dict[str, set[str]] = {}  # listener port -> settings that follow it
    for key, value in image:
        if key == "listener":
            port = value.split()[0]
            keys_of[port] = set()
        elif keys_of:
            keys_of[port].add(key)
    tls_listeners = [port for port, keys in keys_of.items() if "certfile" in keys]
    assert published == tls_listeners == ["8883"]
    config_file = dict(image)["plugin_opt_config_file"]
    volume = next(s for s, t in _mounts(mosquitto) if config_file.startswith(t + "/"))
    hub_dirs = {t for hub in _hubs(compose).values() for s, t in _mounts(hub) if s == volume}
    assert len(hub_dirs) == 1
    out = [c.words for c in _compose_block() if "broker-auth" in c.text]
    assert out, "deploy/README.md never runs broker-auth"
    assert out[0][out[0].index("--out") + 1].rstrip("/") in hub_dirs


# -- Grafana --------------------------------------------------------------------------------


def _datasource() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "grafana/datasource.yaml").read_text())
    (source,) = data["datasources"]
    return dict(source)


def _dashboards() -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text()) for p in sorted((DEPLOY / "grafana/dashboards").glob("*.json"))
    ]


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["query"]) for p in dashboard["panels"] for t in p["targets"]]


def test_grafana_is_provisioned_with_the_read_only_user_and_the_dashboards() -> None:
    """Grafana's datasource points at the InfluxDB service's database with its read-only
    user and the same password variable; the dashboard provider reads the mounted
    dashboards, whose panels use that datasource and only the measurements the hub
    writes, and never show a twin id."""
    compose = _compose()
    grafana, influx = compose["services"]["grafana"], compose["services"]["influxdb"]
    source = _datasource()
    assert urllib.parse.urlparse(source["url"]).hostname == "influxdb"
    assert source["database"] == influx["environment"]["INFLUXDB_DB"]
    assert source["user"] == influx["environment"]["INFLUXDB_READ_USER"]
    variable = source["secureJsonData"]["password"].lstrip("$").strip("{}")
    assert _VAR.match(grafana["environment"][variable]).group(1) == _VAR.match(  # type: ignore[union-attr]
        influx["environment"]["INFLUXDB_READ_USER_PASSWORD"]
    ).group(1)  # type: ignore[union-attr]
    mounts = dict(_mounts(grafana))
    provider = yaml.safe_load((DEPLOY / "grafana/dashboards.yaml").read_text())["providers"]
    assert [p["options"]["path"] for p in provider] == [mounts["./grafana/dashboards"]]
    assert mounts["./grafana/datasource.yaml"].startswith("/etc/grafana/provisioning/datasources/")
    assert mounts["./grafana/dashboards.yaml"].startswith("/etc/grafana/provisioning/dashboards/")
    dashboards = _dashboards()
    assert dashboards
    known = {"device", *TWIN_MEASUREMENTS}
    for dashboard in dashboards:
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for title, query in _queries(dashboard):
            measurements = set(re.findall(r'FROM "([^"]+)"', query))
            assert measurements <= known, (title, measurements)
            assert not re.search(r'"twin"\s*(,|$)|GROUP BY[^;]*"twin"', query), title


# -- the image ----------------------------------------------------------------------------


def test_dockerfile_copies_what_the_package_needs(tmp_path: Path) -> None:
    """A wheel built from exactly what the Dockerfile copies holds every package the
    project declares, their type markers and the shipped models; the image creates the
    state directories compose mounts volumes on, and runs the hubs' command."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    context = tmp_path / "context"
    context.mkdir()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for source in sources:
                src = REPO / source
                if src.is_dir():
                    shutil.copytree(
                        src, context / source, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(src, context / source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path / "out"),
            str(context),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "out").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    for package in (p.rstrip("*") for p in include):
        assert f"{package}/__init__.py" in names, package
    for path in REPO.glob("*/py.typed"):
        assert f"{path.parent.name}/py.typed" in names
    for model in (REPO / "edge_agent/models").glob("*.onnx"):
        assert f"edge_agent/models/{model.name}" in names
    hubs = _hubs(_compose())
    for service in hubs.values():
        for _source, target in _mounts(service):
            if not target.startswith("/etc/"):
                assert f" {target}" in dockerfile, f"the image does not create {target}"
    cmd = json.loads(re.search(r"^CMD (.*)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert all(s["command"] == cmd for s in hubs.values())


# -- the walk-through, as local processes --------------------------------------------------

_DOCKER = re.compile(
    r"docker compose (?:run --rm --no-deps|exec -T) (?P<service>[\w-]+) twinsync\b"
)
_DOCKER_CP = re.compile(r"docker compose cp (?P<service>[\w-]+):(?P<path>\S+)")


class ComposeLocal:
    """The compose services as local processes, and the translation of the README's
    ``docker compose`` commands into commands that reach them."""

    def __init__(self, tmp: Path, workdir: Path, dotenv: dict[str, str]) -> None:
        self.tmp, self.workdir, self.dotenv = tmp, workdir, dotenv
        self.compose = yaml.safe_load((workdir / "compose.yaml").read_text())
        self.services: dict[str, dict[str, Any]] = self.compose["services"]
        self.twinsync = str(Path(sys.executable).with_name("twinsync"))
        #: (service, container port) -> loopback port
        self.ports: dict[tuple[str, int], int] = {
            ("mosquitto", 1883): free_port(),
            ("mosquitto", 8883): free_port(),
        }
        for name in _hubs(self.compose):
            self.ports[(name, 8080)] = free_port()
        #: published host port -> loopback port
        self.published = {}
        for name, service in self.services.items():
            for mapping in service.get("ports", []):
                host, container = (int(p) for p in mapping.split(":"))
                if (name, container) in self.ports:
                    self.published[host] = self.ports[(name, container)]
        self.influxd = Influxd(tmp / "influxd")
        self.ports[("influxdb", 8086)] = self.influxd.http_port
        self.postgres = Postgres(tmp / "postgres")
        self.ports[("postgres", 5432)] = self.postgres.port
        self.processes: list[subprocess.Popen[bytes]] = []

    def host_path(self, service: str, path: str) -> str:
        """Where a container path of ``service`` lies here (its mounts, longest first)."""
        for source, target in sorted(_mounts(self.services[service]), key=lambda m: -len(m[1])):
            if path == target or path.startswith(target + "/"):
                if source.startswith("."):
                    base = self.workdir / source
                else:
                    base = self.tmp / "volumes" / source
                    base.mkdir(parents=True, exist_ok=True)
                return str(base) + path[len(target) :]
        raise AssertionError(f"{service} has no mount for {path}")

    def env(self, service: str) -> dict[str, str]:
        out = {}
        for key, raw in _service_env(self.services[service], self.dotenv).items():
            value = raw
            if raw in self.services:
                value = "127.0.0.1"
            elif raw.startswith("/"):
                value = self.host_path(service, raw)
            elif match := re.match(r"https?://([\w-]+):(\d+)", raw):
                port = self.ports[(match.group(1), int(match.group(2)))]
                value = raw.replace(match.group(0), f"http://127.0.0.1:{port}")
            elif match := re.match(r"postgresql://([\w-]+)@([\w-]+):(\d+)", raw):
                port = self.ports[(match.group(2), int(match.group(3)))]
                value = raw.replace(
                    match.group(0), f"postgresql://{match.group(1)}@127.0.0.1:{port}"
                )
            out[key] = value
        hub = _service_env(self.services[service], self.dotenv)
        if "TWINSYNC_HUB__MQTT__PORT" in out:
            port = int(hub["TWINSYNC_HUB__MQTT__PORT"])
            out["TWINSYNC_HUB__MQTT__PORT"] = str(
                self.ports[(hub["TWINSYNC_HUB__MQTT__HOST"], port)]
            )
        if "TWINSYNC_HUB__API__PORT" in out:
            out["TWINSYNC_HUB__API__PORT"] = str(
                self.ports[(service, int(hub["TWINSYNC_HUB__API__PORT"]))]
            )
            out["TWINSYNC_HUB__API__HOST"] = "127.0.0.1"  # not every interface of a test box
        return out

    def translate(self, text: str) -> str:
        """A README command as it runs here (see the module docstring)."""
        if text.strip() in ("docker compose build", "docker compose up -d"):
            return "true"  # done by the test: the image is this checkout; see up()
        if text.strip() == "docker compose up -d --wait postgres":
            self._postgres()
            return "true"
        match = _DOCKER.search(text)
        if match:
            service = match.group("service")
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env(service).items())
            text = text.replace(match.group(0), f"env {env} {self.twinsync}")
            for _source, target in sorted(
                _mounts(self.services[service]), key=lambda m: -len(m[1])
            ):
                text = re.sub(
                    rf"(?<=[\s=]){re.escape(target)}(?=[/\s]|$)",
                    lambda m, t=target: self.host_path(service, t),
                    text,
                )
        cp = _DOCKER_CP.search(text)
        if cp:
            text = text.replace(
                cp.group(0), f"cp -r {self.host_path(cp.group('service'), cp.group('path'))}"
            )
        text = text.replace("mqtt.example.com", "127.0.0.1")
        text = text.replace("--mqtt-port 8883", f"--mqtt-port {self.ports[('mosquitto', 8883)]}")
        for host, local in self.published.items():
            text = text.replace(f"127.0.0.1:{host}/", f"127.0.0.1:{local}/")
        return text

    def up(self) -> None:
        """``docker compose up -d``: broker, database with its users, the hubs."""
        self._broker()
        self._influxdb()
        for name, service in _hubs(self.compose).items():
            log = (self.tmp / f"{name}.log").open("w")
            command = [self.twinsync, *service["command"][1:]]
            command = [self.host_path(name, w) if w.startswith("/etc/") else w for w in command]
            self.processes.append(
                subprocess.Popen(
                    command, env={**_clean_env(), **self.env(name)}, stdout=log, stderr=log
                )
            )
        for name in _hubs(self.compose):
            _wait_http(
                f"http://127.0.0.1:{self.ports[(name, 8080)]}/readyz", self.tmp / f"{name}.log"
            )

    def _broker(self) -> None:
        service = self.services["mosquitto"]
        conf = self.compose["configs"]["mosquitto-conf"]["content"]
        conf = conf.replace("/usr/lib/mosquitto_dynamic_security.so", Mosquitto.dynsec_plugin())
        for _source, target in _mounts(service):
            conf = conf.replace(f" {target}/", f" {self.host_path('mosquitto', target)}/")
        for port in (1883, 8883):
            conf = re.sub(
                rf"^listener {port}$",
                f"listener {self.ports[('mosquitto', port)]} 127.0.0.1",
                conf,
                flags=re.M,
            )
        if os.geteuid() == 0:
            conf += "user root\n"  # the image's entrypoint gives /mosquitto to its user
        path = self.tmp / "mosquitto.conf"
        path.write_text(conf)
        log = (self.tmp / "mosquitto.log").open("w")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.processes.append(subprocess.Popen([binary, "-c", str(path)], stdout=log, stderr=log))
        try:
            for port in (1883, 8883):
                wait_port(self.ports[("mosquitto", port)])
        except Exception:
            raise AssertionError((self.tmp / "mosquitto.log").read_text()) from None

    def _influxdb(self) -> None:
        """InfluxDB with the users deploy/README.md lists (what the image's init makes
        from compose.yaml's environment: the same names, the .env passwords)."""
        self.influxd.start()
        env = _service_env(self.services["influxdb"], self.dotenv)
        influx_setup(
            self.influxd,
            {
                env["INFLUXDB_USER"]: env["INFLUXDB_USER_PASSWORD"],
                env["INFLUXDB_READ_USER"]: env["INFLUXDB_READ_USER_PASSWORD"],
            },
        )
        statements = [b.code for b in blocks(DEPLOY_README) if b.lang == "sql"]
        assert f'CREATE DATABASE "{env["INFLUXDB_DB"]}"' in statements[0]

    def _postgres(self) -> None:
        """PostgreSQL with what the postgres service's image makes on its first start:
        its user, with the .env password, owning its database."""
        from psycopg import sql

        self.postgres.start()
        env = _service_env(self.services["postgres"], self.dotenv)
        user, database = sql.Identifier(env["POSTGRES_USER"]), sql.Identifier(env["POSTGRES_DB"])
        with self.postgres.connect() as conn:
            password = sql.Literal(env["POSTGRES_PASSWORD"])
            conn.execute(sql.SQL("CREATE USER {} WITH PASSWORD {}").format(user, password))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, user))

    def grafana_query(self, query: str) -> dict[str, Any]:
        source = _datasource()
        env = _service_env(self.services["grafana"], self.dotenv)
        password = env[source["secureJsonData"]["password"].lstrip("$").strip("{}")]
        params = {"db": source["database"], "q": query, "u": source["user"], "p": password}
        url = f"{self.influxd.url}/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            result: dict[str, Any] = json.loads(answer.read())["results"][0]
        return result

    def close(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.influxd.stop()
        self.postgres.remove()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TWINSYNC_")}


def _wait_http(url: str, log: Path, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[tuple[ComposeLocal, Shell]]:
    copy = checkout(tmp_path / "checkout")
    # The operator's broker certificate (deploy/README.md): a throwaway CA's, for 127.0.0.1.
    pki = make_pki(copy / "deploy/mosquitto/certs")
    for path, name in ((pki.cert, "server.crt"), (pki.key, "server.key"), (pki.ca, "ca.crt")):
        if path.name != name:
            path.rename(path.with_name(name))
    shell = Shell("compose", copy, tmp_path)
    compose = ComposeLocal(tmp_path, copy / "deploy", {})
    try:
        yield compose, shell
    finally:
        shell.close()
        compose.close()


def test_compose_walkthrough_runs_as_local_processes(layout: tuple[ComposeLocal, Shell]) -> None:
    """deploy/README.md's Compose commands, run against the compose layout as local
    processes, bring up a broker that admits the provisioned device over TLS and two hubs
    that share its deltas (each point stored once, both APIs serve it); Grafana's user
    can read every dashboard panel's data and cannot write."""
    compose, shell = layout
    outputs = []
    for command in _compose_block():
        text = compose.translate(command.text)
        status, output, _ = shell.run(text)
        if "> .env" in command.text:
            env_file = (compose.workdir / ".env").read_text().splitlines()
            compose.dotenv = dict(line.split("=", 1) for line in env_file)
        assert status == 0, f"{command.file}:{command.line}: {text}\n{output}"
        outputs.append(output)
        if command.text.strip() == "docker compose up -d":
            compose.up()
    devices = json.loads(outputs[-1])["devices"]
    assert [d["device"] for d in devices] == ["coffee-0001"]

    # The device (deploy/README.md, systemd, "On each device"): its bundle with TLS on.
    bundle = compose.workdir / "coffee-0001"
    set_toml(
        bundle / "agent.toml",
        "mqtt",
        {"tls": True, "ca_file": str(bundle.parent / "mosquitto/certs/ca.crt")},
    )
    agent_log = (compose.tmp / "agent.log").open("w")
    agent = subprocess.Popen(
        [compose.twinsync, "edge", "run", "--config", str(bundle / "agent.toml")],
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=agent_log,
        text=True,
    )
    compose.processes.append(agent)  # type: ignore[arg-type]
    assert agent.stdout is not None
    listening = json.loads(agent.stdout.readline())
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(listening["ingest_socket"])
        signal_in = {
            "seq": 1,
            "ts": int(time.time() * 1000),
            "subject": "ann@example.com",
            "name": "coffee.brew",
            "value": 3,
        }
        sock.sendall((json.dumps(signal_in) + "\n").encode())
        assert json.loads(sock.makefile().readline())["status"] == "accepted"
    twin = pseudonymize((bundle / "brand.key").read_bytes(), 1, "ann@example.com")
    key = shell.run('printf %s "$KEY"')[1]
    for name in _hubs(compose.compose):
        url = f"http://127.0.0.1:{compose.ports[(name, 8080)]}/v1/brands/acme/twins/{twin}"
        deadline = time.monotonic() + 60
        while True:
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    fields = json.loads(answer.read())["fields"]
                    break
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.3)
        assert fields["coffee.brews_total"]["value"] == 3, name
    stored = compose.influxd.query('SELECT count("coffee.brews_total") FROM "twin"', "twinsync")
    assert stored[0]["series"][0]["values"][0][1] == 1, "stored exactly once"

    # Grafana: every panel's query returns data as its read-only user...
    profile = compose.influxd.query('SELECT count(*) FROM "twin_profile"', "twinsync")[0]
    for dashboard in _dashboards():
        for title, query in _queries(dashboard):
            q = query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "1m")
            q = q.replace("$brand", "acme")
            result = compose.grafana_query(q)
            assert "error" not in result, (title, result)
            if '"twin_profile"' in q and not profile.get("series"):
                continue  # no profile field was computed from one signal
            assert result.get("series"), (title, q)
    # ... and nothing else.
    source = _datasource()
    env = _service_env(compose.services["grafana"], compose.dotenv)
    password = env[source["secureJsonData"]["password"].lstrip("$").strip("{}")]
    params = urllib.parse.urlencode({"db": "twinsync", "u": source["user"], "p": password})
    request = urllib.request.Request(
        f"{compose.influxd.url}/write?{params}",
        data=b"device,brand=acme,device=x online=true",
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
