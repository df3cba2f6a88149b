"""Device provisioning: identities, keys and the bundle a device is shipped with.

Secrets layout (``[keys] secrets_dir``, every file mode 0600)::

    hub.key                       the hub's Ed25519 signing key (PEM)
    brands/<brand>/<epoch>.key    a brand's pseudonymization key (32 random bytes)

A bundle (one directory per device) holds ``agent.toml``, ``device.key``, ``brand.key``,
``hub.pub`` and ``hub-box.pub``: everything ``twinsync edge run --config agent.toml``
needs. ``hub-box.pub`` is the public half of the hub's box key, derived from ``hub.key``
(``protocol.hub_box_key``); with it the agent seals delta bodies to the hub.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from protocol import PRODUCTS, SigningKey, check_brand, check_device, hub_box_key

from ._broker_auth import device_username, mosquitto_hash
from ._errors import ConfigError
from ._registry import Registry

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

[ingest]
port = 0
"""


def provision_devices(
    registry_path: Path,
    secrets_dir: Path,
    brand: str,
    devices: Iterable[tuple[str, str]],
    out_root: Path,
    mqtt_host: str = "127.0.0.1",
    mqtt_port: int = 1883,
    epoch: int = DEFAULT_EPOCH,
) -> dict[str, Path]:
    """Provision ``(device_id, product)`` pairs in one registry transaction.

    Each bundle goes to ``out_root/<device_id>/``; returns device id -> agent.toml path.
    """
    hub_key = ensure_hub_key(secrets_dir)
    brand_key = ensure_brand_key(secrets_dir, brand, epoch)
    box_public = hub_box_key(hub_key).public.hex()
    records = []
    hashes: dict[tuple[str, str], str] = {}
    out: dict[str, Path] = {}
    for device, product in devices:
        check_device(device)
        if product not in PRODUCTS:
            raise ConfigError(f"unknown product {product!r}; known: {', '.join(PRODUCTS)}")
        key = SigningKey.generate()
        bundle = Path(out_root) / device
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
    Registry(registry_path).add_many(records, hashes)
    return out


def provision_device(
    registry_path: Path,
    secrets_dir: Path,
    brand: str,
    device_id: str,
    product: str,
    out_dir: Path,
    mqtt_host: str = "127.0.0.1",
    mqtt_port: int = 1883,
    epoch: int = DEFAULT_EPOCH,
) -> Path:
    """Provision one device; its bundle goes to ``out_dir`` itself. Returns agent.toml."""
    out_dir = Path(out_dir)
    paths = provision_devices(
        registry_path,
        secrets_dir,
        brand,
        [(device_id, product)],
        out_dir.parent,
        mqtt_host,
        mqtt_port,
        epoch,
    )
    made = paths[device_id]
    if made.parent != out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in made.parent.iterdir():
            f.replace(out_dir / f.name)
        made.parent.rmdir()
    return out_dir / "agent.toml"
