"""Device provisioning: identities, keys and the bundle a device is shipped with.

Secrets layout (``[keys] secrets_dir``, every file mode 0600)::

    hub.key                       the hub's Ed25519 signing key (PEM)
    brands/<brand>/<epoch>.key    a brand's pseudonymization key (32 random bytes)

A bundle (one directory per device) holds ``agent.toml``, ``device.key``, ``brand.key``,
``mqtt.password``, ``hub.pub`` and ``hub-box.pub``: everything ``twinsync edge run
--config agent.toml`` needs, including a local ingest socket.

A device already in the registry is not provisioned again unless ``force`` is given:
that would replace its key and broker password, so its current bundle stops working (at
the hub within a second, at the broker once its files are rewritten). Nothing is written when
the request is refused.

``hub-box.pub`` is the public half of the hub's box key, derived from ``hub.key``
(``protocol.hub_box_key``); with it the agent seals delta bodies to the hub.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

from cloud_hub._errors import ConfigError, RegistryError
from cloud_hub.store import StateStore
from protocol import PRODUCTS, SigningKey, check_brand, check_device, hub_box_key

from ._broker_auth import device_username, mosquitto_hash
from ._devices import DeviceRecord, Registry

__all__ = ["ensure_brand_key", "ensure_hub_key", "provision_device", "provision_devices"]

DEFAULT_EPOCH = 1


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_hub_key(secrets_dir: Path) -> SigningKey:
    """Load the hub signing key, creating it on first use."""
    path = Path(secrets_dir) / "hub.key"
    if not path.exists():
        _write_secret(path, SigningKey.generate().to_pem())
    return SigningKey.from_bytes(path.read_bytes())


def ensure_hub_mqtt_password(secrets_dir: Path) -> Path:
    """The file with the hub's broker password (``mqtt.password_file``), made on first use."""
    path = Path(secrets_dir) / "mqtt-hub.password"
    if not path.exists():
        _write_secret(path, secrets.token_urlsafe(32).encode() + b"\n")
    return path


def ensure_brand_key(secrets_dir: Path, brand: str, epoch: int = DEFAULT_EPOCH) -> bytes:
    """Load brand ``brand``'s pseudonymization key of ``epoch``, creating it on first use."""
    path = Path(secrets_dir) / "brands" / check_brand(brand) / f"{epoch}.key"
    if not path.exists():
        _write_secret(path, secrets.token_bytes(32))
    return path.read_bytes()


_AGENT_TOML = """\
# TwinSync edge agent bundle for device {device} of brand {brand}.
# Created by 'twinsync hub provision'. Keep device.key and brand.key secret (mode 0600).

[device]
brand = "{brand}"
id = "{device}"
product = "{product}"
key_file = "device.key"

[pseudonym]
key_file = "brand.key"
epoch = {epoch}

[hub]
public_key_files = ["hub.pub"]

[security]
# Delta bodies are encrypted to the hub: the broker sees no twin id, field or value
# (docs/privacy.md, "Sealed deltas").
seal_deltas = true
hub_box_key_file = "hub-box.pub"

[mqtt]
host = "{mqtt_host}"
port = {mqtt_port}
username = "{mqtt_user}"
password_file = "mqtt.password"

[outbox]
path = "outbox.sqlite"

# Local ingest (firmware -> agent; docs/edge-agent.md, "Local ingest protocol"): a Unix
# socket. A relative path lies in $RUNTIME_DIRECTORY under systemd (/run/twinsync with
# deploy/systemd/twinsync-edge.service), else next to this file. The agent logs where it
# listens. Set port to also listen on loopback TCP (0 = no TCP).
[ingest]
port = 0
unix_socket = "ingest.sock"
"""


def _refuse_existing(existing: list[DeviceRecord]) -> None:
    shown = ", ".join(
        f"{r.brand}/{r.device} (since "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(r.created_ms / 1000))})"
        for r in existing[:3]
    )
    more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
    several = len(existing) > 1
    raise RegistryError(
        f"device{'s' if several else ''} {shown}{more} already provisioned; --force "
        f"(force=True) re-provisions {'them' if several else 'it'} with new keys and "
        f"{'new broker passwords' if several else 'a new broker password'}, and "
        f"{'their current bundles stop' if several else 'its current bundle stops'} working",
        reason="already_provisioned",
    )


