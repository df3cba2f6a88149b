"""``twinsync hub broker-auth`` (and ``provision --broker-dir/--broker-apply``): write the
broker's Dynamic Security file and/or reconcile a running broker, and say what was done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cloud_hub._config import HubConfig
from cloud_hub.store import StateStore, state_store_from

from ._broker_auth import (
    ADMIN_USER,
    broker_accounts,
    ensure_admin_password,
    ensure_hub_password,
    hub_client_ids,
)
from ._dynsec import DYNSEC_FILE, FileOwner, write_dynsec_file
from ._dynsec_apply import DynsecAdmin, apply_accounts, bundle_passwords

__all__ = ["BrokerSetup", "broker_setup"]

_SHOWN = 5  # names listed per line of the summary


def _names(users: Sequence[str]) -> str:
    more = f" and {len(users) - _SHOWN} more" if len(users) > _SHOWN else ""
    return ", ".join(users[:_SHOWN]) + more


@dataclass
class BrokerSetup:
    """What was done: ``out`` lines for stdout, ``notes`` for stderr, the exit status."""

    out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: int = 0


def broker_setup(
    config: HubConfig,
    *,
    out: Path | None,
    apply: bool,
    bundles: Sequence[Path] = (),
    hub_ids: Sequence[str] | None = None,
    owner: FileOwner | None = None,
    state: StateStore | None = None,
) -> BrokerSetup:
    """Write ``out/dynamic-security.json`` and/or apply the accounts to the running
    broker (status 1 when some account could not be applied). The devices come from
    ``state`` (default: the store ``config.state`` names, opened for this call)."""
    secrets_dir = config.keys.secrets_dir
    ids = hub_client_ids(secrets_dir, hub_ids, config.mqtt.client_id)
    if state is None:
        with state_store_from(config.state) as opened:
            accounts = broker_accounts(opened, secrets_dir, ids)
    else:
        accounts = broker_accounts(state, secrets_dir, ids)
    hub_password = ensure_hub_password(secrets_dir)
    admin_password = ensure_admin_password(secrets_dir)
    done = BrokerSetup()
    if out is not None:
        path = write_dynsec_file(Path(out) / DYNSEC_FILE, accounts, owner)
        done.out.append(f"plugin_opt_config_file {path}")
    if apply:
        passwords = bundle_passwords(bundles)
        passwords.update(dict.fromkeys(ids, hub_password.read_text().strip()))
        with DynsecAdmin(config.mqtt, admin_password.read_text().strip()) as admin:
            report = apply_accounts(admin, accounts, passwords)
        done.out.append(
            f"broker {config.mqtt.host}:{config.mqtt.port}: {len(report.created)} accounts "
            f"created, {len(report.updated)} updated, {len(report.deleted)} deleted "
            f"(disconnected), {len(report.roles)} roles changed"
        )
        if report.missing:
            done.status = 1
            done.notes.append(
                f"{len(report.missing)} accounts need their password and were not created "
                f"({_names(report.missing)}): pass their bundles with --bundles, or restart "
                "the broker with the file of 'broker-auth --out'"
            )
        for error in report.errors:
            done.status = 1
            done.notes.append(f"broker refused: {error}")
    done.notes.append(
        f"hub instances {', '.join(ids)}: set mqtt.username = mqtt.client_id (the account "
        f"is bound to it) and mqtt.password_file = '{hub_password}'; admin {ADMIN_USER!r} "
        f"(for --apply): '{admin_password}'"
    )
    return done
