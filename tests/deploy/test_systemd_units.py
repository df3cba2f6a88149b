"""The systemd units in deploy/systemd are valid units, and what they start can work.

``systemd-analyze verify`` checks each unit as systemd would load it (directives, values,
specifiers, that ExecStart's binary exists). The units name /opt/twinsync/bin/twinsync,
which exists only on a deployed host, so the test verifies a copy whose ExecStart path is
rewritten to this venv's ``twinsync`` (nothing else is changed). verify also runs on a
deliberately broken unit, to show this systemd-analyze reports what the test looks for.

The rest runs what the units configure through the real config loaders: the environment
each hub instance gets (``%i`` expanded), on top of the hub.toml that deploy/README.md's
commands make, must load, with a valid and distinct API port and broker identity per
instance; the agent's writable paths must lie in the unit's state and runtime directories
(ProtectSystem=strict makes everything else read-only).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _markdown import REPO, commands, section_blocks

from cloud_hub import load_hub_config, provision_device
from cloud_hub.registry import ensure_hub_password
from edge_agent import load_config

UNITS = REPO / "deploy" / "systemd"
HUB_UNIT = UNITS / "twinsync-hub@.service"
EDGE_UNIT = UNITS / "twinsync-edge.service"
#: how deploy/README.md names hub instances (the instance is the API port)
HUB_INSTANCES = [str(port) for port in range(8081, 8093)]


def _twinsync() -> Path:
    script = Path(sys.executable).with_name("twinsync")
    assert script.exists(), f"{script} missing: install the project (pip install -e .)"
    return script


def _directives(unit: Path, section: str = "Service") -> list[tuple[str, str]]:
    """``(key, value)`` of one section, in order (systemd allows repeated keys)."""
    out, current = [], ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def _expand(value: str, instance: str, state_root: str = "/var/lib") -> str:
    """The specifiers these units use, as systemd expands them for a system service."""
    table = {"i": instance, "I": instance, "S": state_root, "%": "%"}
    return re.sub(r"%(.)", lambda m: table[m.group(1)], value)


def _environment(unit: Path, instance: str = "", state_root: str = "/var/lib") -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in _directives(unit):
        if key == "Environment":
            name, _, val = _expand(value, instance, state_root).partition("=")
            env[name] = val
    return env


def _value(unit: Path, key: str) -> str:
    values = [v for k, v in _directives(unit) if k == key]
    assert values, f"{unit.name} has no {key}="
    return values[-1]


def _verify(workdir: Path, *units: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: 'make system' installs it (package systemd)"
    return subprocess.run(
        [analyze, "verify", *(f"./{u}" for u in units)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_with_local_binary(unit: Path, workdir: Path) -> Path:
    text = unit.read_text()
    assert "ExecStart=/opt/twinsync/bin/twinsync " in text, unit.name
    copy = workdir / unit.name
    copy.write_text(
        text.replace("ExecStart=/opt/twinsync/bin/twinsync ", f"ExecStart={_twinsync()} ")
    )
    return copy


def test_systemd_analyze_verify_accepts_both_units(tmp_path: Path) -> None:
    """systemd-analyze verify loads the edge unit and hub instances (one past @9) with no
    error and no warning."""
    for unit in (HUB_UNIT, EDGE_UNIT):
        _copy_with_local_binary(unit, tmp_path)
    done = _verify(
        tmp_path, "twinsync-edge.service", "twinsync-hub@8081.service", "twinsync-hub@8092.service"
    )
    assert done.returncode == 0, done.stderr
    # Unknown directives and bad values are only warnings for systemd (exit 0): fail on them.
    assert done.stderr.strip() == "", done.stderr


def test_systemd_analyze_verify_reports_what_this_test_checks(tmp_path: Path) -> None:
    """The check above can fail: verify reports an unknown directive, a bad value and a
    missing binary on this machine."""
    unit = _copy_with_local_binary(EDGE_UNIT, tmp_path)
    text = unit.read_text().replace("[Service]\n", "[Service]\nLimitNOFILE=lots\nFrobnicate=1\n")
    (tmp_path / "broken.service").write_text(text.replace(str(_twinsync()), "/nonexistent/ts"))
    done = _verify(tmp_path, "broken.service")
    assert "Failed to parse resource value, ignoring: lots" in done.stderr, done.stderr
    assert "Unknown key 'Frobnicate'" in done.stderr, done.stderr
    assert "/nonexistent/ts" in done.stderr, done.stderr
    assert done.returncode != 0


def _hub_toml_from_deploy_readme(etc: Path) -> Path:
    """Run deploy/README.md's command that writes /etc/twinsync/hub.toml (with /etc/twinsync
    a temporary directory) and return the file."""
    made = [
        c
        for b in section_blocks(REPO / "deploy/README.md", "systemd")
        for c in commands(b)
        if "/etc/twinsync/hub.toml" in c.text and ">" in c.text
    ]
    assert len(made) == 1, [str(c) for c in made]
    script = made[0].text.replace("/etc/twinsync", str(etc))
    etc.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", "-euc", script], cwd=REPO, check=True, timeout=60)
    return etc / "hub.toml"


def test_every_hub_instance_gets_a_valid_distinct_port_and_broker_identity(
    tmp_path: Path,
) -> None:
    """Twelve instances (twinsync-hub@8081 ... @8092, as deploy/README.md starts them) load
    the hub config with the unit's environment: each API port is the instance's and valid,
    and no two share a port, MQTT client id or broker user."""
    toml = _hub_toml_from_deploy_readme(tmp_path / "etc/twinsync")
    seen_ports, seen_ids, seen_users = set(), set(), set()
    for instance in HUB_INSTANCES:
        env = _environment(HUB_UNIT, instance)
        config = load_hub_config(toml, environ=env)  # ConfigError on an invalid port
        assert config.api.port == int(instance)
        seen_ports.add(config.api.port)
        seen_ids.add(config.mqtt.client_id)
        # The broker binds each hub account to one client id (cloud_hub/registry/_broker_auth.py).
        assert config.mqtt.username == config.mqtt.client_id
        seen_users.add(config.mqtt.username)
        assert config.mqtt.shared_group, "instances must share one subscription group"
    n = len(HUB_INSTANCES)
    assert len(seen_ports) == len(seen_ids) == len(seen_users) == n


def test_deploy_readme_makes_a_broker_account_for_each_instance_it_starts() -> None:
    """The instances deploy/README.md enables are the ones its 'broker-auth --hub-ids'
    makes accounts for (an instance without one cannot log in to the broker)."""
    words = [
        c.words for b in section_blocks(REPO / "deploy/README.md", "systemd") for c in commands(b)
    ]
    (auth,) = [w for w in words if "broker-auth" in w and "--hub-ids" in w]
    (enable,) = [
        w
        for w in words
        if w[:3] == ["systemctl", "enable", "--now"] and any("twinsync-hub@" in x for x in w)
    ]
    started = [w.removeprefix("twinsync-hub@") for w in enable if w.startswith("twinsync-hub@")]
    client_ids = [_environment(HUB_UNIT, i)["TWINSYNC_HUB__MQTT__CLIENT_ID"] for i in started]
    assert started
    assert sorted(auth[auth.index("--hub-ids") + 1].split(",")) == sorted(client_ids)


def test_hub_state_lies_in_the_units_writable_state_directory(tmp_path: Path) -> None:
    """The hub.toml of deploy/README.md puts the registry, secrets and models into the
    unit's StateDirectory (the only writable place under ProtectSystem=strict), and the
    unit reads the hub's broker password where 'broker-auth' writes it."""
    toml = _hub_toml_from_deploy_readme(tmp_path / "etc/twinsync")
    state = Path("/var/lib") / _value(HUB_UNIT, "StateDirectory")
    assert _value(HUB_UNIT, "ProtectSystem") == "strict"
    config = load_hub_config(toml, environ=_environment(HUB_UNIT, "8081"))
    written = [config.registry.path, config.keys.secrets_dir, config.models.dir]
    for path in written:
        assert path.is_relative_to(state), path
    # The hub's broker password: the file 'broker-auth' makes in the secrets directory.
    made = ensure_hub_password(tmp_path / "secrets")
    assert config.mqtt.password_file == config.keys.secrets_dir / made.name
    assert int(_value(HUB_UNIT, "LimitNOFILE")) >= 65536


