"""``twinsync hub run`` (one hub instance until SIGTERM/SIGINT) and ``check-config``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import signal
import socket
import sys
from typing import TYPE_CHECKING

from cloud_hub._config import HubConfig
from cloud_hub._errors import ConfigError
from cloud_hub._hub import Hub

from ._common import LOG_LEVELS, config_arg, log_level

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["add_check_config", "add_run"]


def add_run(sub: Subparsers) -> None:
    """The ``run`` command."""
    run = sub.add_parser("run", help="run one hub instance until SIGTERM/SIGINT")
    config_arg(run)
    run.add_argument("--log-level", type=log_level, default="INFO", help="|".join(LOG_LEVELS))
    run.set_defaults(handler=_run)


def add_check_config(sub: Subparsers) -> None:
    """The ``check-config`` command."""
    check = sub.add_parser("check-config", help="validate the config and print it (no secrets)")
    config_arg(check)
    check.set_defaults(handler=_check_config)


def _run(args: argparse.Namespace, config: HubConfig) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_serve(config))


def _check_config(_args: argparse.Namespace, config: HubConfig) -> int:
    data = config.model_dump(mode="json")
    for section, key in (("mqtt", "password"), ("influx", "password"), ("influx", "token")):
        if data[section][key]:
            data[section][key] = "***"
    print(json.dumps(data, indent=2))
    return 0


def _bind_error(exc: OSError, config: HubConfig) -> ConfigError | None:
    """The API listener's bind failure as a ConfigError naming the setting, else None."""
    api = config.api
    if isinstance(exc, socket.gaierror):
        return ConfigError(
            f"api.host {api.host} does not resolve ({exc.strerror}): set api.host or "
            "TWINSYNC_HUB__API__HOST"
        )
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"api.port {api.port} is in use (address already in use): set api.port or "
            "TWINSYNC_HUB__API__PORT"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            f"api.host {api.host} is not an address of this machine (cannot assign "
            "requested address): set api.host or TWINSYNC_HUB__API__HOST"
        )
    if exc.errno == errno.EACCES and "bind" in str(exc):
        return ConfigError(
            f"api.port {api.port} needs privileges (permission denied): set api.port above "
            "1023 or TWINSYNC_HUB__API__PORT"
        )
    return None


async def _serve(config: HubConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Hub(config) as hub:
            waiter = asyncio.create_task(hub.wait())
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (waiter, stopper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if waiter in done and waiter.exception() is not None:
                logging.getLogger("cloud_hub").error("hub failed: %s", waiter.exception())
                return 1
    except OSError as exc:
        # The API listener's bind failure reaches us as the OS said it; the operator
        # needs the setting to change, not a traceback.
        error = _bind_error(exc, config)
        if error is None:
            raise
        raise error from exc
    return 0
