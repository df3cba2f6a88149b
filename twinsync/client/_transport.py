"""What both clients share around sending: the key, retries and their logging.

The key lives in :class:`Credentials`, whose ``repr`` hides it; it is sent only as the
``Authorization`` header to the hub the client was made for, and never logged: a retry
is logged with the operation id and the error's code, not the path (which may hold a
twin id) nor any header.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import ApiError, ClientError
from ._wire import BaseUrl, Request, RetryPolicy

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_ANSWER_BYTES",
    "Credentials",
    "log",
    "log_retry",
    "read_source",
]

log = logging.getLogger("twinsync.client")

#: seconds to connect, and between bytes of an answer (a live stream's keepalive comes
#: every 15 s, so the default leaves it twice that)
DEFAULT_TIMEOUT_S = 30.0
#: a larger answer is refused (the largest the hub sends is a 64 MiB model file)
MAX_ANSWER_BYTES = 80 * 1024 * 1024


@dataclass(frozen=True)
class Credentials:
    """Where the hub is, and the key for it (hidden from ``repr``)."""

    base: BaseUrl
    api_key: str = field(repr=False)

    def headers(self, request: Request) -> dict[str, str]:
        """The request's headers with the key."""
        return {**request.headers(), "Authorization": f"Bearer {self.api_key}"}

    def url(self, request: Request) -> str:
        """The request's absolute URL."""
        return f"{self.base}{request.path}"


def log_retry(
    request: Request, error: ClientError, retry: RetryPolicy, attempt: int, wait: float
) -> None:
    """One line about a retry: operation, what failed, when the next try is."""
    what = f"{error.status} {error.code}" if isinstance(error, ApiError) else type(error).__name__
    log.warning(
        "%s: %s; try %d of %d in %.2f s", request.operation, what, attempt + 1, retry.attempts, wait
    )


def read_source(source: Path | bytes | str) -> bytes:
    """A file's bytes (a path), or the contents given (text as UTF-8)."""
    if isinstance(source, Path):
        return source.read_bytes()
    return source.encode() if isinstance(source, str) else source
