"""``twinsync hub index``: the twin query index against InfluxDB. ``rebuild`` fills it
from InfluxDB (a deployment that ran before the index existed, or recovery); ``check``
lists where it differs from InfluxDB (docs/hub.md, "Twin query index")."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from cloud_hub._config import HubConfig
from cloud_hub.privacy import index_gate
from cloud_hub.store import (
    InfluxStore,
    StateStore,
    TwinIndex,
    check_index,
    index_brands,
    rebuild_index,
)
from protocol import SystemClock

from ._common import config_arg, open_state

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["add_index"]


def add_index(sub: Subparsers) -> None:
    """The ``index`` command."""
    index = sub.add_parser(
        "index",
        help="the twin query index: rebuild it from InfluxDB, or check it against InfluxDB",
        description="rebuild: empty each brand's twin query index and fill it from the last "
        "values InfluxDB holds (erased twins, blocked fields and values past retention "
        "stay out); hubs may keep running. check: compare each brand's index with "
        "InfluxDB and list the differences (exit 1 if there are any).",
    )
    config_arg(index)
    index.add_argument("action", choices=("rebuild", "check"))
    index.add_argument(
        "--brand",
        action="append",
        default=[],
        help="only this brand (repeat for more); default: every brand InfluxDB holds twins of",
    )
    index.set_defaults(handler=_index)


def _index(args: argparse.Namespace, config: HubConfig) -> int:
    with open_state(config) as state:
        return asyncio.run(_run(args, config, state))


async def _run(args: argparse.Namespace, config: HubConfig, state: StateStore) -> int:
    index = TwinIndex(state=state)
    async with InfluxStore(config.influx) as store:
        if args.action == "rebuild":
            # The privacy tables decide what may be indexed, as at ingest; values past
            # their class's retention limit stay out (a sweep may be deleting them now).
            admit = index_gate(None, retention=config.retention.limits_ms(), clock=SystemClock())
            done = await rebuild_index(index, store, admit=admit, brands=args.brand)
            for brand, twins in done.items():
                print(f"brand {brand}: {twins} twins indexed")
            if not args.brand:
                await asyncio.to_thread(index.mark_complete, True)
                print("the twin query index holds every brand InfluxDB holds twins of")
            return 0
        status = 0
        for brand in args.brand or await index_brands(store):
            differences = await check_index(state, store, brand)
            for line in differences:
                print(f"brand {brand}: {line}")
            if differences:
                status = 1
            else:
                print(f"brand {brand}: the twin query index equals InfluxDB")
        return status
