"""Broker accounts: who may connect to the broker, as which client id, to do what.

Every account is bound to exactly one MQTT client id, so no credentials can connect as
another client, disconnect it (a broker drops the older of two connections with one
client id) or inherit its persistent session:

- **a device**: user and client id ``<brand>.<device>`` (neither part can hold a dot);
  it may publish only its own ``delta`` and ``status``, and subscribe to and receive only
  its own ``ack``, ``desired``, ``model`` and ``offer`` and its brand's broadcasts
  (``tombstone``, ``consent``, ``tags``), each by its literal topic: no wildcard, no
  ``$share`` group, nothing of
  another device or brand.
- **a hub instance**: user and client id are the instance's ``mqtt.client_id``
  (``twinsync-hub-1``, ``-2``, ...). One account per instance, because one account can
  be bound to only one client id; the instances share one password
  (``secrets/mqtt-hub.password``), since they share the secrets directory anyway. A hub
  may take its share of every uplink (``$share/<group>/ts/v1/+/+/delta`` and ``status``,
  or the plain filters) and publish every downlink, plus the instances' own
  ``ts/v1/_hub/#`` announcements. The list of instances is remembered in
  ``secrets/mqtt-hub.clients`` so a later run cannot drop one by omission.
- **the broker admin** ``twinsync-admin`` (password ``secrets/mqtt-admin.password``,
  client id ``twinsync-admin``): only the Dynamic Security plugin's
  ``$CONTROL/dynamic-security/#`` topics; ``broker-auth --apply`` uses it.

Passwords are stored as mosquitto's PBKDF2-SHA512 hashes (``$7$``, what
``mosquitto_passwd`` writes): the registry keeps each device's, the plain password lives
only in the device's bundle. Revoked devices have no account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cloud_hub._errors import ConfigError
from cloud_hub.store import StateStore
from protocol import PREFIX, Channel, broadcast_topic, topic

from ._devices import Registry

__all__ = [
    "ADMIN_USER",
    "BROADCASTS",
    "Acl",
    "BrokerAccount",
    "Role",
    "broker_accounts",
    "device_username",
    "ensure_admin_password",
    "ensure_hub_password",
    "hub_client_ids",
    "mosquitto_hash",
]

ADMIN_USER = "twinsync-admin"
#: the brand-wide downlinks every device subscribes to (protocol.broadcast_topic names)
BROADCASTS = ("tombstone", "consent", "tags")
#: the downlinks of one device (the strategy lab's offers among them)
_OWN_DOWNLINKS = (Channel.ACK, Channel.DESIRED, Channel.MODEL, Channel.OFFER)
_ITERATIONS = 101  # what mosquitto_passwd (2.0) writes
_HUB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HUB_IDS_FILE = "mqtt-hub.clients"
_HUB_PASSWORD_FILE = "mqtt-hub.password"  # noqa: S105 - a file name, not a password
_ADMIN_PASSWORD_FILE = "mqtt-admin.password"  # noqa: S105 - a file name, not a password

AclKind = Literal[
    "publishClientSend", "publishClientReceive", "subscribeLiteral", "subscribePattern"
]


@dataclass(frozen=True, slots=True, order=True)
class Acl:
    """One allow rule of the Dynamic Security plugin (everything else is denied)."""

    kind: AclKind
    topic: str


@dataclass(frozen=True, slots=True)
class Role:
    """A named set of allow rules."""

    name: str
    acls: frozenset[Acl]


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    """One broker client: user, the one client id it may use, its role, password hash."""

    username: str
    client_id: str
    kind: Literal["device", "hub", "admin"]
    role: Role
    #: mosquitto's ``$7$<iterations>$<salt>$<hash>``
    password_hash: str

    @property
    def fingerprint(self) -> str:
        """A short digest of the password hash: tells a running broker's copy of the
        account apart from a re-provisioned one without exposing the hash."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


def device_username(brand: str, device: str) -> str:
    """The broker user (and client id) of a device."""
    return f"{brand}.{device}"


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """``$7$<iterations>$<salt>$<hash>`` as mosquitto_passwd writes it (PBKDF2-SHA512)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS, 64)
    b64 = base64.b64encode
    return f"$7${_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def _stable_hash(username: str, password: str) -> str:
    # The hub's and the admin's hashes are recomputed on every run; a salt derived from
    # the (random, 256-bit) password keeps them, and so their fingerprints, stable.
    salt = hmac.new(password.encode(), username.encode(), hashlib.sha256).digest()[:12]
    return mosquitto_hash(password, salt)


def _secret_file(path: Path) -> str:
    """Read a password file, creating it (mode 0600, 256 random bits) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def ensure_admin_password(secrets_dir: Path) -> Path:
    """The file with the broker admin's password, made on first use."""
    path = Path(secrets_dir) / _ADMIN_PASSWORD_FILE
    _secret_file(path)
    return path


