"""``twinsync hub provision`` (device identities and bundles) and ``device list|revoke``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cloud_hub._config import HubConfig
from cloud_hub._errors import ConfigError, RegistryError
from cloud_hub._state_url import StateUrl
from cloud_hub.registry import (
    DeviceRecord,
    Registry,
    broker_setup,
    provision_device,
    provision_devices,
)
from protocol import PRODUCTS

from ._common import config_arg, open_state, said

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["add_device", "add_provision"]


def add_provision(sub: Subparsers) -> None:
    """The ``provision`` command."""
    prov = sub.add_parser("provision", help="create device identities and agent bundles")
    config_arg(prov)
    prov.add_argument("--brand", required=True)
    prov.add_argument("--device", required=True, help="device id, or prefix with --count")
    prov.add_argument("--product", required=True, choices=sorted(PRODUCTS))
    prov.add_argument("--out", type=Path, required=True, help="bundle directory")
    prov.add_argument(
        "--count", type=int, default=0, help="provision N devices <device>-0001.. into <out>/<id>/"
    )
    prov.add_argument(
        "--broker-dir",
        type=Path,
        default=None,
        help="also rewrite the broker's Dynamic Security file there (as 'broker-auth --out')",
    )
    prov.add_argument(
        "--broker-apply",
        action="store_true",
        help="also create the new devices on the running broker (as 'broker-auth --apply')",
    )
    prov.add_argument("--mqtt-host", default=None, help="broker host written into agent.toml")
    prov.add_argument("--mqtt-port", type=int, default=None)
    prov.add_argument(
        "--force",
        action="store_true",
        help="re-provision devices already in the registry: new device key and broker "
        "password; their current bundles stop working",
    )
    prov.set_defaults(handler=_provision)


def add_device(sub: Subparsers) -> None:
    """The ``device`` command."""
    device = sub.add_parser(
        "device",
        help="list provisioned devices, or revoke one",
        description="list: every device (brand, id, product, when provisioned, revoked or "
        "not; never a secret). revoke: running hubs refuse the device's messages from "
        "then on; 'broker-auth --apply' then shuts it out of the broker too.",
    )
    config_arg(device)
    device.add_argument("action", choices=("list", "revoke"))
    device.add_argument("--brand", help="list: only this brand; revoke: required")
    device.add_argument("--device", help="revoke: the device id")
    device.set_defaults(handler=_device)


def _provision(args: argparse.Namespace, config: HubConfig) -> int:
    host = args.mqtt_host or config.mqtt.host
    port = args.mqtt_port or config.mqtt.port
    if args.count:
        ids = [(f"{args.device}-{i:04d}", args.product) for i in range(1, args.count + 1)]
    else:
        ids = [(args.device, args.product)]
    with open_state(config) as state:
        # Read first: what --force replaces is reported (its old bundle stops working).
        replaced = Registry(state=state).existing(args.brand, [d for d, _p in ids])
        if args.count:
            made = provision_devices(
                state,
                config.keys.secrets_dir,
                args.brand,
                ids,
                args.out,
                host,
                port,
                force=args.force,
            )
            for path in made.values():
                print(path)
        else:
            print(
                provision_device(
                    state,
                    config.keys.secrets_dir,
                    args.brand,
                    args.device,
                    args.product,
                    args.out,
                    host,
                    port,
                    force=args.force,
                )
            )
        broker_status = 0
        if args.broker_dir is not None or args.broker_apply:
            bundles = [args.out / d for d, _p in ids] if args.count else [args.out]
            done = broker_setup(
                config, out=args.broker_dir, apply=args.broker_apply, bundles=bundles, state=state
            )
            broker_status = said(done)
    if replaced:
        _replaced_note(replaced, args.broker_apply)
    return broker_status


def _replaced_note(replaced: list[DeviceRecord], broker_applied: bool) -> None:
    """Tell the operator what ``provision --force`` did to the devices it replaced."""
    names = ", ".join(f"{r.brand}/{r.device}" for r in replaced[:3])
    more = f" and {len(replaced) - 3} more" if len(replaced) > 3 else ""
    broker = (
        "done (--broker-apply)"
        if broker_applied
        else "run 'twinsync hub broker-auth --apply --bundles <the new bundles>'"
    )
    print(
        f"re-provisioned {names}{more} with new keys: running hubs refuse the old bundle "
        f"within a second; to shut it out of the broker, {broker}",
        file=sys.stderr,
    )


def _device(args: argparse.Namespace, config: HubConfig) -> int:
    with open_state(config) as state:
        return _device_action(args, Registry(state=state), config.state.target)


def _device_action(args: argparse.Namespace, registry: Registry, where: StateUrl) -> int:
    if args.action == "list":
        rows = [
            (
                r.brand,
                r.device,
                r.product,
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r.created_ms / 1000)),
                "revoked" if r.revoked else "active",
            )
            for r in registry.devices(args.brand)
        ]
        header = ("brand", "device", "product", "provisioned", "state")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        return 0
    if not args.brand or not args.device:
        raise ConfigError("device revoke needs --brand and --device")
    before = registry.get(args.brand, args.device)
    if not registry.revoke(args.brand, args.device):
        raise RegistryError(
            f"no device {args.brand}/{args.device} in the registry ({where}) "
            "('twinsync hub device list' shows them)"
        )
    if before is not None and before.revoked:
        print(f"{args.brand}/{args.device} was already revoked")
        return 0
    print(f"revoked {args.brand}/{args.device}")
    print(
        "running hubs refuse its messages within a second; to shut it out of the broker "
        "too, run 'twinsync hub broker-auth --apply' (deletes its account, disconnects it)",
        file=sys.stderr,
    )
    return 0
