"""What the state store raises: the one boundary where sqlite3 and psycopg errors end.

cloud_hub.CloudHubError
├── ConfigError                  state.url, its credentials or its file are wrong: fix the
│                                named setting (a restart cannot help)
└── StateStoreError              the shared state store failed a request
    ├── StateUnavailableError    cannot reach it, no connection or lock in time, the file
    │                            cannot be opened now: retry later (``retryable``)
    ├── StateConflictError       a constraint refused the change (a key that exists, a
    │                            missing value): the change was not made
    └── StateSchemaError         the database's schema is newer than this hub, or a
                                 migration failed: upgrade the hub / read the message

Callers never see ``sqlite3.Error`` or ``psycopg.Error``: each backend translates them in
one function (``_translate``), keeping the original as ``__cause__`` for the log.

Through the API's one error path (cloud_hub._errors): ``StateUnavailableError`` is 503
``state_unavailable`` with ``Retry-After`` and a fixed message (its own text names the
database host and file, which are the operator's, not the client's: it is logged); the
others are the hub's own failure (``status`` None: logged with their traceback, answered
500 ``internal_error`` without their text).
"""

from __future__ import annotations

from cloud_hub._errors import Answer, CloudHubError

__all__ = [
    "StateConflictError",
    "StateSchemaError",
    "StateStoreError",
    "StateUnavailableError",
]


class StateStoreError(CloudHubError):
    """The shared state store (SQLite file or PostgreSQL) failed a request."""

    reason = "state"
    #: whether the same request may succeed later unchanged
    retryable = False


class StateUnavailableError(StateStoreError):
    """The store cannot be reached or is busy past the timeout; retry later."""

    reason = "state_unavailable"
    retryable = True
    status = 503

    def answer(self) -> Answer:
        """503 with a fixed message: the text (database host, file) stays in the log."""
        return Answer(
            503,
            "state_unavailable",
            "the hub's state store is unavailable; retry later",
            {"Retry-After": "5"},
        )


class StateConflictError(StateStoreError):
    """A uniqueness or not-null constraint refused the change; nothing was changed."""

    reason = "state_conflict"


class StateSchemaError(StateStoreError):
    """The database's schema cannot be used by (or brought up to) this hub's version."""

    reason = "state_schema"
