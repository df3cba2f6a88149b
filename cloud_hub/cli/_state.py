"""``twinsync hub state``: the shared state store. ``migrate`` copies the hub's state from
one store to another, e.g. from the SQLite file of one host to PostgreSQL for several
(docs/hub.md, "Moving to PostgreSQL")."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cloud_hub._config import HubConfig
from cloud_hub._errors import ConfigError
from cloud_hub.store import StateStore, copy_state, open_state_store

from ._common import config_arg, open_state

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["add_state"]


def add_state(sub: Subparsers) -> None:
    """The ``state`` command."""
    state = sub.add_parser(
        "state",
        help="the hub's shared state store: copy it to another (migrate)",
        description="migrate: copy every row of the hub's state (registry, API keys and "
        "audit, privacy requests and tombstones, rollouts, webhooks and their queue, ...) "
        "from the store --from names (default: the config's state.url) into the empty "
        "store --to names, in one transaction. Stop every hub instance first; then set "
        "state.url to the new store and start them.",
    )
    config_arg(state)
    state.add_argument("action", choices=("migrate",))
    state.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="the store to copy (sqlite:///file or postgresql://user@host:port/db); "
        "default: the config's state",
    )
    state.add_argument(
        "--from-password-file", type=Path, help="--from is PostgreSQL: file with its password"
    )
    state.add_argument("--to", required=True, metavar="URL", help="the empty store to fill")
    state.add_argument(
        "--to-password-file", type=Path, help="--to is PostgreSQL: file with its password"
    )
    state.set_defaults(handler=_state)


def _password(path: Path | None, option: str) -> str:
    if path is None:
        return ""
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {option} {path}: {exc.strerror}") from None


def _open(url: str, password: str, config: HubConfig) -> StateStore:
    return open_state_store(url, password=password, pool_size=1, timeout_s=config.state.timeout_s)


def _state(args: argparse.Namespace, config: HubConfig) -> int:
    if args.source is None:
        if args.from_password_file is not None:
            raise ConfigError("--from-password-file goes with --from")
        source = open_state(config)
    else:
        source = _open(
            args.source, _password(args.from_password_file, "--from-password-file"), config
        )
    with source:
        target = _open(args.to, _password(args.to_password_file, "--to-password-file"), config)
        with target:
            if source.url == target.url:
                raise ConfigError(f"--to names the store being copied ({target.url})")
            counts = copy_state(source, target)
    for table, rows in counts.items():
        print(f"{table:18} {rows}")
    print(
        f"copied {sum(counts.values())} rows from {source.url} to {target.url}; now set "
        f'state.url = "{args.to}" (with state.password_file for PostgreSQL) in every '
        "instance's hub.toml and start them"
    )
    return 0
