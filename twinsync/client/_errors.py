"""What the client raises: one root, the hub's answer in attributes.

protocol.TwinSyncError
└── ClientError               root: catch this to catch anything the client raises
    ├── ClientConfigError     no API key, a malformed key or URL (nothing was sent)
    ├── TransportError        no answer: refused, reset, unreachable, TLS
    │   └── RequestTimeoutError   no answer in time
    ├── ResponseError         an answer the client cannot read (not the documented shape)
    └── ApiError              the hub refused: ``status``, ``code``, ``message``
        ├── RequestRefusedError   4xx: change the request
        │   ├── BadRequestError       400, 405, 422: a parameter or body the hub refuses
        │   ├── AuthenticationError   401: no valid key (bad, revoked)
        │   ├── PermissionDeniedError 403: another brand's key, or a missing scope
        │   ├── NotFoundError         404
        │   ├── ConflictError         409
        │   └── PayloadTooLargeError  413
        └── ServerError           5xx: the hub's own trouble
            └── UnavailableError      503: try again later (``retry_after``)

``code`` is the hub's ``error.code`` (stable: branch on it), ``message`` its
``error.message`` (what to change). The API key is never part of a message.
"""

from __future__ import annotations

from protocol import TwinSyncError

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ClientConfigError",
    "ClientError",
    "ConflictError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RequestRefusedError",
    "RequestTimeoutError",
    "ResponseError",
    "ServerError",
    "TransportError",
    "UnavailableError",
    "error_class",
]


class ClientError(TwinSyncError):
    """Root of everything :mod:`twinsync.client` raises."""

    reason = "client"


class ClientConfigError(ClientError):
    """The client cannot be used as configured (no key, a malformed key or URL)."""

    reason = "client_config"


class TransportError(ClientError):
    """The hub did not answer: the connection was refused, reset or timed out."""

    reason = "transport"


class RequestTimeoutError(TransportError):
    """No answer within the client's timeout."""

    reason = "timeout"


class ResponseError(ClientError):
    """The hub answered something the client cannot read as documented."""

    reason = "bad_response"


class ApiError(ClientError):
    """The hub refused the request: its status, code and message.

    ``retry_after`` is the hub's ``Retry-After`` in seconds (None without one);
    ``operation`` the client method (the OpenAPI operation id) that was refused.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        operation: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{operation}: {status} {code}: {message}", reason=code)
        self.status = status
        self.code = code
        self.message = message
        self.operation = operation
        self.retry_after = retry_after


class RequestRefusedError(ApiError):
    """4xx: the request must change (the message says how)."""


class BadRequestError(RequestRefusedError):
    """400 (and 405, 422): a parameter or body the hub refuses."""


class AuthenticationError(RequestRefusedError):
    """401: no key, a malformed, unknown or revoked one."""


class PermissionDeniedError(RequestRefusedError):
    """403: the key belongs to another brand, or lacks the route's scope."""


class NotFoundError(RequestRefusedError):
    """404: the request names something that does not exist."""


class ConflictError(RequestRefusedError):
    """409: the request conflicts with what exists."""


class PayloadTooLargeError(RequestRefusedError):
    """413: the body is larger than the hub takes."""


class ServerError(ApiError):
    """5xx: the hub's own trouble (it logged why)."""


class UnavailableError(ServerError):
    """503: the hub or its databases are unavailable for now; retry later."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: BadRequestError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: BadRequestError,
    503: UnavailableError,
}


def error_class(status: int) -> type[ApiError]:
    """The class an answer with ``status`` (>= 400) is raised as."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else RequestRefusedError
