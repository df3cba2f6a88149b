"""The configuration file of mosquitto's Dynamic Security plugin, made from the accounts.

mosquitto's own ``acl_file`` never checks SUBSCRIBE (its source says ``FIXME - implement
ACL subscription strings``), so with it a device could join the hub's shared
subscription group and have the broker drop a share of every brand's uplinks. The plugin
(``mosquitto_dynamic_security.so``, shipped with mosquitto 2.0) checks subscriptions,
including the whole ``$share/<group>/<filter>`` string, and binds each client to one
client id. Default access is deny for publish, receive and subscribe.

The plugin reads this file once, at start-up, as the broker's own user (after it dropped
root), and saves its state back after each change made through its ``$CONTROL`` API:
mosquitto 2.0.11-2.0.15 rewrite the file in place (a buffer one suffix too short turns
``<file>.new`` into the file's own name), 2.0.16+ write ``<file>.new`` and rename it. So
the broker's user must be able to read *and write* the file (and, for 2.0.16+, its
directory): give it to that user (``--owner mosquitto --group mosquitto``); every rewrite
here keeps the owner, group and mode it finds. The file is for a broker's first start,
or for a restart that rebuilds the broker's accounts from the registry; a running broker
is changed with ``broker-auth --apply`` (``cloud_hub.registry._dynsec_apply``).

The registry's ``$7$`` hashes are the plugin's format too (PBKDF2-SHA512, 12-byte salt,
64-byte hash), so devices keep their passwords.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import json
import os
import pwd
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_hub._errors import ConfigError

from ._broker_auth import BrokerAccount, Role

__all__ = [
    "DEFAULT_ACCESS",
    "DYNSEC_FILE",
    "TEXTNAME",
    "FileOwner",
    "client_json",
    "dynsec_config",
    "password_fields",
    "role_json",
    "write_dynsec_file",
]

DYNSEC_FILE = "dynamic-security.json"
#: what a client may do without a rule allowing it: nothing but unsubscribe (which can
#: only drop its own subscriptions)
DEFAULT_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}
#: how managed accounts are marked (``textname``), so --apply leaves others alone
TEXTNAME = "twinsync"


def password_fields(username: str, mosquitto_hash: str) -> dict[str, Any]:
    """The plugin's ``password``/``salt``/``iterations`` from a ``$7$`` hash."""
    parts = mosquitto_hash.split("$")
    try:
        if len(parts) != 5 or parts[1] != "7":
            raise ValueError("not $7$")
        iterations = int(parts[2])
        salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
        if len(salt) != 12 or len(digest) != 64 or iterations < 1:
            raise ValueError("wrong sizes")
    except ValueError:
        raise ConfigError(
            f"the broker password hash of {username!r} is not mosquitto's PBKDF2-SHA512 "
            "form ($7$, 12-byte salt): re-provision the device with --force"
        ) from None
    return {"password": parts[4], "salt": parts[3], "iterations": iterations}


def role_json(role: Role) -> dict[str, Any]:
    """A role as the plugin writes and the ``createRole`` command takes it."""
    return {
        "rolename": role.name,
        "textname": TEXTNAME,
        "acls": [
            {"acltype": a.kind, "topic": a.topic, "priority": 0, "allow": True}
            for a in sorted(role.acls)
        ],
    }


def client_json(account: BrokerAccount) -> dict[str, Any]:
    """A client without its password, as ``createClient``/``modifyClient`` take it."""
    return {
        "username": account.username,
        "clientid": account.client_id,
        "textname": f"{TEXTNAME} {account.kind}",
        "textdescription": f"pw:{account.fingerprint}",
        "roles": [{"rolename": account.role.name, "priority": 0}],
    }


def dynsec_config(accounts: Sequence[BrokerAccount]) -> dict[str, Any]:
    """The plugin's whole configuration for ``accounts``."""
    roles = {a.role.name: a.role for a in accounts}
    return {
        "defaultACLAccess": dict(DEFAULT_ACCESS),
        "clients": [
            {**client_json(a), **password_fields(a.username, a.password_hash)} for a in accounts
        ],
        "groups": [],
        "roles": [role_json(roles[name]) for name in sorted(roles)],
    }


@dataclass(frozen=True, slots=True)
class FileOwner:
    """Who owns the written file: a user and a group (names or numeric ids) and a mode;
    ``None`` keeps what the file had, or for a new file the writer's own and 0640."""

    user: str | None = None
    group: str | None = None
    mode: int | None = None

    def resolve(self, existing: os.stat_result | None) -> tuple[int, int, int]:
        """``(uid, gid, mode)`` for the new file."""
        uid = _uid(self.user) if self.user else (existing.st_uid if existing else os.geteuid())
        gid = _gid(self.group) if self.group else (existing.st_gid if existing else os.getegid())
        if self.mode is not None:
            mode = self.mode
        elif existing is not None:
            # What the broker (or an operator) gave the file, minus any world access: the
            # file holds password hashes.
            mode = stat.S_IMODE(existing.st_mode) & 0o660 or 0o640
        else:
            mode = 0o640
        return uid, gid, mode


def _uid(user: str) -> int:
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ConfigError(f"--owner {user!r}: no such user on this host") from None


def _gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(
            f"--group {group!r}: no such group on this host (Debian's mosquitto package "
            "creates 'mosquitto'; in the eclipse-mosquitto image the broker runs as 1883)"
        ) from None


def write_dynsec_file(
    path: Path, accounts: Sequence[BrokerAccount], owner: FileOwner | None = None
) -> Path:
    """Write the plugin's file atomically (temp file, fsync, rename), owned and with the
    mode that ``owner`` resolves to, so the broker's user can still read it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = None
    with contextlib.suppress(FileNotFoundError):
        existing = path.stat()
    uid, gid, mode = (owner or FileOwner()).resolve(existing)
    text = json.dumps(dynsec_config(accounts), indent=1) + "\n"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            try:
                os.fchown(f.fileno(), uid, gid)
            except PermissionError:
                raise ConfigError(
                    f"cannot give {path} to uid {uid} / gid {gid}: run as root, or pass "
                    "--owner/--group you may give files to"
                ) from None
            os.fchmod(f.fileno(), mode)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
