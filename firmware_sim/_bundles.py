"""Provisioned device bundles: create them for a fleet, read the brand key they carry."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ._errors import SimulationError

__all__ = ["bundle_identity"]


def bundle_identity(agent_toml: Path) -> tuple[bytes, int]:
    """``(brand_key, epoch)`` of a device bundle: what ground truth pseudonymizes with.

    Reads ``[pseudonym] key_file`` (relative to the bundle) and ``epoch`` from
    ``agent.toml`` the way the agent does (defaults: ``brand.key``, epoch 1).
    """
    path = Path(agent_toml)
    try:
        data = tomllib.loads(path.read_text())
        section = data.get("pseudonym", {})
        key_file = path.parent / section.get("key_file", "brand.key")
        epoch = int(section.get("epoch", 1))
        return key_file.read_bytes(), epoch
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise SimulationError(f"cannot read the brand key of bundle {path}: {exc}") from exc
