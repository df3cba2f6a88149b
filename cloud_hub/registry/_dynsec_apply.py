"""Reconcile a running broker's accounts with the registry (``broker-auth --apply``).

The Dynamic Security plugin reads its file only at start-up; afterwards it is changed
through its ``$CONTROL/dynamic-security/v1`` topic by an admin account, and every change
applies at once: a deleted client is disconnected immediately and cannot log in again.
:func:`apply_accounts` makes the broker hold exactly the managed accounts
(``textname`` ``twinsync ...``; other clients are left alone):

- roles created or their rules replaced; the default access set to deny;
- missing accounts created, accounts whose client id, role or password changed
  modified (which disconnects them);
- accounts no longer wanted (revoked devices, retired hub instances) deleted.

The plugin's API takes plain passwords only, never a hash, so a *new* device can be
created only with its password: from its bundle (``--bundles``, checked against the
registry's hash), or right when it is provisioned (``provision --broker-apply``).
Devices without one are reported; a broker restarted with the file of
``broker-auth --out`` has them all. A re-provisioned device whose new password is not at
hand is deleted, so its old credentials stop working at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import ssl
import threading
import time
import tomllib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_hub._config import MqttSettings
from cloud_hub._errors import BrokerAdminError

from ._broker_auth import ADMIN_USER, BrokerAccount, device_username
from ._dynsec import DEFAULT_ACCESS, TEXTNAME, client_json, role_json

__all__ = [
    "ApplyReport",
    "DynsecAdmin",
    "apply_accounts",
    "bundle_passwords",
    "password_matches",
]

log = logging.getLogger("cloud_hub.broker_auth")

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
_BATCH = 100  # commands per control message (each answer names its correlationData)


@dataclass
class ApplyReport:
    """What ``--apply`` changed on the broker, and what it could not."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    #: accounts the broker lacks and whose password is not at hand
    missing: list[str] = field(default_factory=list)
    #: what the plugin refused, as ``command user: error``
    errors: list[str] = field(default_factory=list)


def password_matches(password: str, mosquitto_hash: str) -> bool:
    """Whether ``password`` is the one behind a ``$7$`` hash."""
    try:
        _e, _seven, iterations, salt, digest = mosquitto_hash.split("$")
        mine = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations), 64
        )
        return hmac.compare_digest(mine, base64.b64decode(digest))
    except ValueError:
        return False


def _bundle_dirs(paths: Iterable[Path]) -> Iterable[Path]:
    for path in paths:
        if (path / "agent.toml").is_file():
            yield path
        elif path.is_dir():  # a --count output directory: one bundle per device
            yield from sorted(p for p in path.iterdir() if (p / "agent.toml").is_file())


def bundle_passwords(paths: Iterable[Path]) -> dict[str, str]:
    """Broker user -> password, read from device bundles (or directories of them)."""
    out: dict[str, str] = {}
    for bundle in _bundle_dirs(Path(p) for p in paths):
        try:
            data = tomllib.loads((bundle / "agent.toml").read_text())
            device, mqtt_section = data["device"], data.get("mqtt", {})
            user = mqtt_section.get("username") or device_username(device["brand"], device["id"])
            password_file = bundle / mqtt_section.get("password_file", "mqtt.password")
            out[user] = password_file.read_text().strip()
        except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
            log.warning("skipped bundle %s: %s", bundle, exc)
    return out


