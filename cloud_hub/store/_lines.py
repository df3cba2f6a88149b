"""InfluxDB line protocol for twin ops and device status (the hot path: keep it tight).

Identifiers reaching here are validated by ``protocol`` (brand, device, twin, field names
match small alphabets that need no escaping), so tags and field keys are written as is;
string *values* are escaped. Floats use ``repr`` so they round-trip exactly.

Each field class (``protocol.FieldSpec.field_class``) has its own measurement, because
InfluxDB 1.x deletes points, never single fields: model-derived ``profile`` fields live
in ``twin_profile`` so that an objection to profiling and the profile retention limit
can delete them without touching the usage history in ``twin``.
"""

from __future__ import annotations

import re

from protocol import (
    FIELD_CLASSES,
    FIELDS,
    HLC,
    ConsentEntry,
    FieldClass,
    Scalar,
    TwinOps,
    ValueType,
)

__all__ = [
    "CLASS_MEASUREMENT",
    "MEASUREMENT_OF",
    "TWIN_MEASUREMENTS",
    "TWIN_TAGGED",
    "consent_line",
    "device_line",
    "format_value",
    "parse_twin_lines",
    "twin_lines",
    "typed_value",
]

_TYPES = {name: spec.type for name, spec in FIELDS.items()}
#: the InfluxDB measurement of each field class
CLASS_MEASUREMENT: dict[FieldClass, str] = {"usage": "twin", "profile": "twin_profile"}
assert set(CLASS_MEASUREMENT) == set(FIELD_CLASSES)
#: every measurement holding twin fields (reads and erasure cover them all)
TWIN_MEASUREMENTS: tuple[str, ...] = tuple(CLASS_MEASUREMENT[c] for c in FIELD_CLASSES)
#: every measurement whose points carry a ``twin`` tag: the twin fields and the consent
#: ledger (what a twin's move to a new key epoch takes along)
TWIN_TAGGED: tuple[str, ...] = (*TWIN_MEASUREMENTS, "consent")
_TWIN_PREFIXES = tuple(f"{m}," for m in TWIN_MEASUREMENTS)
#: the measurement of each twin field
MEASUREMENT_OF: dict[str, str] = {n: CLASS_MEASUREMENT[s.field_class] for n, s in FIELDS.items()}
# field -> (value type, index of its measurement's line prefix): one dict lookup per op
# serves both, which keeps the split as fast as the single measurement was (bench/).
_INFO = {n: (s.type, 1 if s.field_class == "profile" else 0) for n, s in FIELDS.items()}


def typed_value(kind: ValueType, value: object) -> str:
    """A field value of value type ``kind`` in line protocol (strings escaped)."""
    if kind == "float":
        return repr(float(value))  # type: ignore[arg-type]
    if kind == "int":
        return f"{int(value)}i"  # type: ignore[call-overload]
    if kind == "bool":
        return "true" if value else "false"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def format_value(field: str, value: object) -> str:
    """A field value in line protocol, typed by the catalog."""
    return typed_value(_TYPES[field], value)


def twin_lines(brand: str, device: str, twins: tuple[TwinOps, ...], out: list[str]) -> int:
    """Append one line per op to ``out``; return how many were appended."""
    n = 0
    info = _INFO
    for twin_ops in twins:
        tags = f",brand={brand},device={device},twin={twin_ops.twin} "
        prefixes = ("twin" + tags, "twin_profile" + tags)
        for hlc, field, value in twin_ops.ops:
            kind, measurement = info[field]
            # Inlined format_value for the common kinds (this loop runs once per op).
            if kind == "float":
                text = repr(value)
            elif kind == "int":
                text = f"{value}i"
            else:
                text = format_value(field, value)
            out.append(
                f"{prefixes[measurement]}{field}={text} {(hlc >> 16) * 1_000_000 + (hlc & 0xFFFF)}"
            )
        n += len(twin_ops.ops)
    return n


_ESCAPED = re.compile(r"\\(.)")


def parse_twin_lines(lines: list[str]) -> list[tuple[str, str, str, str, int, Scalar]]:
    """The twin points among ``lines`` (as :func:`twin_lines` and the privacy paths write
    them: ``<measurement>,brand=..,device=..,twin=.. <field>=<value> <ns>``) as
    (brand, twin, device, field, packed HLC, value); other lines are skipped. The
    inverse of :func:`twin_lines`, for the index when a batch's lines were changed
    after they were built (cloud_hub.ingest)."""
    out: list[tuple[str, str, str, str, int, Scalar]] = []
    for line in lines:
        if not line.startswith(_TWIN_PREFIXES):
            continue
        head, _, rest = line.partition(" ")
        pair, _, ns = rest.rpartition(" ")
        name, _, raw = pair.partition("=")
        kind = _TYPES.get(name)
        if kind is None:
            continue
        tags = dict(tag.split("=", 1) for tag in head.split(",")[1:])
        value: Scalar
        if kind == "float":
            value = float(raw)
        elif kind == "int":
            value = int(raw.removesuffix("i"))
        elif kind == "bool":
            value = raw in ("true", "t", "T", "True", "TRUE")
        else:
            value = _ESCAPED.sub(r"\1", raw[1:-1])
        hlc = HLC.from_ns(int(ns)).pack()
        out.append((tags["brand"], tags["twin"], tags["device"], name, hlc, value))
    return out


def device_line(brand: str, device: str, fields: dict[str, bool | int | str], ts_ms: int) -> str:
    """A ``device`` measurement point (liveness, last seq, skew, outbox health, models)."""
    parts = []
    for key, value in fields.items():
        kind: ValueType = (
            "bool" if isinstance(value, bool) else "str" if isinstance(value, str) else "int"
        )
        parts.append(f"{key}={typed_value(kind, value)}")
    return f"device,brand={brand},device={device} {','.join(parts)} {ts_ms * 1_000_000}"


def consent_line(brand: str, device: str, entry: ConsentEntry) -> str:
    """A ``consent`` point: one ledger entry of one twin, as the device recorded it."""
    fields_text = ",".join(f"{k}={'true' if v else 'false'}" for k, v in entry.purposes)
    actor = entry.actor.replace('"', "")
    notice = typed_value("str", entry.notice)
    return (
        f"consent,brand={brand},device={device},twin={entry.twin} "
        f'{fields_text},actor="{actor}",notice={notice} {entry.ts_ms * 1_000_000}'
    )


assert HLC(1, 2).to_ns() == (((1 << 16) | 2) >> 16) * 1_000_000 + 2  # the inlined formula
