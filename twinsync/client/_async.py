"""The asyncio client, on aiohttp (``pip install 'twinsync[client]'``).

:class:`AsyncClient` has the methods of :class:`~twinsync.client.Client`, awaited: the
same calls (_calls.py) over _aiohttp.py's transport, whose connection pool is made on
first use and closed by :meth:`AsyncClient.aclose` or the ``async with`` block.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._aiohttp import AiohttpTransport
from ._async_lab import AsyncLabMethods
from ._async_models import AsyncModelMethods
from ._async_privacy import AsyncPrivacyMethods
from ._async_segments import AsyncSegmentMethods
from ._async_triggers import AsyncTriggerMethods
from ._async_twins import AsyncTwinMethods
from ._calls import Calls
from ._transport import DEFAULT_TIMEOUT_S, Credentials
from ._wire import (
    BaseUrl,
    RetryPolicy,
    resolve_api_key,
)

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(
    AsyncTwinMethods,
    AsyncSegmentMethods,
    AsyncPrivacyMethods,
    AsyncModelMethods,
    AsyncTriggerMethods,
    AsyncLabMethods,
):
    """A brand backend's client of the hub's API, for asyncio (the parameters of
    :class:`~twinsync.client.Client`; ``sleep`` is awaited)."""

    def __init__(
        self,
        url: str,
        brand: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._creds = Credentials(BaseUrl.parse(url), resolve_api_key(api_key))
        self._transport = AiohttpTransport(self._creds, timeout=timeout, ssl_context=ssl_context)
        self._calls = Calls(brand)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = random.Random()

    @property
    def brand(self) -> str:
        """The brand this client's key belongs to."""
        return self._calls.brand

    def __repr__(self) -> str:
        return f"AsyncClient({str(self._creds.base)!r}, brand={self.brand!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._transport.aclose()
