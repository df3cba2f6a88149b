"""Exceptions of the hub, and the HTTP answer each one is.

protocol.TwinSyncError
└── CloudHubError          root of everything the hub raises         500 internal_error
    ├── AuthError          no valid key, another brand's, no scope   401, 403 (400, 404)
    ├── BrokerAdminError   the broker cannot be administered         500 internal_error
    ├── ConfigError        hub.toml / environment invalid            500 internal_error
    ├── IncompleteError    a privacy request could not finish        503
    ├── RegistryError      registry unreadable, device unknown       500 internal_error
    ├── RequestError       a request that cannot be done as asked    400 (404 ... 422, 503)
    │   └── RolloutError   a model upload or rollout request         400 (404, 409, 413, 422)
    └── StoreError         InfluxDB unreachable or refused           503, 400 or 500

- ``AuthError``: 401 without a key or with a bad or revoked one (with a
  ``WWW-Authenticate: Bearer`` challenge), 403 for another brand's key or a missing
  scope, 400/404 for key management mistakes ('apikey create' or the keys routes).
- ``BrokerAdminError`` ('broker-auth --apply'), ``ConfigError`` (fix the named setting)
  and ``RegistryError`` are the command line's and start-up's; should one end a request
  it is the hub's own failure.
- ``IncompleteError``: points of the customer's twins are still stored after every
  delete (a write already on the wire landed); repeating the request is safe.
- ``RequestError``: 400, or 404 when the request names nothing that exists, 409 when it
  conflicts with what does, 413 when it is too large, 422 when a file does not match its
  manifest, 503 when this instance does not serve it (``index_disabled``); ``reason`` is
  the answer's code.
- ``StoreError``: 503 ``store_unavailable`` (with ``Retry-After: 5``) when InfluxDB is
  unreachable, times out or fails; 400 ``query_too_large`` for a read over its own
  limits; 500 ``query_refused`` for any other refusal (a bug).

The HTTP API answers every refusal in one place (cloud_hub.api._errors): a handler or the
guard raises, and the API's error middleware answers ``{"error": {"code", "message"}}``
with :meth:`CloudHubError.answer`, counts it and logs why. An error whose ``status`` is
None is no answer to the client's request but the hub's own failure (a bug, an unreadable
state file, a corrupt key): the middleware logs it with its traceback and answers 500
``internal_error`` without its text. InfluxDB's own text never reaches a client either
(:class:`StoreError` answers with a fixed message).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from protocol import TwinSyncError

__all__ = [
    "Answer",
    "AuthError",
    "BrokerAdminError",
    "CloudHubError",
    "ConfigError",
    "IncompleteError",
    "RegistryError",
    "RequestError",
    "RolloutError",
    "StoreError",
]


class Answer(NamedTuple):
    """The HTTP answer to a request an error ended."""

    status: int
    #: ``error.code`` of the body: short and stable (a client branches on it)
    code: str
    #: ``error.message``: what to change
    message: str
    headers: Mapping[str, str] = {}


class CloudHubError(TwinSyncError):
    """Root of every exception raised by the hub."""

    #: the HTTP status the API answers with; None: not an answer to the client's request
    #: but the hub's own failure (answered 500 ``internal_error``, logged with traceback)
    status: int | None = None

    def answer(self) -> Answer | None:
        """What the API answers a request this error ended with (None: see ``status``)."""
        if self.status is None:
            return None
        return Answer(self.status, self.reason, str(self))


class ConfigError(CloudHubError):
    """The configuration is invalid; the message names the setting."""

    reason = "config"


class BrokerAdminError(CloudHubError):
    """The broker cannot be reached or administered; the message says what to fix."""

    reason = "broker_admin"


class RegistryError(CloudHubError):
    """The device registry cannot answer, or a device is unknown or revoked."""

    reason = "unknown_device"


class StoreError(CloudHubError):
    """InfluxDB is unreachable or refused a request.

    Answered without InfluxDB's own text (it says nothing a client can act on and shows
    how queries are built): ``retryable`` (unreachable, timed out, 5xx) is 503
    ``store_unavailable`` with ``Retry-After``; a read refused for InfluxDB's own limits
    (``max-select-*``) is 400 ``query_too_large``; any other refusal is 500
    ``query_refused`` (every parameter is checked before a query is built: a bug).
    """

    reason = "store"
    status: int

    def __init__(self, message: str, *, retryable: bool = True, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retryable = retryable
        self.status = 503 if retryable else 400 if "max-select-" in message else 500

    def answer(self) -> Answer:
        """The fixed answer for this kind of failure (see the class docstring)."""
        if self.status == 503:
            return Answer(
                503,
                "store_unavailable",
                "the database is unavailable; retry later",
                {"Retry-After": "5"},
            )
        if self.status == 400:
            return Answer(
                400,
                "query_too_large",
                "the database refused to read this much for one request: narrow the range "
                "(start, end) or ask for fewer points",
            )
        return Answer(500, "query_refused", "the database refused this query; the hub logged why")


class RequestError(CloudHubError):
    """A request that cannot be done as asked; ``reason`` is the answer's code and
    ``status`` its HTTP status (400 unless the request names something that does not
    exist, 404, conflicts with what does, 409, is too large, 413, is unprocessable,
    422, or is not served by this instance, 503)."""

    reason = "bad_request"
    status: int

    def __init__(self, message: str, *, reason: str, status: int = 400) -> None:
        super().__init__(message, reason=reason)
        self.status = status


class RolloutError(RequestError):
    """A model upload or rollout request that cannot be done; ``status`` is the HTTP code
    the API answers with."""

    reason = "rollout"


class IncompleteError(CloudHubError):
    """A privacy request could not finish: points of the customer's twins are still in
    InfluxDB (a write already on the wire landed after every delete). Answered 503;
    the request is safe to repeat."""

    reason = "incomplete"
    status = 503


class AuthError(CloudHubError):
    """An API request without a valid key, for another brand, or without the scope.

    ``status`` is the HTTP answer: 401 (no or bad key, with a ``WWW-Authenticate``
    challenge), 403 (wrong brand or scope), or 400/404 for key management mistakes.
    """

    reason = "unauthenticated"
    status: int

    def __init__(self, message: str, *, reason: str, status: int = 401) -> None:
        super().__init__(message, reason=reason)
        self.status = status

    def answer(self) -> Answer:
        """The refusal, with the Bearer challenge when no valid key was sent (401)."""
        headers = {"WWW-Authenticate": 'Bearer realm="twinsync"'} if self.status == 401 else {}
        return Answer(self.status, self.reason, str(self), headers)
