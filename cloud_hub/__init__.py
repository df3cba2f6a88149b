"""TwinSync cloud hub: ingest → verify → merge → store → ack → serve.

``Hub`` runs one instance (MQTT consumer, batched InfluxDB writer, HTTP API);
``provision_device(s)`` creates device identities and bundles; ``Registry`` is the
device registry shared by all instances.
"""

from ._auth import SCOPES, ApiKey, ApiKeys
from ._config import HubConfig, load_hub_config
from ._errors import AuthError, CloudHubError, ConfigError, RegistryError, RolloutError, StoreError
from ._hub import Hub
from ._influx import InfluxStore
from ._metrics import Metrics
from ._provision import ensure_brand_key, ensure_hub_key, provision_device, provision_devices
from ._registry import DeviceRecord, Registry

__all__ = [
    "SCOPES",
    "ApiKey",
    "ApiKeys",
    "AuthError",
    "CloudHubError",
    "ConfigError",
    "DeviceRecord",
    "Hub",
    "HubConfig",
    "InfluxStore",
    "Metrics",
    "Registry",
    "RegistryError",
    "RolloutError",
    "StoreError",
    "ensure_brand_key",
    "ensure_hub_key",
    "load_hub_config",
    "provision_device",
    "provision_devices",
]
