"""What every ``twinsync hub`` command shares: the parser that answers a mistake in one
line, the option types, and how a command reports a broker setup."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from cloud_hub._config import HubConfig
from cloud_hub.registry import BrokerSetup
from cloud_hub.store import StateStore, open_state_retrying

__all__ = [
    "LOG_LEVELS",
    "STATE_WAIT_S",
    "Handler",
    "Parser",
    "config_arg",
    "file_mode",
    "log_level",
    "open_state",
    "said",
]

#: a command's body: the parsed options and the loaded configuration -> exit code
Handler = Callable[[argparse.Namespace, HubConfig], int]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: how long a command waits for a state store that is unavailable (a database restarting)
#: before it gives up with the reason, rather than hang an operator's terminal
STATE_WAIT_S = 30.0


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2): what is wrong and where help is, no usage
    block to scroll past. Subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        """Exit 2 with one line naming the mistake and the command's ``--help``."""
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


if TYPE_CHECKING:
    #: what ``Parser.add_subparsers`` returns (the class is generic in the type stubs only)
    Subparsers = argparse._SubParsersAction[Parser]


def log_level(text: str) -> str:
    """``--log-level``: a logging level name, in any case."""
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level; use one of {', '.join(LOG_LEVELS)}"
        )
    return level


def file_mode(value: str) -> int:
    """``--mode``: a file mode in octal (``0640``)."""
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"{value!r} is no file mode: give octal, e.g. 0640")
    return mode


def config_arg(sp: argparse.ArgumentParser) -> None:
    """The ``--config`` option every command takes."""
    sp.add_argument("--config", type=Path, help="hub.toml (env TWINSYNC_HUB__* overrides)")


def said(done: BrokerSetup) -> int:
    """Print what a broker setup did (results on stdout, notes on stderr); its exit code."""
    for line in done.out:
        print(line)
    for note in done.notes:
        print(note, file=sys.stderr)
    return done.status


def open_state(config: HubConfig) -> StateStore:
    """The state store ``config.state`` names, for one command (close it when done: use it
    as a context manager). Waits up to :data:`STATE_WAIT_S` for a database that is
    unavailable; a wrong setting is a one-line error at once."""
    return open_state_retrying(config.state, within_s=STATE_WAIT_S)
