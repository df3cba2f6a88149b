"""Per-signal baselines for the anomaly models: how unusual is this reading here?

A gauge reading that passes validation can still be implausible for the device it comes
from (a room jumping 12 °C in ten minutes, a resting wearer at 210 bpm). The agent keeps
one :class:`SignalBaseline` per gauge signal: a robust exponentially weighted mean and
variance, and the last reading that looked normal. :meth:`SignalBaseline.observe` returns
the anomaly features of a reading (:data:`protocol.ANOMALY_FEATURES`) and then learns
from it, with outliers clipped so that one spike neither drags the baseline nor makes the
return to normal look like a second anomaly. The trainer replays readings through the
same class, so training and inference see the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._catalog import CATALOG, SignalSpec
from ._errors import SchemaError

__all__ = ["SignalBaseline", "is_baselined"]

_ALPHA = 0.1
#: deviations are clipped to this many sigmas when learning
_CLIP_SIGMAS = 3.0
#: a reading this many sigmas off is not taken as the new "last normal" one
_NORMAL_SIGMAS = 6.0
_MAX_Z = 50.0


def is_baselined(name: str) -> bool:
    """Whether signal ``name`` is a numeric gauge with a declared range (has a baseline)."""
    spec = CATALOG.get(name)
    return (
        spec is not None
        and spec.kind == "gauge"
        and spec.type in ("int", "float")
        and spec.minimum is not None
        and spec.maximum is not None
    )


@dataclass
class SignalBaseline:
    """Robust running statistics of one gauge signal on one device."""

    name: str
    mean: float | None = None
    var: float = 0.0
    last_normal: float | None = None

    def __post_init__(self) -> None:
        if not is_baselined(self.name):
            raise SchemaError(f"{self.name!r} is not a numeric gauge with a range")
        spec: SignalSpec = CATALOG[self.name]
        assert spec.minimum is not None
        assert spec.maximum is not None
        self._lo = float(spec.minimum)
        self._range = float(spec.maximum) - self._lo
        # Never trust a spread below 1 % of the range (a flat signal would make every
        # small change look infinite).
        self._floor = 0.01 * self._range

    def observe(self, value: float) -> list[float]:
        """Anomaly features of ``value`` against the baseline so far; then learn from it."""
        x = float(value)
        if self.mean is None:
            self.mean, self.var, self.last_normal = x, (0.05 * self._range) ** 2, x
            return [0.0, 0.0, (x - self._lo) / self._range]
        assert self.last_normal is not None
        sigma = max(math.sqrt(self.var), self._floor)
        deviation = x - self.mean
        abs_z = min(_MAX_Z, abs(deviation) / sigma)
        features = [abs_z, (x - self.last_normal) / self._range, (x - self._lo) / self._range]
        clipped = max(-_CLIP_SIGMAS * sigma, min(_CLIP_SIGMAS * sigma, deviation))
        self.mean += _ALPHA * clipped
        self.var = (1 - _ALPHA) * (self.var + _ALPHA * clipped * clipped)
        if abs_z < _NORMAL_SIGMAS:
            self.last_normal = x
        return features

    def to_state(self) -> list[float | None]:
        """A JSON-able snapshot."""
        return [self.mean, self.var, self.last_normal]

    @classmethod
    def from_state(cls, name: str, state: list[float | None]) -> SignalBaseline:
        """Inverse of :meth:`to_state`; raises SchemaError when malformed."""
        try:
            mean, var, last = state
            return cls(
                name,
                None if mean is None else float(mean),
                float(var or 0.0),
                None if last is None else float(last),
            )
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"malformed baseline of {name}: {exc}") from None
