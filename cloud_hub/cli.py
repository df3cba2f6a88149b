"""``twinsync hub``: run the hub, provision devices, manage keys, roll out models, check
configuration. (``twinsync hub train`` is routed to twinsync.training by ``twinsync``.)"""

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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from cloud_hub.api import SCOPES, ApiKeys
from cloud_hub.models import ModelRepo, RolloutStore, Target
from cloud_hub.privacy import Relinks
from cloud_hub.registry import (
    BrokerSetup,
    DeviceRecord,
    FileOwner,
    Registry,
    broker_setup,
    ensure_hub_key,
    provision_device,
    provision_devices,
    retire_in_bundles,
    rotate_brand_key,
)
from cloud_hub.store import InfluxStore
from protocol import PRODUCTS, TwinSyncError

from ._config import HubConfig, load_hub_config
from ._errors import ConfigError, RegistryError, RolloutError
from ._hub import Hub
from ._metrics import Metrics

__all__ = ["main", "parser"]

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
        prog="twinsync hub",
        description="The TwinSync cloud hub: merges device deltas into twins in InfluxDB "
        "and serves them over HTTP.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", type=Path, help="hub.toml (env TWINSYNC_HUB__* overrides)")

    run = sub.add_parser("run", help="run one hub instance until SIGTERM/SIGINT")
    config_arg(run)
    run.add_argument("--log-level", type=_log_level, default="INFO", help="|".join(_LOG_LEVELS))

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

    keys = sub.add_parser(
        "keys", help="create the hub signing key if missing; print its public key"
    )
    config_arg(keys)

    check = sub.add_parser("check-config", help="validate the config and print it (no secrets)")
    config_arg(check)

    models = sub.add_parser(
        "models",
        help="add trained models (a 'twinsync train --out' directory) to the rollout repository",
    )
    config_arg(models)
    models.add_argument("--brand", required=True)
    models.add_argument("dir", type=Path, help="directory of <name>.onnx + <name>.manifest.json")

    rollout = sub.add_parser(
        "rollout",
        help="roll a model out to devices (running hubs send it within models.reconcile_s)",
    )
    config_arg(rollout)
    rollout.add_argument("--brand", required=True)
    rollout.add_argument("--model", required=True, help="name@version, e.g. churn-coffee@2")
    target = rollout.add_mutually_exclusive_group(required=True)
    target.add_argument("--all", action="store_true", help="every device of the model's product")
    target.add_argument("--percent", type=float, help="this share of them (0 < P <= 100)")
    target.add_argument("--cohort", help="the devices of this cohort")
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
    broker.add_argument("--mode", type=_file_mode, help="--out: file mode, e.g. 0640")

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

    apikey = sub.add_parser("apikey", help="create, list or revoke a brand's API keys")
    config_arg(apikey)
    apikey.add_argument("action", choices=("create", "list", "revoke"))
    apikey.add_argument("--brand", required=True)
    apikey.add_argument("--name", default="", help="create: who or what uses the key")
    apikey.add_argument(
        "--scopes", default="read", help=f"create: comma-separated, of {','.join(SCOPES)}"
    )
    apikey.add_argument("--key-id", default="", help="revoke: the key's id")

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
    return p


def _apikey(args: argparse.Namespace, config: HubConfig) -> int:
    keys = ApiKeys(config.registry.path)
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


def _device(args: argparse.Namespace, config: HubConfig) -> int:
    registry = Registry(config.registry.path)
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
            f"no device {args.brand}/{args.device} in the registry {config.registry.path} "
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


def _file_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"{value!r} is no file mode: give octal, e.g. 0640")
    return mode


def _broker_auth(args: argparse.Namespace, config: HubConfig) -> int:
    if args.out is None and not args.apply:
        raise ConfigError("broker-auth needs --out DIR, --apply or both")
    hub_ids = [i.strip() for i in args.hub_ids.split(",") if i.strip()] if args.hub_ids else None
    owner = FileOwner(args.owner, args.group, args.mode)
    done = broker_setup(
        config, out=args.out, apply=args.apply, bundles=args.bundles, hub_ids=hub_ids, owner=owner
    )
    return _said(done)


def _said(done: BrokerSetup) -> int:
    for line in done.out:
        print(line)
    for note in done.notes:
        print(note, file=sys.stderr)
    return done.status


