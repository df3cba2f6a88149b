"""Operator mistakes get one line naming what to change, exit code 2 and no traceback.

Every test runs the real console command (``twinsync ...``) in a subprocess, as an
operator or a supervisor would, against the session's real mosquitto where one is needed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import one_line_error, run_twinsync, twinsync_command

from cloud_hub import provision_device
from twinsync.services import LocalServices

_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING) ")


@pytest.fixture
def hub_toml(tmp_path: Path, services: LocalServices, unique: str) -> Path:
    toml = tmp_path / "hub.toml"
    toml.write_text(
        f'[mqtt]\nport = {services.mosquitto.port}\nclient_id = "h{unique}"\n'
        f'shared_group = "g{unique}"\nbrands = ["b{unique}"]\n'
        f'[influx]\nurl = "{services.influxd.url}"\ndatabase = "db{unique}"\n'
        '[api]\nport = 0\n[registry]\npath = "registry.sqlite"\n[keys]\nsecrets_dir = "secrets"\n'
    )
    return toml


@pytest.fixture
def agent_toml(tmp_path: Path, services: LocalServices, unique: str) -> Path:
    """A provisioned bundle (Unix socket ingest by default) on the real broker."""
    return provision_device(
        tmp_path / "registry.sqlite",
        tmp_path / "secrets",
        f"b{unique}",
        "dev-1",
        "coffee",
        tmp_path / "b",
        mqtt_port=services.mosquitto.port,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another process (this test) is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


_NO_MODELS = {"TWINSYNC_EDGE__MODELS__ENABLED": "false"}  # start-up speed only


@pytest.mark.parametrize("command", ["hub", "edge"])
def test_a_bad_log_level_names_the_accepted_levels(command: str, tmp_path: Path) -> None:
    proc = run_twinsync(command, "run", "--config", str(tmp_path / "x.toml"), "--log-level", "LOUD")
    line = one_line_error(proc)
    assert line.startswith(f"twinsync {command} run: argument --log-level: 'LOUD'")
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in line


def test_the_hub_api_port_in_use_names_the_setting(hub_toml: Path, busy_port: int) -> None:
    proc = run_twinsync(
        "hub", "run", "--config", str(hub_toml), env={"TWINSYNC_HUB__API__PORT": str(busy_port)}
    )
    assert one_line_error(proc) == (
        f"twinsync hub: api.port {busy_port} is in use (address already in use): "
        "set api.port or TWINSYNC_HUB__API__PORT"
    )


def test_an_unbindable_api_host_names_the_setting(hub_toml: Path) -> None:
    proc = run_twinsync(
        "hub", "run", "--config", str(hub_toml), env={"TWINSYNC_HUB__API__HOST": "192.0.2.1"}
    )
    line = one_line_error(proc)
    assert line.startswith("twinsync hub: api.host 192.0.2.1 is not an address of this machine")
    assert line.endswith("set api.host or TWINSYNC_HUB__API__HOST")


def test_the_agent_ingest_port_in_use_names_the_setting(agent_toml: Path, busy_port: int) -> None:
    env = {**_NO_MODELS, "TWINSYNC_EDGE__INGEST__PORT": str(busy_port)}
    proc = run_twinsync("edge", "run", "--config", str(agent_toml), env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    # The daemon's own start-up log records may come first; the error is the one line
    # that is not a log record, and it is the last.
    errors = [line for line in proc.stderr.splitlines() if not _LOG_RECORD.match(line)]
    assert errors == [
        f"twinsync edge: ingest.port {busy_port} is in use (address already in use): "
        "set ingest.port or TWINSYNC_EDGE__INGEST__PORT"
    ]
    assert proc.stderr.splitlines()[-1] == errors[0]


def test_a_unix_socket_path_too_long_names_the_setting(agent_toml: Path) -> None:
    too_long = "/tmp/" + "s" * 120 + ".sock"
    env = {**_NO_MODELS, "TWINSYNC_EDGE__INGEST__UNIX_SOCKET": too_long}
    proc = run_twinsync("edge", "run", "--config", str(agent_toml), "--log-level", "ERROR", env=env)
    line = one_line_error(proc)
    assert line.startswith(f"twinsync edge: ingest.unix_socket {too_long} is longer than the 107")


def test_a_second_agent_on_a_bundle_is_refused_not_handed_the_socket(agent_toml: Path) -> None:
    first = subprocess.Popen(
        [*twinsync_command(), "edge", "run", "--config", str(agent_toml)],
        env={**os.environ, **_NO_MODELS},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert first.stdout is not None
        socket_path = json.loads(first.stdout.readline())["ingest_socket"]
        proc = run_twinsync(
            "edge", "run", "--config", str(agent_toml), "--log-level", "ERROR", env=_NO_MODELS
        )
        assert one_line_error(proc) == (
            f"twinsync edge: ingest.unix_socket {socket_path} is in use (another process "
            "listens on it): set ingest.unix_socket or TWINSYNC_EDGE__INGEST__UNIX_SOCKET"
        )
        # The first agent still owns its socket.
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(socket_path)
    finally:
        first.terminate()
        assert first.wait(20) == 0


@pytest.mark.parametrize(
    ("toml", "command", "setting"),
    [
        ('[api]\nport = "x"\n', "hub", "api.port"),
        ("[limits]\nreplay_window = 1\n", "hub", "limits.replay_window"),
        ("[api]\nport = 8080\nbogus = 1\n", "hub", "api.bogus"),
        ('[device]\nbrand = "acme"\nid = "d"\nproduct = "toaster"\n', "edge", "device.product"),
        (
            '[device]\nbrand = "acme"\nid = "d"\nproduct = "tv"\n[ingest]\nmax_line_bytes = 1\n',
            "edge",
            "ingest.max_line_bytes",
        ),
        ("[api\nport = 1\n", "hub", "not valid TOML"),
    ],
)
def test_a_bad_config_value_names_its_dotted_setting(
    tmp_path: Path, toml: str, command: str, setting: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    for sub in ("check-config", "run"):
        line = one_line_error(run_twinsync(command, sub, "--config", str(path)))
        assert line.startswith(f"twinsync {command}: ")
        assert setting in line


def test_a_bad_environment_value_names_the_setting(hub_toml: Path) -> None:
    proc = run_twinsync(
        "hub", "check-config", "--config", str(hub_toml), env={"TWINSYNC_HUB__API__PORT": "99999"}
    )
    assert "api.port: Input should be less than or equal to 65535" in one_line_error(proc)


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (
            ["hub", "provision", "--brand", "acme", "--device", "d", "--product", "toaster"],
            "twinsync hub provision: ",
        ),
        (["hub", "device", "forget"], "twinsync hub device: "),
        (["edge"], "twinsync edge: "),
        (["sim", "stats", "--devices", "many"], "twinsync sim stats: argument --devices"),
        (["demo", "--api-port", "http"], "twinsync demo: argument --api-port"),
        (
            ["nope"],
            "twinsync: unknown command 'nope'; use one of edge, hub, sim, train, demo, bench",
        ),
    ],
)
def test_usage_errors_are_one_line(args: list[str], start: str) -> None:
    assert one_line_error(run_twinsync(*args)).startswith(start)


def test_sim_input_errors_exit_2_naming_the_argument(tmp_path: Path) -> None:
    missing = tmp_path / "missing.key"
    proc = run_twinsync(
        "sim", "generate", "--out", str(tmp_path / "o"), "--brand-key", str(missing)
    )
    assert one_line_error(proc).startswith(f"twinsync sim: --brand-key {missing} cannot be read")
    proc = run_twinsync("sim", "stats", "--brand", "Bad Brand")
    assert one_line_error(proc) == (
        "twinsync sim: invalid brand id 'Bad Brand': must match [a-z][a-z0-9-]{0,31}"
    )


def test_an_unusable_path_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    toml = tmp_path / "hub.toml"
    toml.write_text('[keys]\nsecrets_dir = "file/secrets"\n')
    line = one_line_error(run_twinsync("hub", "keys", "--config", str(toml)))
    assert line.startswith(f"twinsync hub: cannot use {tmp_path / 'file' / 'secrets'}")


def test_the_demo_api_port_in_use_names_the_option(tmp_path: Path, busy_port: int) -> None:
    proc = run_twinsync(
        "demo",
        "--api-port",
        str(busy_port),
        "--devices",
        "1",
        "--days",
        "0.01",
        "--exit",
        "--workdir",
        str(tmp_path / "demo"),
        timeout=300,
    )
    assert one_line_error(proc) == (
        f"twinsync demo: --api-port {busy_port} is in use (address already in use): "
        "pass another --api-port, or 0 for any free port"
    )