def ensure_hub_password(secrets_dir: Path) -> Path:
    """The file with the hub instances' shared broker password (``mqtt.password_file``),
    made on first use."""
    path = Path(secrets_dir) / _HUB_PASSWORD_FILE
    _secret_file(path)
    return path


def hub_client_ids(secrets_dir: Path, requested: Sequence[str] | None, default: str) -> list[str]:
    """The hub instances that get an account: ``requested``, else the list remembered
    from an earlier run, else ``[default]`` (the config's ``mqtt.client_id``). The result
    is remembered, so a later run with another config cannot drop an instance by
    omission (which would delete its account and disconnect it)."""
    path = Path(secrets_dir) / _HUB_IDS_FILE
    if requested:
        ids = sorted(set(requested))
    elif path.exists():
        ids = sorted({line.strip() for line in path.read_text().splitlines() if line.strip()})
    else:
        ids = [default]
    for client_id in ids:
        if _HUB_ID.fullmatch(client_id) is None or client_id == ADMIN_USER:
            raise ConfigError(
                f"hub client id {client_id!r} cannot have a broker account: use letters, "
                f"digits, '-' and '_' (no '.', which device accounts use), not {ADMIN_USER!r} "
                "(set mqtt.client_id or --hub-ids)"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return ids


def _device_role(brand: str, device: str) -> Role:
    own = [topic(brand, device, c) for c in _OWN_DOWNLINKS]
    downlinks = own + [broadcast_topic(brand, name) for name in BROADCASTS]
    uplinks = (Channel.DELTA, Channel.STATUS)
    acls = {Acl("publishClientSend", topic(brand, device, c)) for c in uplinks}
    # Literal subscriptions only: a pattern ACL would also match "$share/<g>/..." filters.
    acls |= {Acl("subscribeLiteral", t) for t in downlinks}
    acls |= {Acl("publishClientReceive", t) for t in downlinks}
    return Role(f"twinsync.device.{device_username(brand, device)}", frozenset(acls))


def _hub_role() -> Role:
    uplinks = [f"{PREFIX}/+/+/{c}" for c in (Channel.DELTA, Channel.STATUS)]
    events = f"{PREFIX}/_hub/#"  # announcements between instances; "_hub" is no brand
    acls = {Acl("subscribePattern", f"$share/+/{u}") for u in uplinks}
    acls |= {Acl("subscribePattern", u) for u in [*uplinks, events]}
    acls |= {Acl("publishClientReceive", u) for u in [*uplinks, events]}
    downlinks = [f"{PREFIX}/+/+/{c}" for c in _OWN_DOWNLINKS]
    acls |= {Acl("publishClientSend", t) for t in [*downlinks, f"{PREFIX}/+/broadcast/#", events]}
    return Role("twinsync.hub", frozenset(acls))


def _admin_role() -> Role:
    control = "$CONTROL/dynamic-security/#"
    kinds: tuple[AclKind, ...] = ("publishClientSend", "publishClientReceive", "subscribePattern")
    return Role("twinsync.admin", frozenset(Acl(k, control) for k in kinds))


def broker_accounts(
    state: StateStore, secrets_dir: Path, hub_ids: Sequence[str]
) -> list[BrokerAccount]:
    """Every account the broker should have: the admin, one per hub instance in
    ``hub_ids``, one per device of the registry that is provisioned with a broker
    password and not revoked."""
    secrets_dir = Path(secrets_dir)
    admin_password = _secret_file(secrets_dir / _ADMIN_PASSWORD_FILE)
    hub_password = _secret_file(secrets_dir / _HUB_PASSWORD_FILE)
    accounts = [
        BrokerAccount(
            ADMIN_USER, ADMIN_USER, "admin", _admin_role(), _stable_hash(ADMIN_USER, admin_password)
        )
    ]
    hub_role = _hub_role()
    accounts += [
        BrokerAccount(i, i, "hub", hub_role, _stable_hash(i, hub_password)) for i in hub_ids
    ]
    for brand, device, password_hash in Registry(state=state).broker_users():
        user = device_username(brand, device)
        role = _device_role(brand, device)
        accounts.append(BrokerAccount(user, user, "device", role, password_hash))
    return accounts