def _brand_key(args: argparse.Namespace, config: HubConfig) -> int:
    secrets_dir = config.keys.secrets_dir
    if args.action == "rotate":
        epoch = rotate_brand_key(secrets_dir, args.brand, args.bundles)
        print(f"brand {args.brand}: key epoch {epoch}; {len(args.bundles)} bundles moved to it")
        return 0

    async def with_relinks() -> Any:
        async with InfluxStore(config.influx) as store:
            relinks = Relinks(config.registry.path, secrets_dir, store, Metrics())
            if args.action == "status":
                return relinks.status(args.brand)
            if args.epoch is None:
                raise ConfigError("retire needs --epoch")
            if config.influx.create_database:
                await store.ensure_database()  # a brand no hub has stored anything for yet
            return await relinks.retire(
                args.brand, args.epoch, delete_unlinked=args.delete_unlinked
            )

    result = asyncio.run(with_relinks())
    if args.action == "status":
        print(json.dumps(result))
        return 0
    bundles = retire_in_bundles(args.bundles, args.epoch)
    print(
        f"brand {args.brand}: key epoch {args.epoch} retired; {result} unlinked twins deleted; "
        f"{bundles} bundles updated"
    )
    return 0


def _models(args: argparse.Namespace, config: HubConfig) -> int:
    hub_keys = {(key := ensure_hub_key(config.keys.secrets_dir)).kid: key.public}
    repo = ModelRepo(config.registry.path, config.models.dir)
    manifests = sorted(args.dir.glob("*.manifest.json"))
    if not manifests:
        print(f"twinsync hub models: no *.manifest.json in {args.dir}", file=sys.stderr)
        return 1
    for path in manifests:
        onnx = path.with_name(path.name.removesuffix(".manifest.json") + ".onnx")
        try:
            model, warnings = repo.add(args.brand, path.read_bytes(), onnx.read_bytes(), hub_keys)
        except OSError as exc:
            raise RolloutError(f"cannot read {onnx}: {exc.strerror}", reason="io") from exc
        print(model.manifest.ref)
        for warning in warnings:
            print(f"  warning: {warning}")
    return 0


def _rollout(args: argparse.Namespace, config: HubConfig) -> int:
    store = RolloutStore(
        config.registry.path,
        ModelRepo(config.registry.path, config.models.dir),
        Registry(config.registry.path),
    )
    if args.all:
        target = Target.parse({"all": True})
    elif args.percent is not None:
        target = Target.parse({"percent": args.percent})
    else:
        target = Target.parse({"cohort": args.cohort})
    rollout = store.create(args.brand, args.model, target)
    print(json.dumps(rollout.summary()))
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


async def _run(config: HubConfig) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``twinsync hub``."""
    args = parser().parse_args(argv)
    try:
        config = load_hub_config(args.config)
        if args.command == "run":
            logging.basicConfig(
                level=args.log_level.upper(),
                stream=sys.stderr,
                format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            )
            return asyncio.run(_run(config))
        if args.command == "models":
            return _models(args, config)
        if args.command == "rollout":
            return _rollout(args, config)
        if args.command == "apikey":
            return _apikey(args, config)
        if args.command == "brand-key":
            return _brand_key(args, config)
        if args.command == "broker-auth":
            return _broker_auth(args, config)
        if args.command == "keys":
            print(ensure_hub_key(config.keys.secrets_dir).public.hex())
            return 0
        if args.command == "check-config":
            data = config.model_dump(mode="json")
            for section, key in (("mqtt", "password"), ("influx", "password"), ("influx", "token")):
                if data[section][key]:
                    data[section][key] = "***"
            print(json.dumps(data, indent=2))
            return 0
        if args.command == "device":
            return _device(args, config)
        host = args.mqtt_host or config.mqtt.host
        port = args.mqtt_port or config.mqtt.port
        if args.count:
            ids = [(f"{args.device}-{i:04d}", args.product) for i in range(1, args.count + 1)]
        else:
            ids = [(args.device, args.product)]
        # Read first: what --force replaces is reported (its old bundle stops working).
        replaced = Registry(config.registry.path).existing(args.brand, [d for d, _p in ids])
        if args.count:
            made = provision_devices(
                config.registry.path,
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
                    config.registry.path,
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
            broker_status = _said(
                broker_setup(config, out=args.broker_dir, apply=args.broker_apply, bundles=bundles)
            )
        if replaced:
            _replaced_note(replaced, args.broker_apply)
        return broker_status
    except TwinSyncError as exc:
        print(f"twinsync hub: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file or directory the configuration names cannot be used (permissions, a
        # missing parent, a full disk): one line naming it, not a traceback.
        where = f" {exc.filename}" if exc.filename else ""
        print(f"twinsync hub: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
