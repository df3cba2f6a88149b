"""Exceptions of the simulator: ``SimulationError(protocol.TwinSyncError)``."""

from __future__ import annotations

from protocol import TwinSyncError

__all__ = ["SimulationError"]


class SimulationError(TwinSyncError):
    """A simulation could not be generated, run or checked."""

    reason = "simulation"
