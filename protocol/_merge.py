"""Merge rules: how ops from every device of a twin become one twin state.

The state is a pure function of the *set* of ops, so merging is idempotent, commutative
and associative: at-least-once delivery in any order has an exactly-once effect, and two
hub replicas that saw the same ops agree.

- ``lww`` fields: last-writer-wins register ordered by ``(hlc, device)``.
- ``counter`` fields: each device's op carries its cumulative total; a device's component
  is the total with the highest HLC, and the twin's value is the sum of the components
  (a G-counter), summed in device order so floats are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._catalog import FIELDS, Scalar
from ._errors import SchemaError
from ._hlc import HLC

__all__ = ["FieldValue", "TwinState"]


@dataclass(frozen=True, slots=True)
class FieldValue:
    """A twin field's merged value and where its latest contribution came from."""

    value: Scalar
    hlc: int
    device: str

    @property
    def updated_ms(self) -> int:
        """Physical time (Unix ms) of the winning or latest op."""
        return HLC.unpack(self.hlc).ms


@dataclass(slots=True)
class TwinState:
    """A twin's merged state; feed it ops with :meth:`apply` in any order."""

    _registers: dict[str, tuple[int, str, Scalar]] = field(default_factory=dict)
    _counters: dict[str, dict[str, tuple[int, Scalar]]] = field(default_factory=dict)

    def apply(self, device: str, hlc: int, field_name: str, value: Scalar) -> None:
        """Merge one op; re-applying an op already seen changes nothing."""
        spec = FIELDS.get(field_name)
        if spec is None:
            raise SchemaError(f"unknown twin field {field_name!r}", reason="unknown_field")
        if spec.merge == "lww":
            current = self._registers.get(field_name)
            # The value breaks a tie only for a (device, hlc) pair that a correct device never
            # reuses; it keeps the order total so even a buggy sender cannot make replicas diverge.
            if current is None or (hlc, device, value) > current:
                self._registers[field_name] = (hlc, device, value)
            return
        components = self._counters.setdefault(field_name, {})
        current_c = components.get(device)
        if current_c is None or (hlc, value) > current_c:
            components[device] = (hlc, value)

    def merge(self, other: TwinState) -> None:
        """Merge another state into this one (union of the op sets)."""
        for name, (hlc, device, value) in other._registers.items():
            self.apply(device, hlc, name, value)
        for name, components in other._counters.items():
            for device, (hlc, value) in components.items():
                self.apply(device, hlc, name, value)

    def fields(self) -> dict[str, FieldValue]:
        """Every field's merged value, sorted by field name."""
        out: dict[str, FieldValue] = {}
        for name, (hlc, device, value) in self._registers.items():
            out[name] = FieldValue(value, hlc, device)
        for name, components in self._counters.items():
            total: int | float = 0
            latest = (0, "")
            for device in sorted(components):
                hlc, value = components[device]
                total += value  # type: ignore[operator]
                latest = max(latest, (hlc, device))
            if FIELDS[name].type == "float":
                total = float(total)
            out[name] = FieldValue(total, latest[0], latest[1])
        return dict(sorted(out.items()))

    def values(self) -> dict[str, Scalar]:
        """Just the merged values, by field name."""
        return {name: fv.value for name, fv in self.fields().items()}

    def __bool__(self) -> bool:
        return bool(self._registers or self._counters)
