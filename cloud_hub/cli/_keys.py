"""Keys: ``twinsync hub keys`` (the hub signing key), ``brand-key`` (pseudonymization key
epochs: status, rotate, retire) and ``apikey`` (a brand's API keys)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud_hub._config import HubConfig
from cloud_hub._errors import ConfigError
from cloud_hub._metrics import Metrics
from cloud_hub.api import SCOPES, ApiKeys
from cloud_hub.privacy import Relinks
from cloud_hub.registry import ensure_hub_key, retire_in_bundles, rotate_brand_key
from cloud_hub.store import InfluxStore, StateStore, TwinIndex

from ._common import config_arg, open_state

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["add_apikey", "add_brand_key", "add_keys"]


def add_keys(sub: Subparsers) -> None:
    """The ``keys`` command."""
    keys = sub.add_parser(
        "keys", help="create the hub signing key if missing; print its public key"
    )
    config_arg(keys)
    keys.set_defaults(handler=_keys)


def add_brand_key(sub: Subparsers) -> None:
    """The ``brand-key`` command."""
    bkey = sub.add_parser(
        "brand-key",
        help="rotate a brand's pseudonymization key, or retire an old epoch",
        description="status: epochs held and twin links per state. rotate: create the next "
        "epoch and move the given device bundles to it (they keep the old key to carry "
        "twins over). retire: stop storing the epoch's twins, delete its links and key "
        "(and, with --delete-unlinked, twins no device carried over), and drop it from "
        "the bundles.",
    )
    config_arg(bkey)
    bkey.add_argument("action", choices=("status", "rotate", "retire"))
    bkey.add_argument("--brand", required=True)
    bkey.add_argument("--epoch", type=int, help="retire: the epoch")
    bkey.add_argument("--delete-unlinked", action="store_true")
    bkey.add_argument(
        "--bundles", nargs="+", type=Path, default=[], help="device bundle directories"
    )
    bkey.set_defaults(handler=_brand_key)


def add_apikey(sub: Subparsers) -> None:
    """The ``apikey`` command."""
    apikey = sub.add_parser("apikey", help="create, list or revoke a brand's API keys")
    config_arg(apikey)
    apikey.add_argument("action", choices=("create", "list", "revoke"))
    apikey.add_argument("--brand", required=True)
    apikey.add_argument("--name", default="", help="create: who or what uses the key")
    apikey.add_argument(
        "--scopes", default="read", help=f"create: comma-separated, of {','.join(SCOPES)}"
    )
    apikey.add_argument("--key-id", default="", help="revoke: the key's id")
    apikey.set_defaults(handler=_apikey)


def _keys(_args: argparse.Namespace, config: HubConfig) -> int:
    print(ensure_hub_key(config.keys.secrets_dir).public.hex())
    return 0


def _apikey(args: argparse.Namespace, config: HubConfig) -> int:
    with open_state(config) as state:
        return _apikey_action(args, ApiKeys(state=state))


def _apikey_action(args: argparse.Namespace, keys: ApiKeys) -> int:
    if args.action == "create":
        scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
        key, token = keys.create(args.brand, args.name or "cli", scopes)
        print(f"key {key.key_id} for {key.brand}, scopes {','.join(sorted(key.scopes))}:")
        print(token)
        print("(shown once: store it now; the hub keeps only its hash)", file=sys.stderr)
    elif args.action == "list":
        for key in keys.list(args.brand):
            state = "revoked" if key.revoked else "active"
            print(f"{key.key_id}  {state:7}  {','.join(sorted(key.scopes)):28}  {key.name}")
    else:
        print(json.dumps(keys.revoke(args.brand, args.key_id).summary()))
    return 0


def _brand_key(args: argparse.Namespace, config: HubConfig) -> int:
    secrets_dir = config.keys.secrets_dir
    if args.action == "rotate":
        epoch = rotate_brand_key(secrets_dir, args.brand, args.bundles)
        print(f"brand {args.brand}: key epoch {epoch}; {len(args.bundles)} bundles moved to it")
        return 0

    async def with_relinks(state: StateStore) -> Any:
        async with InfluxStore(config.influx) as store:
            relinks = Relinks(
                state=state,
                secrets_dir=secrets_dir,
                store=store,
                index=TwinIndex(state=state),
                metrics=Metrics(),
            )
            if args.action == "status":
                return relinks.status(args.brand)
            if args.epoch is None:
                raise ConfigError("retire needs --epoch")
            if config.influx.create_database:
                await store.ensure_database()  # a brand no hub has stored anything for yet
            return await relinks.retire(
                args.brand, args.epoch, delete_unlinked=args.delete_unlinked
            )

    with open_state(config) as state:
        result = asyncio.run(with_relinks(state))
    if args.action == "status":
        print(json.dumps(result))
        return 0
    bundles = retire_in_bundles(args.bundles, args.epoch)
    print(
        f"brand {args.brand}: key epoch {args.epoch} retired; {result} unlinked twins deleted; "
        f"{bundles} bundles updated"
    )
    return 0
