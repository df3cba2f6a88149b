"""The blocking client: :class:`Client`, every method one call of _calls.py sent over
_http.py's transport (standard library only), retried as :class:`RetryPolicy` says."""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

from ._calls import Calls
from ._http import HttpTransport
from ._sync_lab import LabMethods
from ._sync_models import ModelMethods
from ._sync_privacy import PrivacyMethods
from ._sync_segments import SegmentMethods
from ._sync_triggers import TriggerMethods
from ._sync_twins import TwinMethods
from ._transport import DEFAULT_TIMEOUT_S, Credentials
from ._wire import (
    BaseUrl,
    RetryPolicy,
    resolve_api_key,
)

__all__ = ["Client"]

T = TypeVar("T")


class Client(
    TwinMethods,
    SegmentMethods,
    PrivacyMethods,
    ModelMethods,
    TriggerMethods,
    LabMethods,
):
    """A brand backend's client of the hub's API, blocking (see :mod:`twinsync.client`).

    ``api_key`` defaults to ``TWINSYNC_API_KEY``. ``timeout``: seconds to connect and
    between bytes of an answer. ``retry``: when idempotent calls are sent again (503, no
    answer). ``ssl_context``: for an ``https`` hub with a private CA. ``sleep``: how
    retries wait (tests pass one that records).
    """

    def __init__(
        self,
        url: str,
        brand: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._creds = Credentials(BaseUrl.parse(url), resolve_api_key(api_key))
        self._transport = HttpTransport(self._creds, timeout=timeout, ssl_context=ssl_context)
        self._calls = Calls(brand)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = random.Random()

    @property
    def brand(self) -> str:
        """The brand this client's key belongs to."""
        return self._calls.brand

    def __repr__(self) -> str:
        return f"Client({str(self._creds.base)!r}, brand={self.brand!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (a connection per request); for symmetry with AsyncClient."""
