"""``twinsync edge``: run the agent daemon or check its configuration."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from protocol import TwinSyncError

from ._agent import Agent
from ._config import AgentConfig, load_config

__all__ = ["main", "parser"]

log = logging.getLogger("edge_agent")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2): what is wrong and where help is, no usage
    block to scroll past. Subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in _LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level; use one of {', '.join(_LOG_LEVELS)}"
        )
    return level


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="twinsync edge",
        description="The TwinSync edge agent: pseudonymizes signals on the device and syncs "
        "twin deltas to the hub over MQTT.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent until SIGTERM/SIGINT")
    run.add_argument(
        "--config",
        type=Path,
        required=True,
        help="agent.toml (env TWINSYNC_EDGE__SECTION__KEY overrides)",
    )
    run.add_argument("--log-level", type=_log_level, default="INFO", help="|".join(_LOG_LEVELS))
    check = sub.add_parser("check-config", help="validate config and keys; print it (no secrets)")
    check.add_argument("--config", type=Path, required=True)
    return p


async def _run(config: AgentConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Agent(config) as agent:
        listening: dict[str, Any] = {}
        if agent.ingest_port:
            listening["ingest_port"] = agent.ingest_port
        if config.ingest.unix_socket:
            listening["ingest_socket"] = config.ingest.unix_socket
        if listening:
            # One line on stdout once firmware can connect: for supervisors and scripts.
            print(json.dumps(listening), flush=True)
        else:
            log.warning(
                "no local ingest interface: firmware cannot send signals; set "
                'ingest.unix_socket (e.g. "ingest.sock") or ingest.port'
            )
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``twinsync edge``."""
    args = parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "check-config":
            keys = config.keys()
            data = config.model_dump(mode="json")
            if data["mqtt"]["password"]:
                data["mqtt"]["password"] = "***"  # noqa: S105 - masking, not a password
            data["keys"] = {"device_kid": keys.device.kid, "hub_kids": sorted(keys.hub)}
            print(json.dumps(data, indent=2))
            return 0
        logging.basicConfig(
            level=args.log_level.upper(),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return asyncio.run(_run(config))
    except TwinSyncError as exc:
        print(f"twinsync edge: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file or directory the configuration names cannot be used (permissions, a
        # missing parent, a full disk): one line naming it, not a traceback.
        where = f" {exc.filename}" if exc.filename else ""
        print(f"twinsync edge: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
