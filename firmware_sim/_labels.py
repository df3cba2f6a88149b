"""Ground-truth labels of one device's stream (what ``Fleet.truth(device)`` returns).

What a real fleet never tells you and the simulator always does: which readings are
injected anomalies (kind and size), which large changes are genuine, how wrong the
device's clock is, when it was off, which sensor drifted, what was lost, and who really
used a shared device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AnomalyKind",
    "AnomalyLabel",
    "DeviceClock",
    "DeviceTruth",
    "GenuineEvent",
    "SensorFault",
    "SizeClass",
]

AnomalyKind = Literal["spike", "level_shift", "stuck", "out_of_pattern"]
SizeClass = Literal["small", "medium", "large"]


@dataclass(frozen=True)
class AnomalyLabel:
    """One injected anomalous reading (or event, for ``out_of_pattern``).

    Readings of one anomaly share ``episode`` (numbered per device from 1).
    ``magnitude`` is in the signal's unit: the offset from the genuine value for a spike
    or a level shift, the largest departure of the genuine value from the stuck one, the
    number of uses for out-of-pattern use (a setpoint's or heart rate's offset for those).
    """

    kind: AnomalyKind
    size: SizeClass
    signal: str
    episode: int
    magnitude: float


@dataclass(frozen=True)
class GenuineEvent:
    """A large but genuine change (not an anomaly): ``refill``, ``party``,
    ``movie_night``, ``window_open`` or ``workout``; ``seqs`` are its signals."""

    kind: str
    subject: str
    start_ms: int
    end_ms: int
    seqs: tuple[int, ...]


@dataclass(frozen=True)
class SensorFault:
    """A sensor that drifts: ``signal`` reads ``per_day`` units more each day from
    ``start_ms`` on (never corrected)."""

    kind: Literal["drift"]
    signal: str
    start_ms: int
    per_day: float


@dataclass(frozen=True)
class DeviceClock:
    """A device's clock: ``offset_ms`` at ``epoch_ms`` (the window start), drifting by
    ``drift_ppm``. Device timestamps are what this clock says; nothing corrects them."""

    offset_ms: int
    drift_ppm: float = 0.0
    epoch_ms: int = 0

    def skew_at(self, true_ms: int) -> int:
        """How far ahead of the truth the clock is at ``true_ms`` (negative: behind)."""
        if not self.drift_ppm:
            return self.offset_ms
        return self.offset_ms + int(self.drift_ppm * (true_ms - self.epoch_ms) / 1_000_000)

    def device_ms(self, true_ms: int) -> int:
        """The device's timestamp for an instant."""
        return true_ms + self.skew_at(true_ms)

    def true_ms(self, device_ms: int) -> int:
        """The instant a device timestamp stands for (exact to a millisecond)."""
        guess = device_ms - self.skew_at(device_ms - self.offset_ms)
        return device_ms - self.skew_at(guess)


@dataclass(frozen=True)
class DeviceTruth:
    """Everything known about one device's stream that the stream does not say."""

    device_id: str
    #: the household's real zone (``configured_tz`` is what the device is set to)
    timezone: str
    configured_tz: str
    clock: DeviceClock
    #: [start, end) spans (true ms) when the device was off: no signals at all
    outages: tuple[tuple[int, int], ...]
    #: firmware seq -> label of each injected anomalous signal
    anomalies: Mapping[int, AnomalyLabel]
    genuine: tuple[GenuineEvent, ...]
    sensor_faults: tuple[SensorFault, ...]
    #: genuine signals lost at random (SensorSpec.loss) and silenced by outages
    lost: int
    silenced: int
    #: firmware seq -> the person who really used the device, where the signal names
    #: someone else (a shared device that cannot tell users apart, or mis-attributes)
    true_subjects: Mapping[int, str]
