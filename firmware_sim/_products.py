"""Per-product firmware behaviour: which generator makes each product's events.

Each generator appends ``(ts, name, value, subject)`` events (true device time, before
skew, sensor trouble and faults) to a :class:`~firmware_sim._stream.Stream`. Cadences
follow the product: a thermostat samples its room and meters its energy every ~10
minutes, a wearable the heart rate every 2-8 minutes depending on the wearer's
activity, a coffee machine its tank every ~5 minutes plus events per brew, a TV a
standby heartbeat plus viewing sessions. Usage intensity and timing come from the
habits of whoever uses the device, on their household's local clock, decaying before a
churner's churn time.
"""

from __future__ import annotations

from collections.abc import Callable

from ._coffee import coffee
from ._stream import Event, Stream
from ._thermostat import thermostat
from ._tv import tv
from ._wearable import wearable

__all__ = ["GENERATORS", "Event", "Stream"]

#: product type -> generator
GENERATORS: dict[str, Callable[[Stream], None]] = {
    "coffee": coffee,
    "thermostat": thermostat,
    "wearable": wearable,
    "tv": tv,
}
