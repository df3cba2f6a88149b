"""``twinsync hub broker-auth``: the broker's accounts from the device registry."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cloud_hub._config import HubConfig
from cloud_hub._errors import ConfigError
from cloud_hub.registry import FileOwner, broker_setup

from ._common import config_arg, file_mode, open_state, said

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["add_broker_auth"]


def add_broker_auth(sub: Subparsers) -> None:
    """The ``broker-auth`` command."""
    broker = sub.add_parser(
        "broker-auth",
        help="broker accounts from the device registry (mosquitto's Dynamic Security plugin)",
        description="One broker account per device, bound to its client id and confined "
        "to its own topics; one per hub instance; the admin. --out writes the plugin's file "
        "for a broker's (re)start; --apply changes the running broker at once (run it after "
        "provisioning or revoking devices).",
    )
    config_arg(broker)
    broker.add_argument("--out", type=Path, help="directory for dynamic-security.json")
    broker.add_argument(
        "--apply", action="store_true", help="reconcile the running broker (mqtt.* of the config)"
    )
    broker.add_argument(
        "--bundles",
        nargs="+",
        type=Path,
        default=[],
        help="--apply: device bundles (or directories of them) holding new devices' passwords",
    )
    broker.add_argument(
        "--hub-ids",
        help="comma-separated client ids of every hub instance, one account each "
        "(remembered; default: the remembered list, else mqtt.client_id)",
    )
    broker.add_argument("--owner", help="--out: the file's owner (user name or uid)")
    broker.add_argument(
        "--group", help="--out: the file's group, e.g. mosquitto (kept on later rewrites)"
    )
    broker.add_argument("--mode", type=file_mode, help="--out: file mode, e.g. 0640")
    broker.set_defaults(handler=_broker_auth)


def _broker_auth(args: argparse.Namespace, config: HubConfig) -> int:
    if args.out is None and not args.apply:
        raise ConfigError("broker-auth needs --out DIR, --apply or both")
    hub_ids = [i.strip() for i in args.hub_ids.split(",") if i.strip()] if args.hub_ids else None
    owner = FileOwner(args.owner, args.group, args.mode)
    with open_state(config) as state:
        done = broker_setup(
            config,
            out=args.out,
            apply=args.apply,
            bundles=args.bundles,
            hub_ids=hub_ids,
            owner=owner,
            state=state,
        )
    return said(done)
