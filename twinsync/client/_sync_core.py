"""What every method of :class:`~twinsync.client.Client` uses: its state and
``_send`` (a call sent, retried as the :class:`RetryPolicy` says); the methods
are in ``_sync_<area>.py``, one mixin per API area."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from ._calls import Calls
from ._errors import ApiError, TransportError
from ._http import HttpTransport
from ._transport import Credentials, log_retry
from ._wire import (
    Call,
    RetryPolicy,
    outcome,
)

__all__ = ["ClientCore"]

T = TypeVar("T")


class ClientCore:
    """The state :class:`Client` sets up and how it sends a call."""

    _creds: Credentials
    _transport: HttpTransport
    _calls: Calls
    _retry: RetryPolicy
    _sleep: Callable[[float], None]
    _rng: random.Random

    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return outcome(call, self._transport.exchange(call.request))
            except (TransportError, ApiError) as exc:
                if not self._retry.retries(call.request, exc, attempt):
                    raise
                wait = self._retry.delay(attempt, exc, self._rng)
                log_retry(call.request, exc, self._retry, attempt, wait)
                self._sleep(wait)
