"""Layered settings shared by agent and hub: TOML text, then environment, then overrides.

Pure: the caller reads the file and passes its text and the environment in, so both
daemons resolve configuration the same way and the rules are tested once.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ._errors import TwinSyncError

__all__ = ["SettingsError", "layer_settings", "validate_settings"]

M = TypeVar("M", bound=BaseModel)


class SettingsError(TwinSyncError):
    """A configuration that cannot be parsed or validated; the message names the key."""

    reason = "config"


def _merge(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _from_environ(environ: Mapping[str, str], prefix: str) -> dict[str, Any]:
    """``<PREFIX><SECTION>__<KEY>=value``; a value is TOML if it parses, else a bare string."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(prefix):
            continue
        path = [p.lower() for p in name[len(prefix) :].split("__")]
        if len(path) != 2 or not all(path):
            raise SettingsError(f"{name}: expected {prefix}<SECTION>__<KEY>")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out.setdefault(path[0], {})[path[1]] = value
    return out


def layer_settings(
    toml_text: str | None,
    *,
    source: str,
    environ: Mapping[str, str],
    prefix: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Parse ``toml_text`` (named ``source`` in errors) and lay environment and overrides on it."""
    data: dict[str, Any] = {}
    if toml_text is not None:
        try:
            data = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{source} is not valid TOML: {exc}") from None
    _merge(data, _from_environ(environ, prefix))
    _merge(data, overrides or {})
    return data


def validate_settings(model: type[M], data: Mapping[str, Any], *, what: str) -> M:
    """Validate ``data`` as ``model``; one error message listing every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid {what}: {problems}") from None
