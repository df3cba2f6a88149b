"""Identifier rules: brands, devices, twins and field names.

Identifiers appear in MQTT topics, InfluxDB tags and URLs, so they are restricted to a
small alphabet that needs no escaping anywhere and can carry no personal data by
construction (twin ids are HMAC outputs; devices and brands are provisioned names).
"""

from __future__ import annotations

import re

from ._errors import IdentifierError

__all__ = [
    "check_brand",
    "check_device",
    "check_field",
    "check_twin",
]

_BRAND = re.compile(r"[a-z][a-z0-9-]{0,31}")
_DEVICE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# "<epoch>-<32 lowercase hex>": see protocol._pseudonym.
_TWIN = re.compile(r"[0-9]{1,6}-[0-9a-f]{32}")
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,47}")


def _check(pattern: re.Pattern[str], kind: str, value: object) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise IdentifierError(
            f"invalid {kind} id {value!r}: must match {pattern.pattern}",
            reason=f"bad_{kind}",
        )
    return value


def check_brand(value: object) -> str:
    """Return ``value`` if it is a valid brand (tenant) id, else raise IdentifierError."""
    return _check(_BRAND, "brand", value)


def check_device(value: object) -> str:
    """Return ``value`` if it is a valid device id, else raise IdentifierError.

    ``broadcast`` is reserved for brand-wide topics and is never a device id.
    """
    if value == "broadcast":
        raise IdentifierError("device id 'broadcast' is reserved", reason="bad_device")
    return _check(_DEVICE, "device", value)


def check_twin(value: object) -> str:
    """Return ``value`` if it is a valid twin id (``epoch-hex32``), else raise IdentifierError."""
    return _check(_TWIN, "twin", value)


def check_field(value: object) -> str:
    """Return ``value`` if it is a valid twin field name (``product.name``)."""
    return _check(_FIELD, "field", value)
