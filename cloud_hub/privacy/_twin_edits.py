"""What a rectification asks (GDPR Art. 16, 18), and how it reaches InfluxDB and devices.

A request body's ``set`` (customer-asserted values of usage fields, and corrections of
behaviour tags: true or false), ``suppress`` and
``restore`` (fields no longer, or again, collected) are checked against the catalog
before anything changes (:func:`parse_rectification`); a value becomes a point from the
source :data:`CUSTOMER_SOURCE` (never a valid device id, so provenance is plain), and a
suppression or restoration a hub-signed :class:`~protocol.ConsentCommand` naming the
fields. The procedure is cloud_hub.privacy._rectify's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloud_hub._errors import RequestError
from cloud_hub.store import MEASUREMENT_OF, format_value
from protocol import (
    CATALOG,
    FIELDS,
    HLC,
    TAG_FIELDS,
    ConsentCommand,
    Scalar,
    SchemaError,
    check_signal_value,
)

__all__ = [
    "CUSTOMER_SOURCE",
    "Rectification",
    "customer_lines",
    "field_command",
    "parse_rectification",
]

#: the ``device`` tag of customer-asserted values (device ids start with [a-z0-9])
CUSTOMER_SOURCE = "_customer"
_SIGNAL_OF = {spec.field: spec for spec in CATALOG.values()}
_MAX_FIELDS = 64
_TAGS = frozenset(TAG_FIELDS.values())


@dataclass(frozen=True)
class Rectification:
    """A checked request: values to set, fields to suppress, suppressions to lift."""

    values: dict[str, Scalar]
    suppress: tuple[str, ...] = ()
    restore: tuple[str, ...] = ()


def parse_rectification(body: dict[str, Any]) -> Rectification:
    """``set``, ``suppress`` and ``restore`` of a request body, checked against the
    catalog. Raises RequestError(reason='bad_rectification') naming the first problem."""

    def bad(message: str) -> RequestError:
        return RequestError(message, reason="bad_rectification")

    if set(body) - {"subject", "set", "suppress", "restore"}:
        raise bad(
            'send {"subject", "set": {field: value}, "suppress": [field, ...], '
            '"restore": [field, ...]}'
        )
    values = body.get("set", {})
    suppress, restore = body.get("suppress", []), body.get("restore", [])
    if not isinstance(values, dict) or not isinstance(suppress, list):
        raise bad('"set" must be a map of field -> value and "suppress" a list of fields')
    if not isinstance(restore, list):
        raise bad('"restore" must be a list of fields')
    if not values and not suppress and not restore:
        raise bad('nothing to do: give "set", "suppress" or "restore"')
    names = [*values, *suppress, *restore]
    if len(names) > _MAX_FIELDS or len(set(names)) != len(names):
        raise bad(f"at most {_MAX_FIELDS} distinct fields per request, each named once")
    checked: dict[str, Scalar] = {}
    for name, value in values.items():
        if name in _TAGS:
            # A customer may correct a tag the device computed about them; it stands until
            # the device's own evaluation changes (suppress it to stop it for good).
            if not isinstance(value, bool):
                raise bad(f"{name}: a behaviour tag is true or false, got {value!r}")
            checked[name] = value
            continue
        spec = FIELDS.get(name)
        signal = _SIGNAL_OF.get(name)
        if spec is None or not spec.shared:
            raise bad(f"unknown twin field {name!r}")
        if spec.merge != "lww" or signal is None or spec.field_class != "usage":
            raise bad(
                f"{name!r} cannot be set: counters are sums of what devices counted and "
                "features or predictions come from models; suppress it instead"
            )
        try:
            checked[name] = check_signal_value(signal, value)
        except SchemaError as exc:
            raise bad(f"{name}: {exc}") from None
    for name in [*suppress, *restore]:
        if not isinstance(name, str) or name not in FIELDS or not FIELDS[name].shared:
            raise bad(f"unknown twin field {name!r}")
    return Rectification(checked, tuple(suppress), tuple(restore))


def customer_lines(brand: str, twin: str, values: dict[str, Scalar], now_ms: int) -> list[str]:
    """Points of customer-asserted values: source ``_customer``, HLC of now."""
    ts = HLC(now_ms, 0).to_ns()
    tags = f"brand={brand},device={CUSTOMER_SOURCE},twin={twin}"
    return [f"{MEASUREMENT_OF[n]},{tags} {n}={format_value(n, v)} {ts}" for n, v in values.items()]


def field_command(
    twins: list[str],
    suppress: tuple[str, ...],
    restore: tuple[str, ...],
    request_id: str,
    now: int,
) -> ConsentCommand:
    """The hub-signed command telling devices to stop (or resume) collecting fields."""
    return ConsentCommand(
        twins=tuple(twins),
        purposes={},
        notice="rectification",
        request_id=request_id,
        ts_ms=now,
        suppress=suppress,
        restore=restore,
    )
