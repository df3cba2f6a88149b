"""TwinSync cloud hub: ingest → verify → merge → store → ack → serve.

``Hub`` runs one instance (MQTT consumer, batched InfluxDB writer, HTTP API);
``provision_device(s)`` creates device identities and bundles; ``Registry`` is the
device registry shared by all instances.
"""

from ._config import HubConfig, load_hub_config
from ._errors import CloudHubError, ConfigError, RegistryError, StoreError
from ._hub import Hub
from ._influx import InfluxStore
from ._metrics import Metrics
from ._provision import ensure_brand_key, ensure_hub_key, provision_device, provision_devices
from ._registry import DeviceRecord, Registry

__all__ = [
    "CloudHubError",
    "ConfigError",
    "DeviceRecord",
    "Hub",
    "HubConfig",
    "InfluxStore",
    "Metrics",
    "Registry",
    "RegistryError",
    "StoreError",
    "ensure_brand_key",
    "ensure_hub_key",
    "load_hub_config",
    "provision_device",
    "provision_devices",
]