def _provision(
    state: StateStore | str | os.PathLike[str],
    secrets_dir: Path,
    brand: str,
    targets: list[tuple[str, str, Path]],
    mqtt_host: str,
    mqtt_port: int,
    epoch: int,
    force: bool,
) -> dict[str, Path]:
    """Provision ``(device_id, product, bundle_dir)`` targets in one registry transaction."""
    check_brand(brand)
    for device, product, _dir in targets:
        check_device(device)
        if product not in PRODUCTS:
            raise ConfigError(f"unknown product {product!r}; known: {', '.join(PRODUCTS)}")
    registry = Registry(state=state)
    # Checked before any key or file is made: a refused request changes nothing.
    existing = registry.existing(brand, [device for device, _p, _d in targets])
    if existing and not force:
        _refuse_existing(existing)
    hub_key = ensure_hub_key(secrets_dir)
    brand_key = ensure_brand_key(secrets_dir, brand, epoch)
    box_public = hub_box_key(hub_key).public.hex()
    records = []
    hashes: dict[tuple[str, str], str] = {}
    out: dict[str, Path] = {}
    for device, product, bundle in targets:
        key = SigningKey.generate()
        bundle.mkdir(parents=True, exist_ok=True)
        _write_secret(bundle / "device.key", key.to_pem())
        _write_secret(bundle / "brand.key", brand_key)
        (bundle / "hub.pub").write_text(hub_key.public.hex() + "\n")
        (bundle / "hub-box.pub").write_text(box_public + "\n")
        password = secrets.token_urlsafe(24)
        _write_secret(bundle / "mqtt.password", password.encode() + b"\n")
        hashes[(brand, device)] = mosquitto_hash(password)
        toml = bundle / "agent.toml"
        toml.write_text(
            _AGENT_TOML.format(
                brand=brand,
                device=device,
                product=product,
                epoch=epoch,
                mqtt_host=mqtt_host,
                mqtt_port=mqtt_port,
                mqtt_user=device_username(brand, device),
            )
        )
        records.append((brand, device, product, key.public))
        out[device] = toml
    registry.add_many(records, hashes)
    return out


def provision_devices(
    state: StateStore | str | os.PathLike[str],
    secrets_dir: Path,
    brand: str,
    devices: Iterable[tuple[str, str]],
    out_root: Path,
    mqtt_host: str = "127.0.0.1",
    mqtt_port: int = 1883,
    epoch: int = DEFAULT_EPOCH,
    *,
    force: bool = False,
) -> dict[str, Path]:
    """Provision ``(device_id, product)`` pairs in one registry transaction.

    ``state`` is the hub's state store (or the path of a one-host hub's SQLite state file,
    ``registry.path``). Each bundle goes to ``out_root/<device_id>/``; returns device id
    -> agent.toml path.
    Raises RegistryError (reason ``already_provisioned``) when a device is already in the
    registry, unless ``force``: then it gets a new key and broker password (and is no
    longer revoked).
    """
    targets = [(device, product, Path(out_root) / device) for device, product in devices]
    return _provision(state, secrets_dir, brand, targets, mqtt_host, mqtt_port, epoch, force)


def provision_device(
    state: StateStore | str | os.PathLike[str],
    secrets_dir: Path,
    brand: str,
    device_id: str,
    product: str,
    out_dir: Path,
    mqtt_host: str = "127.0.0.1",
    mqtt_port: int = 1883,
    epoch: int = DEFAULT_EPOCH,
    *,
    force: bool = False,
) -> Path:
    """Provision one device; its bundle goes to ``out_dir`` itself. Returns agent.toml.

    Refuses a device already in the registry unless ``force`` (see provision_devices).
    """
    targets = [(device_id, product, Path(out_dir))]
    made = _provision(state, secrets_dir, brand, targets, mqtt_host, mqtt_port, epoch, force)
    return made[device_id]
