"""Opening the state store ``state.url`` names, migrated to this hub's schema.

The hub and each ``twinsync hub`` command open it once and pass it to everything that
keeps shared state. The database may be down when they start (a host rebooting with its
PostgreSQL): :func:`wait_for_state` (the hub) and :func:`open_state_retrying` (the
command line, for a bounded time) then wait for it, saying so, while a wrong url,
password, database or file (``ConfigError``) and a schema newer than the hub
(``StateSchemaError``) end the start at once: waiting cannot fix them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from pathlib import Path

from cloud_hub._config import StateSettings
from cloud_hub._errors import ConfigError
from cloud_hub._state_url import StateUrl, parse_state_url

from ._state import StateStore
from ._state_errors import StateUnavailableError
from ._state_postgres import PostgresStateStore
from ._state_sqlite import SqliteStateStore

__all__ = [
    "open_state_retrying",
    "open_state_store",
    "state_of",
    "state_store_from",
    "wait_for_state",
]

log = logging.getLogger("cloud_hub.state")

#: first and longest pause between attempts to open a store that is unavailable
_FIRST_DELAY_S = 0.2
_MAX_DELAY_S = 5.0


def open_state_store(
    url: str | StateUrl,
    *,
    password: str = "",
    pool_size: int = 4,
    timeout_s: float = 10.0,
    migrate: bool = True,
) -> StateStore:
    """The store at ``url`` (``sqlite:///file`` or ``postgresql://user@host:port/db``),
    with the migrations it lacks applied (``migrate``; safe when instances start together).

    Raises ConfigError for a wrong url, credentials, database or file (fix the setting),
    StateUnavailableError when the database cannot be reached now (retry), and
    StateSchemaError when it was migrated by a newer hub."""
    if isinstance(url, str):
        try:
            url = parse_state_url(url)
        except ValueError as exc:
            raise ConfigError(f"state.url: {exc}") from None
    store: StateStore
    if url.path is not None:
        if password:
            raise ConfigError("state.password is for PostgreSQL; a SQLite file takes none")
        store = SqliteStateStore(url.path, timeout_s=timeout_s)
    else:
        store = PostgresStateStore(url, password=password, pool_size=pool_size, timeout_s=timeout_s)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


def state_store_from(settings: StateSettings) -> StateStore:
    """The store a resolved config's ``[state]`` section names (``HubConfig.state``)."""
    return open_state_store(
        settings.url,
        password=settings.secret(),
        pool_size=settings.pool_size,
        timeout_s=settings.timeout_s,
    )


def open_state_retrying(settings: StateSettings, *, within_s: float) -> StateStore:
    """:func:`state_store_from`, waiting up to ``within_s`` for a database that is
    unavailable (each try logged, capped jittered backoff); anything else it raises ends
    the wait at once. For the command line: the operator gets an answer in bounded time."""
    deadline = time.monotonic() + within_s
    delay = _FIRST_DELAY_S
    while True:
        try:
            return state_store_from(settings)
        except StateUnavailableError as exc:
            if time.monotonic() + delay > deadline:
                raise
            _waiting(exc, delay)
        time.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, _MAX_DELAY_S)


async def wait_for_state(settings: StateSettings) -> StateStore:
    """:func:`state_store_from`, waiting for as long as the database is unavailable (each
    try in a thread and logged, capped jittered backoff): the hub starts once its
    database does. Anything else it raises ends the wait at once; so does cancellation
    (between tries: a try is bounded by ``state.timeout_s``)."""
    delay = _FIRST_DELAY_S
    while True:
        try:
            return await asyncio.to_thread(state_store_from, settings)
        except StateUnavailableError as exc:
            _waiting(exc, delay)
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, _MAX_DELAY_S)


def _waiting(exc: StateUnavailableError, delay: float) -> None:
    log.warning("state store not available (%s); retrying in %.1fs", exc, delay)


def state_of(state: StateStore | str | os.PathLike[str]) -> StateStore:
    """``state`` itself, or the SQLite state file at that path, opened and migrated.

    For the public functions tools and tests call with the file a one-host hub uses
    (``provision_devices(config.registry.path, ...)``, ``ApiKeys(path)``); the hub and its
    commands pass the store they opened from ``state.url``."""
    if isinstance(state, StateStore):
        return state
    return open_state_store(StateUrl("sqlite", path=Path(state)))
