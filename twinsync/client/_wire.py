"""The client's sans-I/O core: requests as data, answers into results or errors.

Nothing here touches a socket: _calls.py builds :class:`Call` values (a
:class:`Request` and how to read its answer), the two transports (_sync.py on the
standard library, _async.py on aiohttp) send them, and :func:`outcome` turns what came
back into a typed result or the :class:`~twinsync.client.ApiError` the hub's error
body describes. Retry decisions and delays (:class:`RetryPolicy`) are pure too, so
they are tested without waiting.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from ._errors import (
    ApiError,
    ClientConfigError,
    ClientError,
    ResponseError,
    TransportError,
    UnavailableError,
    error_class,
)

__all__ = [
    "API_KEY_ENV",
    "BaseUrl",
    "Call",
    "Request",
    "Response",
    "RetryPolicy",
    "api_error",
    "bytes_result",
    "json_body",
    "json_result",
    "multipart",
    "outcome",
    "query",
    "quote",
    "resolve_api_key",
]

#: where the API key is read from when none is passed
API_KEY_ENV = "TWINSYNC_API_KEY"
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
#: how much of a body that is not the error shape an error message quotes
_QUOTE = 200


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, without the key (the client adds it when it sends)."""

    #: the OpenAPI operation id (the client method): logged instead of the path
    operation: str
    method: str
    #: path and query, percent-encoded, below the base URL
    path: str
    #: kept out of repr: a privacy request's body holds the customer's identifier
    body: bytes | None = field(default=None, repr=False)
    content_type: str | None = None
    #: safe to send again after a 503 or a lost connection
    idempotent: bool = False
    accept: str = "application/json"
    last_event_id: str | None = None

    def headers(self) -> dict[str, str]:
        """Every header but ``Authorization``."""
        out = {"Accept": self.accept, "User-Agent": "twinsync-client"}
        if self.content_type is not None:
            out["Content-Type"] = self.content_type
        if self.last_event_id is not None:
            out["Last-Event-ID"] = self.last_event_id
        return out


@dataclass(frozen=True, slots=True)
class Response:
    """What the hub answered (header names in lower case)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A request and how to read its successful answer."""

    request: Request
    parse: Callable[[Response], T]


def outcome(call: Call[T], response: Response) -> T:
    """The result of ``call`` from ``response``; raises the error it describes."""
    if response.status >= 400:
        raise api_error(response, call.request.operation)
    return call.parse(response)


def api_error(response: Response, operation: str) -> ApiError:
    """The error an answer of status >= 400 is: the hub's code and message, or (a proxy's
    page, not the hub's error shape) ``http_<status>`` and the start of its text."""
    code, message = f"http_{response.status}", response.body[:_QUOTE].decode("utf-8", "replace")
    try:
        body = json.loads(response.body)
        error = body["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, TypeError, KeyError):
        pass
    retry_after = None
    raw = response.headers.get("retry-after", "")
    if raw.isascii() and raw.isdigit():
        retry_after = float(raw)
    return error_class(response.status)(
        response.status, code, message, operation=operation, retry_after=retry_after
    )


def json_result(model: type[M]) -> Callable[[Response], M]:
    """Read a JSON answer as ``model`` (:class:`ResponseError` when it is not one)."""

    def parse(response: Response) -> M:
        try:
            return model.model_validate_json(response.body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise ResponseError(
                f"the answer ({response.status}) is not a {model.__name__}: {problems}"
            ) from None

    return parse


def bytes_result(response: Response) -> bytes:
    """The answer's bytes (a model file)."""
    return response.body


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and after how long a call is sent again.

    Only idempotent calls (reads, ``put_cohort``, ``revoke_key``), and only when the hub
    answered 503 or did not answer at all: anything else would repeat a change, or an
    error that repeating cannot fix. Delays double from ``backoff_s`` up to
    ``max_backoff_s``, each drawn between half and all of that (so clients that failed
    together do not retry together), and are at least the hub's ``Retry-After`` (capped
    at ``max_backoff_s`` too).
    """

    #: tries in all (1: never retry)
    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ClientConfigError(
                "retry: attempts >= 1 and 0 <= backoff_s <= max_backoff_s, got "
                f"{self.attempts}, {self.backoff_s}, {self.max_backoff_s}"
            )

    def retries(self, request: Request, error: ClientError, attempt: int) -> bool:
        """Whether try number ``attempt`` (from 1), which failed with ``error``, is
        followed by another."""
        retryable = isinstance(error, UnavailableError | TransportError)
        return request.idempotent and retryable and attempt < self.attempts

    def delay(self, attempt: int, error: ClientError, rng: random.Random) -> float:
        """Seconds to wait after failed try number ``attempt``."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        wait = rng.uniform(ceiling / 2, ceiling)
        if isinstance(error, ApiError) and error.retry_after is not None:
            wait = max(wait, min(error.retry_after, self.max_backoff_s))
        return wait


def multipart(parts: list[tuple[str, str | None, str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of ``(name, filename, content type, bytes)`` parts
    and its content type."""
    boundary = f"twinsync-{secrets.token_hex(16)}"
    out = bytearray()
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        out += f"Content-Type: {content_type}\r\n\r\n".encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


_KEY = re.compile(r"^[\x21-\x7e]{1,512}$")


def resolve_api_key(api_key: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The key passed, or :data:`API_KEY_ENV`'s; checked to be sendable as a header.

    The message never quotes the key."""
    env = os.environ if environ is None else environ
    key = api_key if api_key is not None else env.get(API_KEY_ENV)
    if not key:
        raise ClientConfigError(
            f"no API key: pass api_key= or set {API_KEY_ENV} (create one with "
            "'twinsync hub apikey create')"
        )
    if _KEY.match(key) is None:
        raise ClientConfigError(
            "the API key must be printable ASCII without spaces (tsk_<id>_<secret>)"
        )
    return key


@dataclass(frozen=True, slots=True)
class BaseUrl:
    """The hub's address, split: ``http(s)://host[:port][/prefix]``."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> BaseUrl:
        """Check and split ``url`` (:class:`ClientConfigError` naming what is wrong)."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ClientConfigError(f"url {url[:100]!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientConfigError(
                f"url must be http(s)://host[:port], e.g. http://localhost:8080; got {url[:100]!r}"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ClientConfigError("url takes no query, fragment or credentials")
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"


def quote(value: str) -> str:
    """A path segment, percent-encoded (a ``/`` in a value cannot change the route)."""
    return urllib.parse.quote(value, safe="")


def query(params: Mapping[str, Any]) -> str:
    """``?a=1&b=2`` of the parameters that are not None (empty without any)."""
    present = {k: v for k, v in params.items() if v is not None}
    return f"?{urllib.parse.urlencode(present)}" if present else ""


def json_body(value: object) -> bytes:
    """A JSON request body."""
    return json.dumps(value, separators=(",", ":")).encode()
