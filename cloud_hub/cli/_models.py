"""Models: ``twinsync hub models`` (add trained models to the rollout repository) and
``rollout`` (assign one to devices)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cloud_hub._config import HubConfig
from cloud_hub._errors import RolloutError
from cloud_hub.models import ModelRepo, RolloutStore, Target
from cloud_hub.registry import Registry, ensure_hub_key
from protocol import VerifyKey

from ._common import config_arg, open_state

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["add_models", "add_rollout"]


def add_models(sub: Subparsers) -> None:
    """The ``models`` command."""
    models = sub.add_parser(
        "models",
        help="add trained models (a 'twinsync train --out' directory) to the rollout repository",
    )
    config_arg(models)
    models.add_argument("--brand", required=True)
    models.add_argument("dir", type=Path, help="directory of <name>.onnx + <name>.manifest.json")
    models.set_defaults(handler=_models)


def add_rollout(sub: Subparsers) -> None:
    """The ``rollout`` command."""
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
    rollout.set_defaults(handler=_rollout)


def _models(args: argparse.Namespace, config: HubConfig) -> int:
    hub_keys = {(key := ensure_hub_key(config.keys.secrets_dir)).kid: key.public}
    manifests = sorted(args.dir.glob("*.manifest.json"))
    if not manifests:
        print(f"twinsync hub models: no *.manifest.json in {args.dir}", file=sys.stderr)
        return 1
    with open_state(config) as state:
        repo = ModelRepo(state=state, models_dir=config.models.dir)
        _add_models(args, repo, manifests, hub_keys)
    return 0


def _add_models(
    args: argparse.Namespace, repo: ModelRepo, manifests: list[Path], hub_keys: dict[str, VerifyKey]
) -> None:
    for path in manifests:
        onnx = path.with_name(path.name.removesuffix(".manifest.json") + ".onnx")
        try:
            model, warnings = repo.add(args.brand, path.read_bytes(), onnx.read_bytes(), hub_keys)
        except OSError as exc:
            raise RolloutError(f"cannot read {onnx}: {exc.strerror}", reason="io") from exc
        print(model.manifest.ref)
        for warning in warnings:
            print(f"  warning: {warning}")


def _rollout(args: argparse.Namespace, config: HubConfig) -> int:
    if args.all:
        target = Target.parse({"all": True})
    elif args.percent is not None:
        target = Target.parse({"percent": args.percent})
    else:
        target = Target.parse({"cohort": args.cohort})
    with open_state(config) as state:
        store = RolloutStore(
            state=state,
            repo=ModelRepo(state=state, models_dir=config.models.dir),
            registry=Registry(state=state),
        )
        rollout = store.create(args.brand, args.model, target)
    print(json.dumps(rollout.summary()))
    return 0
