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

from protocol import TwinSyncError

from ._agent import Agent
from ._config import AgentConfig, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    run.add_argument("--log-level", default="INFO")
    check = sub.add_parser("check-config", help="validate config and keys; print it (no secrets)")
    check.add_argument("--config", type=Path, required=True)
    return p


async def _run(config: AgentConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Agent(config) as agent:
        if agent.ingest_port:
            # Printed for supervisors and tests that configured port 0.
            print(json.dumps({"ingest_port": agent.ingest_port}), flush=True)
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``twinsync edge``."""
    args = _parser().parse_args(argv)
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
