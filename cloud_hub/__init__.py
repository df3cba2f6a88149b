"""TwinSync cloud hub: ingest → verify → merge → store → ack → serve.

``Hub`` runs one instance (MQTT consumer, batched InfluxDB writer, HTTP API);
``provision_device(s)`` creates device identities and bundles; ``Registry`` is the
device registry shared by all instances.
"""

from cloud_hub.api import SCOPES, ApiKey, ApiKeys
from cloud_hub.registry import (
    DeviceRecord,
    Registry,
    ensure_brand_key,
    ensure_hub_key,
    provision_device,
    provision_devices,
)
from cloud_hub.store import InfluxStore

from ._config import HubConfig, LimitSettings, WebhookSettings, load_hub_config
from ._errors import (
    AuthError,
    CloudHubError,
    ConfigError,
    IncompleteError,
    RegistryError,
    RequestError,
    RolloutError,
    StoreError,
)
from ._hub import Hub
from ._metrics import Metrics

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
    "IncompleteError",
    "InfluxStore",
    "LimitSettings",
    "Metrics",
    "Registry",
    "RegistryError",
    "RequestError",
    "RolloutError",
    "StoreError",
    "WebhookSettings",
    "ensure_brand_key",
    "ensure_hub_key",
    "load_hub_config",
    "provision_device",
    "provision_devices",
]
