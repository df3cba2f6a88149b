"""registry: who may talk to the hub.

Provisioned devices and their keys (``Registry``, ``provision_device(s)``), the hub's and
the brands' keys and key epochs, and the broker's accounts derived from them (the
dynamic-security plugin's configuration, ``broker-auth --apply``).
"""

from __future__ import annotations

from ._broker_auth import ensure_admin_password, ensure_hub_password
from ._broker_setup import BrokerSetup, broker_setup
from ._devices import DeviceRecord, Registry
from ._dynsec import DYNSEC_FILE, FileOwner
from ._dynsec_apply import DynsecAdmin
from ._epochs import held_epochs, retire_in_bundles, rotate_brand_key
from ._provision import ensure_brand_key, ensure_hub_key, provision_device, provision_devices

__all__ = [
    "DYNSEC_FILE",
    "BrokerSetup",
    "DeviceRecord",
    "DynsecAdmin",
    "FileOwner",
    "Registry",
    "broker_setup",
    "ensure_admin_password",
    "ensure_brand_key",
    "ensure_hub_key",
    "ensure_hub_password",
    "held_epochs",
    "provision_device",
    "provision_devices",
    "retire_in_bundles",
    "rotate_brand_key",
]
