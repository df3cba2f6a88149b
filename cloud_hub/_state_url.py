"""``state.url``: where the hub's shared state lives, a SQLite file or a PostgreSQL database.

Parsed here, in the core, so both the configuration (which validates it at start-up) and
the state store (``cloud_hub.store``, which opens it) read it one way. A url never holds a
password: that is ``state.password_file`` or ``TWINSYNC_HUB__STATE__PASSWORD``, so the url
can be shown by ``check-config``, in logs and in error messages.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["PG_OPTIONS", "StateUrl", "parse_state_url"]

#: libpq connection options a PostgreSQL ``state.url`` may carry (``?sslmode=verify-full``)
PG_OPTIONS = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "target_session_attrs"}
)


@dataclass(frozen=True, slots=True)
class StateUrl:
    """A parsed ``state.url``: a SQLite file or a PostgreSQL database (never a password)."""

    scheme: Literal["sqlite", "postgresql"]
    #: the SQLite file (relative until the config is resolved)
    path: Path | None = None
    host: str = ""
    port: int = 5432
    user: str = ""
    database: str = ""
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.path is not None:
            return f"sqlite:///{self.path}"
        query = f"?{urllib.parse.urlencode(self.options)}" if self.options else ""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}{query}"


def parse_state_url(url: str) -> StateUrl:
    """``sqlite:///relative.sqlite``, ``sqlite:////absolute.sqlite`` or
    ``postgresql://user@host[:port]/database[?sslmode=...]``; ValueError says what to change."""
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:///")
        if path == url or not path or path == ":memory:" or "?" in path:
            raise ValueError(
                "a SQLite url is sqlite:/// and the file's path: "
                '"sqlite:///state.sqlite" (next to hub.toml) or "sqlite:////var/lib/twinsync/'
                'state.sqlite" (absolute); every instance must open the same file'
            )
        return StateUrl("sqlite", path=Path(path))
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"use sqlite:/// or postgresql://, not {parts.scheme or url!r}")
    if parts.password is not None:
        # A password in the URL would be shown by check-config and could reach logs.
        raise ValueError(
            "the url must not hold a password: put it in state.password_file or "
            "TWINSYNC_HUB__STATE__PASSWORD"
        )
    try:
        port = parts.port or 5432
    except ValueError:
        raise ValueError(f"the port in {parts.netloc!r} is not 1-65535") from None
    database = parts.path.removeprefix("/")
    if not parts.hostname or not parts.username or not database or "/" in database:
        raise ValueError(
            "a PostgreSQL url names user, host and database: "
            f"postgresql://twinsync@db.example.com:5432/twinsync, got {url!r}"
        )
    options = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - PG_OPTIONS)
    if unknown or parts.fragment:
        raise ValueError(
            f"unknown option(s) {unknown or [parts.fragment]}; "
            f"allowed: {', '.join(sorted(PG_OPTIONS))}"
        )
    return StateUrl(
        "postgresql",
        host=parts.hostname,
        port=port,
        user=urllib.parse.unquote(parts.username),
        database=urllib.parse.unquote(database),
        options=options,
    )
