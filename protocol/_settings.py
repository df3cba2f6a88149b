"""Layered settings shared by agent and hub: TOML text, then environment, then overrides.

Pure: the caller reads the file and passes its text, the environment and the file's
directory in, so both daemons resolve configuration the same way and the rules are
tested once. :func:`load_settings` is the whole of it (layer, validate, resolve paths);
:func:`layer_settings`, :func:`validate_settings` and :func:`resolve_paths` are its
steps.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from ._errors import TwinSyncError

__all__ = [
    "PathBase",
    "SettingsError",
    "layer_settings",
    "load_settings",
    "resolve_paths",
    "validate_settings",
]

M = TypeVar("M", bound=BaseModel)


class PathBase(Protocol):
    """A directory to resolve relative paths against: a ``pathlib.Path`` (``protocol``
    itself imports no path library; it only joins with ``/``)."""

    def __truediv__(self, other: Any, /) -> Any:
        """This directory joined with ``other`` (an absolute ``other`` stays itself)."""


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


def _resolved(value: Any, base: PathBase) -> Any:
    # A path is whatever speaks os.PathLike (``__fspath__``): pathlib's classes, without
    # importing them. Strings stay strings: a setting that is not a Path is not a path.
    if hasattr(value, "__fspath__"):
        return base / value
    if isinstance(value, BaseModel):
        return resolve_paths(value, base)
    if isinstance(value, list | tuple):
        return type(value)(_resolved(v, base) for v in value)
    return value


def resolve_paths(settings: M, base: PathBase) -> M:
    """A copy of ``settings`` with every relative path in it (a path-typed setting, in
    any section, list or nested model) joined to ``base``; absolute ones stay as they are.
    """
    fields = type(settings).model_fields
    return settings.model_copy(
        update={name: _resolved(getattr(settings, name), base) for name in fields}
    )


def load_settings(
    model: type[M],
    toml_text: str | None,
    *,
    what: str,
    source: str,
    environ: Mapping[str, str],
    prefix: str,
    base: PathBase,
    overrides: Mapping[str, Any] | None = None,
) -> M:
    """The settings of one daemon, as agent and hub both load them.

    ``toml_text`` (the file the caller read, named ``source`` in errors; None: no file),
    then environment variables ``<prefix><SECTION>__<KEY>``, then ``overrides``;
    validated as ``model`` (errors say ``invalid <what>: ...`` with every bad key);
    every relative path made relative to ``base``, the file's directory. Raises
    :class:`SettingsError`.
    """
    data = layer_settings(
        toml_text, source=source, environ=environ, prefix=prefix, overrides=overrides
    )
    return resolve_paths(validate_settings(model, data, what=what), base)
