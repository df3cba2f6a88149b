"""store: where twins and hub state are kept.

InfluxDB holds the time series (``InfluxStore``, the line protocol in ``_lines``, the
read side ``TwinReader`` with history and segment changes); the state store holds what
every hub instance must agree on (``StateStore`` on a SQLite file or PostgreSQL, opened
with ``state_store_from``; ``SharedView`` for state every instance keeps in memory) and
the twin query index derived from InfluxDB (``TwinIndex`` writes it, ``IndexReader``
queries it with a ``Filter``, ``rebuild_index``/``check_index`` against InfluxDB).
Nothing here knows about devices, privacy or HTTP: the layers above pass it in.
"""

from __future__ import annotations

from ._experiments import Experiments, ExperimentSpec, assign
from ._feature_words import FEATURE_WORDS
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
    parse_twin_lines,
    twin_lines,
    typed_value,
)
from ._reader import TwinReader, count_values
from ._segment_alerts import ShareRule, share_alerts
from ._segment_profile import MAX_TOP, MIN_SMD, MIN_TWINS, SegmentProfiles
from ._segment_sizes import MAX_STEPS, SegmentSizes
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
from ._state_schema import STATE_KEYS, STATE_TABLES, TWIN_INDEX_TABLES
from ._state_sqlite import SqliteStateStore
from ._state_tx import Dialect, Result, Tx, marks
from ._twin_filter import (
    And,
    Compare,
    Filter,
    HasProduct,
    HasTag,
    Not,
    OneOf,
    Or,
    TwinColumn,
    tag_fields,
)
from ._twin_index import TwinIndex, index_lock
from ._twin_index_read import IndexPage, IndexReader, Position, SortKey
from ._twin_index_rebuild import check_index, index_brands, rebuild_index
from ._twin_match import matching_twins
from ._twin_rows import CHURN_FIELDS, Admit, IndexOp, Observe, chunks, stored_value

__all__ = [
    "CHURN_FIELDS",
    "CLASS_MEASUREMENT",
    "COPIED_TABLES",
    "DEFAULT_PAGE",
    "FEATURE_WORDS",
    "MAX_BUCKETS",
    "MAX_CHANGES",
    "MAX_PAGE",
    "MAX_STEPS",
    "MAX_TOP",
    "MEASUREMENT_OF",
    "MIN_SMD",
    "MIN_TWINS",
    "STATE_KEYS",
    "STATE_TABLES",
    "TWIN_INDEX_TABLES",
    "TWIN_MEASUREMENTS",
    "TWIN_TAGGED",
    "Admit",
    "And",
    "Compare",
    "Cursor",
    "Dialect",
    "ExperimentSpec",
    "Experiments",
    "Filter",
    "HasProduct",
    "HasTag",
    "IndexOp",
    "IndexPage",
    "IndexReader",
    "InfluxStore",
    "Migration",
    "Not",
    "Observe",
    "OneOf",
    "Or",
    "Position",
    "PostgresStateStore",
    "Result",
    "SegmentProfiles",
    "SegmentSizes",
    "ShareRule",
    "SharedView",
    "SortKey",
    "SqliteStateStore",
    "StateConflictError",
    "StateSchemaError",
    "StateStore",
    "StateStoreError",
    "StateUnavailableError",
    "TwinColumn",
    "TwinIndex",
    "TwinReader",
    "Tx",
    "assign",
    "bucket_advice",
    "bucket_count",
    "check_index",
    "chunks",
    "consent_line",
    "copy_state",
    "count_values",
    "device_line",
    "format_value",
    "index_brands",
    "index_lock",
    "marks",
    "matching_twins",
    "open_state_retrying",
    "open_state_store",
    "parse_duration_ms",
    "parse_twin_lines",
    "quote_ident",
    "quote_str",
    "rebuild_index",
    "share_alerts",
    "state_of",
    "state_store_from",
    "stored_value",
    "tag_fields",
    "twin_lines",
    "typed_value",
    "wait_for_state",
]
