"""Layered settings: file, then environment, then overrides; one clear error per problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from protocol import SettingsError, layer_settings, load_settings, resolve_paths, validate_settings


class _Mqtt(BaseModel):
    host: str = "localhost"
    port: int = 1883


class _Cfg(BaseModel):
    mqtt: _Mqtt = _Mqtt()


def test_environment_overrides_file_and_overrides_win() -> None:
    text = '[mqtt]\nhost = "broker"\nport = 1000\n'
    data = layer_settings(
        text,
        source="x.toml",
        environ={"TS__MQTT__PORT": "2000", "OTHER": "1"},
        prefix="TS__",
        overrides={"mqtt": {"host": "override"}},
    )
    assert data == {"mqtt": {"host": "override", "port": 2000}}


def test_environment_value_is_toml_or_bare_string() -> None:
    data = layer_settings(None, source="-", environ={"TS__MQTT__HOST": "h.example"}, prefix="TS__")
    assert data == {"mqtt": {"host": "h.example"}}


@pytest.mark.parametrize("name", ["TS__MQTT", "TS__A__B__C", "TS____X"])
def test_badly_shaped_environment_name_is_named(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        layer_settings(None, source="-", environ={name: "1"}, prefix="TS__")


def test_invalid_toml_names_the_source() -> None:
    with pytest.raises(SettingsError, match=r"agent\.toml is not valid TOML"):
        layer_settings("[mqtt\n", source="agent.toml", environ={}, prefix="TS__")


def test_validation_lists_every_bad_key() -> None:
    with pytest.raises(SettingsError, match=r"invalid demo config: mqtt\.port: .*integer"):
        validate_settings(_Cfg, {"mqtt": {"port": "many"}}, what="demo config")
    assert validate_settings(_Cfg, {}, what="demo").mqtt.port == 1883


class _Key(BaseModel):
    epoch: int
    key_file: Path


class _Paths(BaseModel):
    file: Path = Path("a.key")
    absolute: Path = Path("/etc/x.key")
    optional: Path | None = None
    files: list[Path] = [Path("hub.pub"), Path("/abs/hub2.pub")]
    previous: list[_Key] = []
    ca_file: str = "ca.pem"  # a string setting is not a path: never rebased


class _WithPaths(BaseModel):
    mqtt: _Mqtt = _Mqtt()
    keys: _Paths = _Paths()


def test_load_settings_rebases_every_relative_path_and_only_paths() -> None:
    """Every path-typed setting, in a section, a list or a nested model, is joined to the
    file's directory; absolute paths, unset ones and strings stay as they are."""
    text = '[keys]\noptional = "o.key"\nprevious = [{epoch = 1, key_file = "old/1.key"}]\n'
    cfg = load_settings(
        _WithPaths,
        text,
        what="demo config",
        source="demo.toml",
        environ={"TS__MQTT__PORT": "1884"},
        prefix="TS__",
        base=Path("/srv/bundle"),
        overrides={"keys": {"absolute": "/etc/y.key"}},
    )
    assert cfg.mqtt.port == 1884
    assert cfg.keys.file == Path("/srv/bundle/a.key")
    assert cfg.keys.absolute == Path("/etc/y.key")
    assert cfg.keys.optional == Path("/srv/bundle/o.key")
    assert cfg.keys.files == [Path("/srv/bundle/hub.pub"), Path("/abs/hub2.pub")]
    assert cfg.keys.previous == [_Key(epoch=1, key_file=Path("/srv/bundle/old/1.key"))]
    assert cfg.keys.ca_file == "ca.pem"
    unset = resolve_paths(_Paths(), Path("/b"))
    assert unset.optional is None
    assert resolve_paths(unset, Path("/elsewhere")) == unset  # absolute now: stays


def test_load_settings_errors_are_the_steps_errors() -> None:
    """One loader, the same messages as its steps: the source for bad TOML, ``invalid
    <what>`` with the dotted key for a bad value, the variable for a bad name."""

    def load(text: str | None, environ: dict[str, str]) -> _Cfg:
        return load_settings(
            _Cfg, text, what="demo config", source="demo.toml", environ=environ,
            prefix="TS__", base=Path("/b"),
        )  # fmt: skip

    with pytest.raises(SettingsError, match=r"^demo\.toml is not valid TOML: "):
        load("[mqtt\n", {})
    with pytest.raises(SettingsError, match=r"^invalid demo config: mqtt\.port: .*integer"):
        load(None, {"TS__MQTT__PORT": "many"})
    with pytest.raises(SettingsError, match="TS__MQTT: expected TS__<SECTION>__<KEY>"):
        load(None, {"TS__MQTT": "1"})
