"""The ``twinsync`` command: one entry point, a subcommand per component.

Each subcommand's module is imported only when it runs, so an edge device (installed with
the ``edge`` extra only) can run ``twinsync edge`` without the hub's dependencies.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# name -> (module with a main(argv) -> int, one-line help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "edge": (
        "edge_agent.cli",
        "run the edge agent daemon on a device (twinsync edge run --config agent.toml)",
    ),
    "hub": (
        "cloud_hub.cli",
        "run the cloud hub, provision devices (twinsync hub run --config hub.toml)",
    ),
    "sim": ("firmware_sim.cli", "simulate a fleet of devices with ground truth"),
    "train": (
        "twinsync.training.cli",
        "train, evaluate and sign the model set (also 'twinsync hub train')",
    ),
    "demo": (
        "twinsync.demo",
        "start broker, database, hub and a simulated fleet; show the twins",
    ),
    "bench": ("bench.run", "measure hub ingest, raw InfluxDB and broker rates on this machine"),
}

_USAGE = """usage: twinsync <command> [options]

TwinSync keeps customer digital twins in sync between connected devices and the cloud.

commands:
{commands}

Run 'twinsync <command> --help' for a command's options.
"""


def _usage() -> str:
    width = max(map(len, _COMMANDS))
    rows = "\n".join(f"  {name.ljust(width)}  {text}" for name, (_, text) in _COMMANDS.items())
    return _USAGE.format(commands=rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand's ``main(argv)``; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(f"twinsync {version('twinsync')}")
        return 0
    name, rest = args[0], args[1:]
    if args[:2] == ["hub", "train"]:
        # Training lives beside the hub (it imports the simulator), under its old name too.
        from twinsync.training.cli import main as train

        return train(args[2:], prog="twinsync hub train")
    if name not in _COMMANDS:
        print(
            f"twinsync: unknown command {name!r}; use one of {', '.join(_COMMANDS)} "
            "(see 'twinsync --help')",
            file=sys.stderr,
        )
        return 2
    module_name, _ = _COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(
            f"twinsync {name}: cannot load {module_name} ({exc}); "
            f"is the right extra installed? e.g. pip install 'twinsync[hub]'",
            file=sys.stderr,
        )
        return 2
    try:
        code: int = module.main(rest)
    except KeyboardInterrupt:
        # Ctrl-C on a command that installs no handler of its own: no traceback.
        return 130
    return code