class DynsecAdmin:
    """The broker's admin connection; ``with DynsecAdmin(...) as admin: admin.run(...)``."""

    def __init__(self, settings: MqttSettings, password: str, *, timeout_s: float = 30.0) -> None:
        self._where = f"{settings.host}:{settings.port}"
        self._settings = settings
        self._timeout_s = timeout_s
        self._cond = threading.Condition()
        self._connack: Any = None
        self._suback: list[Any] | None = None
        self._answers: dict[str, dict[str, Any]] = {}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=ADMIN_USER, protocol=mqtt.MQTTv311
        )
        client.username_pw_set(ADMIN_USER, password)
        if settings.tls:
            client.tls_set_context(ssl.create_default_context(cafile=settings.ca_file or None))
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    # paho's network thread calls these; the waiting side holds the condition.
    def _on_connect(self, _c: object, _u: object, _f: object, rc: Any, _p: object) -> None:
        with self._cond:
            self._connack = rc
            self._cond.notify_all()

    def _on_subscribe(self, _c: object, _u: object, _m: int, codes: list[Any], _p: object) -> None:
        with self._cond:
            self._suback = codes
            self._cond.notify_all()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._cond:
            for answer in responses:
                if isinstance(answer, dict) and "correlationData" in answer:
                    self._answers[str(answer["correlationData"])] = answer
            self._cond.notify_all()

    def _wait(self, done: Any, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(done, self._timeout_s):
                raise BrokerAdminError(
                    f"no {what} from the broker at {self._where} within {self._timeout_s:.0f}s"
                )

    def __enter__(self) -> DynsecAdmin:
        try:
            self._client.connect(self._settings.host, self._settings.port, keepalive=30)
        except OSError as exc:
            raise BrokerAdminError(
                f"cannot reach the broker at {self._where} ({exc}); --apply uses the hub "
                "config's mqtt.host, mqtt.port, mqtt.tls and mqtt.ca_file"
            ) from exc
        self._client.loop_start()
        try:
            self._wait(lambda: self._connack is not None, "answer to the admin's connect")
            if getattr(self._connack, "is_failure", False):
                raise BrokerAdminError(
                    f"the broker at {self._where} refused {ADMIN_USER!r} ({self._connack}): "
                    "start it once with the file of 'broker-auth --out' (it holds the admin "
                    "account and the password in secrets/mqtt-admin.password)"
                )
            self._client.subscribe(RESPONSE_TOPIC, qos=1)
            self._wait(lambda: self._suback is not None, "answer to the admin's subscription")
            if any(getattr(c, "is_failure", False) for c in self._suback or []):
                raise BrokerAdminError(
                    f"the broker at {self._where} does not let {ADMIN_USER!r} read "
                    f"{RESPONSE_TOPIC}: its account lacks the twinsync.admin role"
                )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect (idempotent)."""
        self._client.disconnect()
        self._client.loop_stop()

    def run(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` in order (batched) and return the plugin's answer to each."""
        prefix = uuid.uuid4().hex[:12]
        tagged = [{**c, "correlationData": f"{prefix}-{i}"} for i, c in enumerate(commands)]
        for start in range(0, len(tagged), _BATCH):
            batch = tagged[start : start + _BATCH]
            ids = [c["correlationData"] for c in batch]
            self._client.publish(CONTROL_TOPIC, json.dumps({"commands": batch}), qos=1)
            self._wait(
                lambda ids=ids: all(i in self._answers for i in ids),
                "answer from the Dynamic Security plugin (is it loaded: 'plugin "
                ".../mosquitto_dynamic_security.so' in mosquitto.conf?)",
            )
        with self._cond:
            return [self._answers.pop(c["correlationData"]) for c in tagged]


def _acl_set(acls: Iterable[dict[str, Any]]) -> set[tuple[str, str, bool]]:
    return {(a.get("acltype", ""), a.get("topic", ""), bool(a.get("allow"))) for a in acls}


def _plan_roles(
    current: Mapping[str, Any], wanted: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = []
    for name, role in sorted(wanted.items()):
        have = current.get(name)
        if have is None:
            commands.append({"command": "createRole", **role})
        elif (
            _acl_set(have.get("acls", [])) != _acl_set(role["acls"])
            or have.get("textname") != role["textname"]
        ):
            commands.append({"command": "modifyRole", **role})
    return commands


def _differs(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    roles = {r.get("rolename") for r in have.get("roles", [])}
    return (
        have.get("clientid") != want["clientid"]
        or have.get("textname") != want["textname"]
        or roles != {want["roles"][0]["rolename"]}
        or bool(have.get("groups"))
    )


def apply_accounts(
    admin: DynsecAdmin, accounts: Sequence[BrokerAccount], passwords: Mapping[str, str]
) -> ApplyReport:
    """Make the broker behind ``admin`` hold exactly ``accounts`` (see the module doc);
    ``passwords`` (user -> password) are used for accounts the broker must create or
    whose password changed, and only if they match the account's hash."""
    report = ApplyReport()
    default, roles, clients = admin.run(
        [
            {"command": "getDefaultACLAccess"},
            {"command": "listRoles", "verbose": True},
            {"command": "listClients", "verbose": True},
        ]
    )
    for answer in (default, roles, clients):
        if "error" in answer:
            raise BrokerAdminError(f"the plugin refused {answer.get('command')}: {answer['error']}")
    have_default = {a["acltype"]: a["allow"] for a in default["data"]["acls"]}
    have_roles = {r["rolename"]: r for r in roles["data"]["roles"]}
    have_clients = {c["username"]: c for c in clients["data"]["clients"]}
    want_roles = {a.role.name: role_json(a.role) for a in accounts}
    commands: list[dict[str, Any]] = []
    if have_default != DEFAULT_ACCESS:
        acls = [{"acltype": k, "allow": v} for k, v in DEFAULT_ACCESS.items()]
        commands.append({"command": "setDefaultACLAccess", "acls": acls})
    role_commands = _plan_roles(have_roles, want_roles)
    report.roles = [c["rolename"] for c in role_commands]
    commands += role_commands
    wanted = {a.username: a for a in accounts if a.username != ADMIN_USER}
    for user, account in sorted(wanted.items()):
        want = client_json(account)
        have = have_clients.get(user)
        password = passwords.get(user)
        if password is not None and not password_matches(password, account.password_hash):
            log.warning("the password at hand for %s is not the registry's (stale bundle?)", user)
            password = None
        if have is None:
            if password is None:
                report.missing.append(user)
            else:
                commands.append({"command": "createClient", **want, "password": password})
                report.created.append(user)
        elif have.get("textdescription") != want["textdescription"]:
            # Re-provisioned: the broker holds the old password, which must stop working.
            if password is None:
                commands.append({"command": "deleteClient", "username": user})
                report.deleted.append(user)
                report.missing.append(user)
            else:
                commands.append({"command": "modifyClient", **want, "password": password})
                report.updated.append(user)
        elif _differs(have, want):
            commands.append({"command": "modifyClient", **want, "groups": []})
            report.updated.append(user)
    for user, have in sorted(have_clients.items()):
        managed = str(have.get("textname", "")).startswith(TEXTNAME)
        if managed and user not in wanted and user != ADMIN_USER:
            commands.append({"command": "deleteClient", "username": user})
            report.deleted.append(user)
    for name in sorted(have_roles):
        if name.startswith(f"{TEXTNAME}.") and name not in want_roles:
            commands.append({"command": "deleteRole", "rolename": name})
            report.roles.append(name)
    started = time.monotonic()
    for command, answer in zip(commands, admin.run(commands), strict=True):
        if "error" in answer:
            who = command.get("username") or command.get("rolename") or ""
            report.errors.append(f"{command['command']} {who}: {answer['error']}")
    log.info("broker reconciled in %.1fs: %s", time.monotonic() - started, report)
    return report
