"""``twinsync hub``: run the hub, provision devices, manage keys, roll out models, check
configuration. (``twinsync hub train`` is routed to twinsync.training by ``twinsync``.)

One module per command group: ``_run`` (run, check-config), ``_devices`` (provision,
device list/revoke), ``_broker`` (broker-auth), ``_keys`` (keys, brand-key, apikey),
``_models`` (models, rollout), ``_state`` (state migrate), ``_index`` (index rebuild,
check); ``_common`` holds the parser
that answers every mistake in one line and opens the state store. Each group adds its
subcommands with their handler; :func:`main` loads the configuration, runs the handler
and turns any error into one line and exit code 2. A command that needs the shared state
opens the store once, waiting a while for a database that is restarting.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cloud_hub._config import load_hub_config
from protocol import TwinSyncError

from ._broker import add_broker_auth
from ._common import Handler, Parser
from ._devices import add_device, add_provision
from ._index import add_index
from ._keys import add_apikey, add_brand_key, add_keys
from ._models import add_models, add_rollout
from ._run import add_check_config, add_run
from ._state import add_state

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The ``twinsync hub`` argument parser (each subcommand carries its ``handler``)."""
    p = Parser(
        prog="twinsync hub",
        description="The TwinSync cloud hub: merges device deltas into twins in InfluxDB "
        "and serves them over HTTP.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    # In this order in --help.
    for add in (
        add_run,
        add_provision,
        add_keys,
        add_check_config,
        add_models,
        add_rollout,
        add_broker_auth,
        add_brand_key,
        add_apikey,
        add_device,
        add_state,
        add_index,
    ):
        add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``twinsync hub``."""
    args = parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, load_hub_config(args.config))
    except TwinSyncError as exc:
        print(f"twinsync hub: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file or directory the configuration names cannot be used (permissions, a
        # missing parent, a full disk): one line naming it, not a traceback.
        where = f" {exc.filename}" if exc.filename else ""
        print(f"twinsync hub: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
