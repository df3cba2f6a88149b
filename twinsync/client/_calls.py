"""Every call the client makes, built as data: :data:`ROUTES` and :class:`Calls`.

One builder per client method (the OpenAPI operation id, except
``get_twin_history_buckets``, the bucketed form of ``get_twin_history``), shared by
:class:`~twinsync.client.Client` and :class:`~twinsync.client.AsyncClient`: a method
there only sends what its builder made. The builders are mixins, one per API area
(``_calls_<area>.py``), that :class:`Calls` joins. Adding a route to the client is a line
in :data:`ROUTES` (_calls_core.py), a builder in its area's module and a one-line method
in each client's (``_sync_<area>.py``, ``_async_<area>.py``);
tests/client/test_coverage.py fails until all three exist and match the hub's document.
"""

from __future__ import annotations

from ._calls_core import ROUTES, Time
from ._calls_lab import LabCalls
from ._calls_models import ModelCalls
from ._calls_privacy import PrivacyCalls
from ._calls_segments import SegmentCalls
from ._calls_triggers import TriggerCalls
from ._calls_twins import TwinCalls

__all__ = ["ROUTES", "Calls", "Time"]


class Calls(
    TwinCalls,
    SegmentCalls,
    PrivacyCalls,
    ModelCalls,
    TriggerCalls,
    LabCalls,
):
    """The requests of one brand's client (one mixin per API area, ``_calls_<area>.py``)."""
