"""The signal catalog: which signals each product type emits and which twin field each feeds.

One declaration serves everyone: the edge agent validates signals against it, the hub
validates ops and picks the merge rule from it, firmware_sim generates from it, and the
store maps value types to InfluxDB field types with it.

Kinds:

- ``gauge``: a reading (temperature, water level). Twin field is a last-writer-wins
  register; an op is sent only when the device's value changed.
- ``state``: a discrete setting (mode, channel genre, power). Same merge as ``gauge``.
- ``counter``: an event carrying a non-negative increment (a brew, steps, kWh). The twin
  field is the sum over devices of each device's cumulative total (a G-counter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ._errors import SchemaError

__all__ = [
    "CATALOG",
    "FIELDS",
    "FIELD_CLASSES",
    "MODEL_FIELDS",
    "PRODUCTS",
    "PURPOSES",
    "FieldClass",
    "FieldSpec",
    "Kind",
    "Purpose",
    "Scalar",
    "SignalSpec",
    "ValueType",
    "check_signal_value",
    "field_spec",
    "signal_spec",
]

Scalar = bool | int | float | str
Kind = Literal["gauge", "state", "counter"]
ValueType = Literal["float", "int", "str", "bool"]
Purpose = Literal["service", "analytics", "personalization", "marketing"]
#: Storage class of a twin field: ``usage`` (fed by the product's signals, and the
#: service-purpose anomaly flags, which describe the device, not the person) or
#: ``profile`` (features and predictions about the person). Each class has its own
#: InfluxDB measurement, retention limit, and is what an objection to profiling removes.
FieldClass = Literal["usage", "profile"]
FIELD_CLASSES: tuple[FieldClass, ...] = ("usage", "profile")

#: Processing purposes, in the order a consent notice lists them. ``service`` is the
#: product working at all; the others are optional and off by default (issue 4).
PURPOSES: tuple[Purpose, ...] = ("service", "analytics", "personalization", "marketing")


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """How one firmware signal is validated and which twin field it feeds."""

    name: str
    product: str
    kind: Kind
    type: ValueType
    field: str
    purpose: Purpose
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    description: str = ""
    #: whether the value leaves the device as a twin field (data minimisation): raw
    #: readings no purpose needs on the hub stay local and reach it only as features
    shared: bool = True


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A twin field: its value type and merge rule (``lww`` or ``counter``)."""

    name: str
    product: str
    type: ValueType
    merge: Literal["lww", "counter"]
    purpose: Purpose
    unit: str = ""
    #: on the allowlist of what may leave the device (see SignalSpec.shared)
    shared: bool = True

    @property
    def field_class(self) -> FieldClass:
        """``usage`` or ``profile`` (see :data:`FieldClass`).

        Derived rather than stored, so that fields other modules register (the features
        of ``protocol._features``) get their class by the same rule: a field no signal
        feeds is model-derived, and it profiles the person unless its purpose is the
        service itself.
        """
        if self.name in _SIGNAL_FIELDS or self.purpose == "service":
            return "usage"
        return "profile"


def _s(
    name: str,
    kind: Kind,
    type_: ValueType,
    purpose: Purpose,
    *,
    field: str | None = None,
    unit: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    description: str = "",
    shared: bool = True,
) -> SignalSpec:
    return SignalSpec(
        name=name,
        product=name.split(".", 1)[0],
        kind=kind,
        type=type_,
        field=field or name,
        purpose=purpose,
        unit=unit,
        minimum=minimum,
        maximum=maximum,
        choices=choices,
        description=description,
        shared=shared,
    )


_SIGNALS: tuple[SignalSpec, ...] = (
    # coffee machine
    _s(
        "coffee.brew",
        "counter",
        "int",
        "service",
        field="coffee.brews_total",
        unit="cups",
        minimum=1,
        maximum=12,
        description="a drink was brewed (increment: cups)",
    ),
    _s(
        "coffee.strength",
        "state",
        "int",
        "personalization",
        minimum=1,
        maximum=5,
        description="strength chosen for the last drink",
    ),
    _s("coffee.water_level_pct", "gauge", "float", "service", unit="%", minimum=0, maximum=100),
    _s("coffee.descale_due", "state", "bool", "service"),
    # thermostat
    _s("thermostat.temperature_c", "gauge", "float", "service", unit="°C", minimum=-40, maximum=70),
    _s(
        "thermostat.setpoint_c",
        "gauge",
        "float",
        "personalization",
        unit="°C",
        minimum=5,
        maximum=35,
    ),
    _s(
        "thermostat.mode", "state", "str", "service", choices=("off", "heat", "cool", "auto", "eco")
    ),
    _s(
        "thermostat.energy",
        "counter",
        "float",
        "analytics",
        field="thermostat.energy_kwh_total",
        unit="kWh",
        minimum=0,
        maximum=50,
    ),
    # wearable
    # Heart rate readings are health data no hub-side purpose needs one by one: they stay
    # on the device and leave only as the wearable's features (resting rate, trends).
    _s(
        "wearable.heart_rate_bpm",
        "gauge",
        "int",
        "analytics",
        unit="bpm",
        minimum=25,
        maximum=250,
        shared=False,
    ),
    _s(
        "wearable.steps",
        "counter",
        "int",
        "analytics",
        field="wearable.steps_total",
        unit="steps",
        minimum=0,
        maximum=100_000,
    ),
    _s(
        "wearable.sleep",
        "counter",
        "int",
        "analytics",
        field="wearable.sleep_minutes_total",
        unit="min",
        minimum=0,
        maximum=1_440,
    ),
    # TV
    _s("tv.power", "state", "bool", "service"),
    _s(
        "tv.genre",
        "state",
        "str",
        "personalization",
        choices=("news", "sports", "movies", "kids", "series", "music"),
    ),
    _s("tv.volume", "gauge", "int", "service", minimum=0, maximum=100),
    _s(
        "tv.watch",
        "counter",
        "float",
        "marketing",
        field="tv.watch_minutes_total",
        unit="min",
        minimum=0,
        maximum=1_440,
    ),
)

