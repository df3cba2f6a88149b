"""Brand key epochs on the operator's side: a new key, and the bundles that carry it.

``twinsync hub brand-key rotate`` creates the next epoch's key in the hub's secrets and
rewrites the device bundles it is given: ``brand.key`` becomes the new key, the old one
is kept as ``brand.<epoch>.key`` and listed under ``[pseudonym] previous`` so the agent
carries its customers' twins over (see cloud_hub/privacy/_rekey.py). ``retire`` removes the old
key from bundles once the hub retired the epoch. Bundles reach devices the way they did at
provisioning (the fleet's device management); the agent reads them at start.
"""

from __future__ import annotations

import re
import secrets
import tomllib
from collections.abc import Iterable
from pathlib import Path

from cloud_hub._errors import ConfigError
from protocol import check_brand

from ._provision import _write_secret

__all__ = ["held_epochs", "retire_in_bundles", "rotate_brand_key"]

_SECTION = re.compile(r"^\[pseudonym\]\n(?:(?!\[).*\n?)*", re.MULTILINE)


def held_epochs(secrets_dir: Path, brand: str) -> list[int]:
    """Key epochs held in the secrets for ``brand``, oldest first."""
    folder = Path(secrets_dir) / "brands" / check_brand(brand)
    return sorted(int(p.stem) for p in folder.glob("*.key") if p.stem.isdigit())


def rotate_brand_key(secrets_dir: Path, brand: str, bundles: Iterable[Path]) -> int:
    """Create brand ``brand``'s next key epoch and move ``bundles`` to it; return it."""
    held = held_epochs(secrets_dir, brand)
    if not held:
        raise ConfigError(f"brand {brand} has no key yet: provision a device first")
    epoch = held[-1] + 1
    key = secrets.token_bytes(32)
    folder = Path(secrets_dir) / "brands" / brand
    # Bundles first: if one is broken, no new epoch exists yet and nothing changed.
    plans = [_plan(Path(b), epoch) for b in bundles]
    _write_secret(folder / f"{epoch}.key", key)
    for bundle, current, previous in plans:
        _write_secret(bundle / f"brand.{current}.key", (bundle / "brand.key").read_bytes())
        _write_secret(bundle / "brand.key", key)
        _write_pseudonym(bundle, epoch, [*previous, current])
    return epoch


def retire_in_bundles(bundles: Iterable[Path], epoch: int) -> int:
    """Remove epoch ``epoch``'s key from ``bundles``; return how many held it."""
    changed = 0
    for bundle in map(Path, bundles):
        current, previous = _epochs_of(bundle)
        if epoch in previous:
            _write_pseudonym(bundle, current, [e for e in previous if e != epoch])
            changed += 1
        (bundle / f"brand.{epoch}.key").unlink(missing_ok=True)
    return changed


def _pseudonym(bundle: Path) -> dict[str, object]:
    try:
        data = tomllib.loads((bundle / "agent.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read bundle {bundle}/agent.toml: {exc}") from exc
    section = data.get("pseudonym", {})
    if not isinstance(section, dict):
        raise ConfigError(f"bundle {bundle}: [pseudonym] is not a table")
    return section


def _epochs_of(bundle: Path) -> tuple[int, list[int]]:
    """The bundle's current key epoch and the previous ones it holds."""
    config = _pseudonym(bundle)
    try:
        current = int(config.get("epoch", 1))  # type: ignore[call-overload]
        entries: list[dict[str, object]] = config.get("previous", [])  # type: ignore[assignment]
        previous = [int(p["epoch"]) for p in entries]  # type: ignore[call-overload]
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"bundle {bundle}: [pseudonym] epochs are malformed: {exc}") from exc
    return current, previous


def _plan(bundle: Path, epoch: int) -> tuple[Path, int, list[int]]:
    current, previous = _epochs_of(bundle)
    key_file = _pseudonym(bundle).get("key_file", "brand.key")
    if key_file != "brand.key" or current >= epoch:
        raise ConfigError(
            f"bundle {bundle} was not made by 'twinsync hub provision' for this brand "
            f"(key_file {key_file!r}, epoch {current})"
        )
    return bundle, current, previous


def _write_pseudonym(bundle: Path, epoch: int, previous: list[int]) -> None:
    lines = ["[pseudonym]", 'key_file = "brand.key"', f"epoch = {epoch}"]
    if previous:
        # Held only while the rotation carries twins over; 'brand-key retire' drops them.
        entries = ", ".join(
            f'{{ epoch = {e}, key_file = "brand.{e}.key" }}' for e in sorted(previous)
        )
        lines.append(f"previous = [{entries}]")
    path = bundle / "agent.toml"
    text = path.read_text()
    section = "\n".join(lines) + "\n\n"
    new, count = _SECTION.subn(section, text, count=1)
    if count == 0:
        new = text.rstrip("\n") + "\n\n" + section
    path.write_text(new.rstrip("\n") + "\n")
