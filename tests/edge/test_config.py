"""Config loading: TOML, env overrides, overrides dict, relative paths, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent import EdgeAgentError, load_config

from .conftest import Bundle


def test_loads_bundle_and_resolves_paths(bundle: Bundle) -> None:
    cfg = load_config(bundle.toml, environ={})
    assert cfg.device.brand == bundle.brand
    assert cfg.outbox.path == bundle.root.resolve() / "state/outbox.sqlite"
    assert cfg.device.key_file == bundle.root.resolve() / "device.key"
    assert cfg.mqtt.port == 1883
    assert cfg.sync.flush_interval_ms == 200
    keys = cfg.keys()
    assert keys.device.kid == bundle.device_key.kid
    assert list(keys.hub) == [bundle.hub_key.kid]


def test_env_then_overrides(bundle: Bundle) -> None:
    env = {"TWINSYNC_EDGE__MQTT__PORT": "1999", "TWINSYNC_EDGE__MQTT__HOST": "broker.local"}
    cfg = load_config(bundle.toml, {"mqtt": {"port": 1884}}, environ=env)
    assert cfg.mqtt.port == 1884
    assert cfg.mqtt.host == "broker.local"


def test_env_from_process(bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINSYNC_EDGE__SYNC__INFLIGHT", "3")
    assert load_config(bundle.toml).sync.inflight == 3


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"mqtt": {"port": 0}}, "mqtt.port"),
        ({"mqtt": {"bogus": 1}}, "mqtt.bogus"),
        ({"device": {"product": "toaster"}}, "unknown product"),
        ({"device": {"brand": "Bad Brand!"}}, "device.brand"),
        ({"sync": {"inflight": 0}}, "sync.inflight"),
        ({"nosuch": {}}, "nosuch"),
        ({"device": {"timezone": "Mars/Olympus_Mons"}}, "device.timezone"),
        ({"device": {"timezone": "+15:00"}}, "device.timezone"),
        ({"device": {"timezone": "../../etc/passwd"}}, "device.timezone"),
    ],
)
def test_invalid_values_are_named(bundle: Bundle, overrides: dict, needle: str) -> None:
    with pytest.raises(EdgeAgentError, match=needle.replace(".", r"\.")):
        load_config(bundle.toml, overrides, environ={})


def test_the_households_time_zone(bundle: Bundle) -> None:
    """UTC unless set; an offset or an IANA name; the environment can set it too."""
    assert load_config(bundle.toml, environ={}).device.timezone == "UTC"
    zone = {"device": {"timezone": "Europe/Berlin"}}
    assert load_config(bundle.toml, zone, environ={}).device.timezone == "Europe/Berlin"
    env = {"TWINSYNC_EDGE__DEVICE__TIMEZONE": "+05:30"}
    assert load_config(bundle.toml, environ=env).device.timezone == "+05:30"
    with pytest.raises(EdgeAgentError, match="IANA name like 'Europe/Berlin'"):
        load_config(bundle.toml, {"device": {"timezone": "Nowhere/Land"}}, environ={})


def test_missing_and_broken_files(bundle: Bundle, tmp_path: Path) -> None:
    with pytest.raises(EdgeAgentError, match="cannot read agent config"):
        load_config(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[device\n")
    with pytest.raises(EdgeAgentError, match="not valid TOML"):
        load_config(bad, environ={})
    (bundle.root / "brand.key").write_bytes(b"short")
    with pytest.raises(EdgeAgentError, match="shorter than"):
        load_config(bundle.toml, environ={}).keys()
    (bundle.root / "hub.pub").write_text("zz")
    with pytest.raises(EdgeAgentError, match="bad key file"):
        load_config(bundle.toml, environ={}).keys()


def test_cli_check_config_hides_secrets(
    bundle: Bundle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.cli import main

    monkeypatch.setenv("TWINSYNC_EDGE__MQTT__PASSWORD", "hunter2")
    assert main(["check-config", "--config", str(bundle.toml)]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert bundle.device_key.kid in out
    assert bundle.brand_key.hex() not in out
    monkeypatch.setenv("TWINSYNC_EDGE__MQTT__PORT", "0")
    assert main(["check-config", "--config", str(bundle.toml)]) == 2
    assert "mqtt.port" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "env_name"),
    [
        ("[mqtt\n", ""),  # not TOML
        ('[mqtt]\nport = "many"\n', ""),  # a bad value
        ("[mqtt]\nbogus = 1\n", ""),  # an unknown key
        ("", "MQTT"),  # a badly shaped variable name
    ],
)
def test_agent_and_hub_load_settings_alike(tmp_path: Path, text: str, env_name: str) -> None:
    """Both daemons load with one function (protocol.load_settings): the same mistake
    gets the same message, naming the daemon's own file, prefix and section."""
    from cloud_hub import CloudHubError, load_hub_config

    (tmp_path / "x.toml").write_text(text)
    device = {"device": {"brand": "acme", "id": "d-1", "product": "coffee"}}  # required
    messages = []
    for load, overrides, error, prefix, what in (
        (load_config, device, EdgeAgentError, "TWINSYNC_EDGE__", "agent config"),
        (load_hub_config, None, CloudHubError, "TWINSYNC_HUB__", "hub config"),
    ):
        env = {f"{prefix}{env_name}": "1"} if env_name else {}
        with pytest.raises(error) as info:
            load(tmp_path / "x.toml", overrides, environ=env)
        messages.append(str(info.value).replace(what, "<what>").replace(prefix, "<prefix>"))
    assert messages[0] == messages[1]


def test_both_rebase_relative_paths_on_the_files_directory(tmp_path: Path) -> None:
    """A relative path in either daemon's file lies next to the file, wherever it runs."""
    from cloud_hub import load_hub_config

    (tmp_path / "hub.toml").write_text('[mqtt]\npassword_file = "secrets/p"\n')
    hub = load_hub_config(tmp_path / "hub.toml", environ={})
    assert hub.mqtt.password_file == tmp_path.resolve() / "secrets/p"
    assert hub.keys.secrets_dir == tmp_path.resolve() / "secrets"
    assert hub.api.tls_cert_file is None