#: Every known signal by name.
CATALOG: dict[str, SignalSpec] = {s.name: s for s in _SIGNALS}
_SIGNAL_FIELDS = frozenset(s.field for s in _SIGNALS)

#: Every twin field by name (one per signal).
FIELDS: dict[str, FieldSpec] = {
    s.field: FieldSpec(
        name=s.field,
        product=s.product,
        type=s.type,
        merge="counter" if s.kind == "counter" else "lww",
        purpose=s.purpose,
        unit=s.unit,
        shared=s.shared,
    )
    for s in _SIGNALS
}

#: Product types and the signals each emits.
# Fields the device's models write (no firmware signal feeds them): per product, so that
# the segment of one product's model never overwrites another's. ``*_model`` names the
# model (``name@version``) that produced the value beside it.
_DERIVED: tuple[tuple[str, ValueType, Literal["lww", "counter"], Purpose], ...] = (
    ("segment", "int", "lww", "personalization"),
    ("segment_model", "str", "lww", "personalization"),
    # A second level inside the segment: the same purpose as the segment it refines.
    ("micro_segment", "int", "lww", "personalization"),
    ("micro_model", "str", "lww", "personalization"),
    ("churn_risk", "float", "lww", "personalization"),
    ("churn_model", "str", "lww", "personalization"),
    ("anomalies_total", "int", "counter", "service"),
    ("anomaly_model", "str", "lww", "service"),
)
#: twin field names of the model outputs: (product, output) -> field
MODEL_FIELDS: dict[tuple[str, str], str] = {}
for _product in sorted({s.product for s in _SIGNALS}):
    for _name, _type, _merge, _purpose in _DERIVED:
        _field = f"{_product}.{_name}"
        MODEL_FIELDS[(_product, _name)] = _field
        FIELDS[_field] = FieldSpec(_field, _product, _type, _merge, _purpose)
del _product, _name, _type, _merge, _purpose, _field

PRODUCTS: dict[str, tuple[str, ...]] = {}
for _spec in _SIGNALS:
    PRODUCTS[_spec.product] = (*PRODUCTS.get(_spec.product, ()), _spec.name)
del _spec


def signal_spec(name: str) -> SignalSpec:
    """The spec of signal ``name``; raises SchemaError(reason='unknown_signal')."""
    try:
        return CATALOG[name]
    except KeyError:
        raise SchemaError(f"unknown signal {name!r}", reason="unknown_signal") from None


def field_spec(name: str) -> FieldSpec:
    """The spec of twin field ``name``; raises SchemaError(reason='unknown_field')."""
    try:
        return FIELDS[name]
    except KeyError:
        raise SchemaError(f"unknown twin field {name!r}", reason="unknown_field") from None


def _type_ok(type_: ValueType, value: object) -> bool:
    if type_ == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if type_ == "int":
        return isinstance(value, int)
    if type_ == "float":
        return isinstance(value, int | float)
    return isinstance(value, str)


def check_signal_value(spec: SignalSpec, value: object) -> Scalar:
    """Validate a signal value against its spec and return it normalised.

    Raises :class:`SchemaError` with reason ``wrong_type``, ``not_finite``,
    ``out_of_range`` or ``bad_choice``. Floats are returned as ``float`` so that
    InfluxDB field types never flip between integer and float.
    """
    if not _type_ok(spec.type, value):
        raise SchemaError(
            f"{spec.name}: expected {spec.type}, got {type(value).__name__}",
            reason="wrong_type",
        )
    if spec.type in ("int", "float"):
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number):
            raise SchemaError(f"{spec.name}: value is not finite", reason="not_finite")
        if (spec.minimum is not None and number < spec.minimum) or (
            spec.maximum is not None and number > spec.maximum
        ):
            raise SchemaError(
                f"{spec.name}: {value!r} outside [{spec.minimum}, {spec.maximum}]",
                reason="out_of_range",
            )
        return number if spec.type == "float" else int(value)  # type: ignore[call-overload]
    if spec.choices and value not in spec.choices:
        raise SchemaError(
            f"{spec.name}: {value!r} not one of {', '.join(spec.choices)}", reason="bad_choice"
        )
    if isinstance(value, str) and len(value) > 64:
        raise SchemaError(f"{spec.name}: string longer than 64 characters", reason="too_long")
    return value  # type: ignore[return-value]