def test_edge_agent_writes_only_into_the_units_state_and_runtime_dirs(tmp_path: Path) -> None:
    """A provisioned bundle installed in /etc/twinsync (read-only under the unit) gets its
    outbox and models in the StateDirectory and its ingest socket in the RuntimeDirectory,
    with the unit's environment."""
    etc = tmp_path / "etc/twinsync"
    provision_device(
        tmp_path / "registry.sqlite", tmp_path / "secrets", "acme", "c-1", "coffee", etc
    )
    state = Path("/var/lib") / _value(EDGE_UNIT, "StateDirectory")
    runtime = Path("/run") / _value(EDGE_UNIT, "RuntimeDirectory")
    env = _environment(EDGE_UNIT, state_root="/var/lib")
    env["RUNTIME_DIRECTORY"] = str(runtime)  # what systemd sets for RuntimeDirectory=
    config = load_config(etc / "agent.toml", environ=env)
    assert _value(EDGE_UNIT, "ProtectSystem") == "strict"
    assert config.outbox.path.is_relative_to(state), config.outbox.path
    assert config.models.dir.is_relative_to(state), config.models.dir
    if config.ingest.unix_socket:
        assert Path(config.ingest.unix_socket).is_relative_to(runtime)
    assert int(_value(EDGE_UNIT, "LimitNOFILE")) > 0


@pytest.mark.parametrize("unit", [HUB_UNIT, EDGE_UNIT], ids=lambda u: u.name)
def test_units_run_the_documented_command(unit: Path) -> None:
    """ExecStart runs 'twinsync <hub|edge> run --config /etc/twinsync/...', the command
    the docs describe, from the install path deploy/README.md creates."""
    words = _value(unit, "ExecStart").split()
    assert words[0] == "/opt/twinsync/bin/twinsync"
    assert words[1:3] in (["hub", "run"], ["edge", "run"])
    assert words[3] == "--config"
    assert words[4].startswith("/etc/twinsync/")
