"""store: where twins and hub state are kept.

InfluxDB holds the time series (``InfluxStore``, the line protocol in ``_lines``, the
read side ``TwinReader`` with history and segment changes); the shared state file holds
what every hub instance must agree on (``connect``, ``SharedView`` for state re-read from
it). Nothing here knows about devices, privacy or HTTP: the layers above pass it in.
"""

from __future__ import annotations

from ._history import (
    DEFAULT_PAGE,
    MAX_BUCKETS,
    MAX_PAGE,
    Cursor,
    bucket_advice,
    bucket_count,
    parse_duration_ms,
)
from ._influx import InfluxStore, quote_ident, quote_str
from ._lines import (
    CLASS_MEASUREMENT,
    MEASUREMENT_OF,
    TWIN_MEASUREMENTS,
    TWIN_TAGGED,
    consent_line,
    device_line,
    format_value,
    twin_lines,
    typed_value,
)
from ._reader import TwinReader, count_values
from ._segments import MAX_CHANGES
from ._shared import SharedView
from ._sqlite import connect

__all__ = [
    "CLASS_MEASUREMENT",
    "DEFAULT_PAGE",
    "MAX_BUCKETS",
    "MAX_CHANGES",
    "MAX_PAGE",
    "MEASUREMENT_OF",
    "TWIN_MEASUREMENTS",
    "TWIN_TAGGED",
    "Cursor",
    "InfluxStore",
    "SharedView",
    "TwinReader",
    "bucket_advice",
    "bucket_count",
    "connect",
    "consent_line",
    "count_values",
    "device_line",
    "format_value",
    "parse_duration_ms",
    "quote_ident",
    "quote_str",
    "twin_lines",
    "typed_value",
]
