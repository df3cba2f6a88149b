"""store: where twins and hub state are kept.

InfluxDB holds the time series (``InfluxStore``, the line protocol in ``_lines``, the
read side ``TwinReader`` with history and segment changes); the state store holds what
every hub instance must agree on (``StateStore`` on a SQLite file or PostgreSQL, opened
with ``state_store_from``; ``SharedView`` for state every instance keeps in memory).
Nothing here knows about devices, privacy or HTTP: the layers above pass it in.
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
from ._state import Migration, StateStore
from ._state_copy import COPIED_TABLES, copy_state
from ._state_errors import (
    StateConflictError,
    StateSchemaError,
    StateStoreError,
    StateUnavailableError,
)
from ._state_open import (
    open_state_retrying,
    open_state_store,
    state_of,
    state_store_from,
    wait_for_state,
)
from ._state_postgres import PostgresStateStore
from ._state_schema import STATE_KEYS, STATE_TABLES
from ._state_sqlite import SqliteStateStore
from ._state_tx import Dialect, Result, Tx, marks

__all__ = [
    "CLASS_MEASUREMENT",
    "COPIED_TABLES",
    "DEFAULT_PAGE",
    "MAX_BUCKETS",
    "MAX_CHANGES",
    "MAX_PAGE",
    "MEASUREMENT_OF",
    "STATE_KEYS",
    "STATE_TABLES",
    "TWIN_MEASUREMENTS",
    "TWIN_TAGGED",
    "Cursor",
    "Dialect",
    "InfluxStore",
    "Migration",
    "PostgresStateStore",
    "Result",
    "SharedView",
    "SqliteStateStore",
    "StateConflictError",
    "StateSchemaError",
    "StateStore",
    "StateStoreError",
    "StateUnavailableError",
    "TwinReader",
    "Tx",
    "bucket_advice",
    "bucket_count",
    "consent_line",
    "copy_state",
    "count_values",
    "device_line",
    "format_value",
    "marks",
    "open_state_retrying",
    "open_state_store",
    "parse_duration_ms",
    "quote_ident",
    "quote_str",
    "state_of",
    "state_store_from",
    "twin_lines",
    "typed_value",
    "wait_for_state",
]
