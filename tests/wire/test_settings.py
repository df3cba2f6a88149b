"""Layered settings: file, then environment, then overrides; one clear error per problem."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from protocol import SettingsError, layer_settings, validate_settings


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
