"""Exceptions of the hub.

protocol.TwinSyncError
└── CloudHubError          root of everything the hub raises
    ├── AuthError          API request without a valid key, brand or scope
    ├── BrokerAdminError   the broker cannot be reached or administered ('broker-auth --apply')
    ├── ConfigError        hub.toml / environment invalid: fix the named setting
    ├── RegistryError      device registry unreadable, device unknown or revoked
    ├── RolloutError       a model upload or rollout request that cannot be done
    └── StoreError         InfluxDB unreachable or refused a write/query
"""

from __future__ import annotations

from protocol import TwinSyncError

__all__ = [
    "AuthError",
    "BrokerAdminError",
    "CloudHubError",
    "ConfigError",
    "RegistryError",
    "RolloutError",
    "StoreError",
]


class CloudHubError(TwinSyncError):
    """Root of every exception raised by the hub."""


class ConfigError(CloudHubError):
    """The configuration is invalid; the message names the setting."""

    reason = "config"


class BrokerAdminError(CloudHubError):
    """The broker cannot be reached or administered; the message says what to fix."""

    reason = "broker_admin"


class RegistryError(CloudHubError):
    """The device registry cannot answer, or a device is unknown or revoked."""

    reason = "unknown_device"


class StoreError(CloudHubError):
    """InfluxDB is unreachable or refused a request."""

    reason = "store"

    def __init__(self, message: str, *, retryable: bool = True, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retryable = retryable


class RolloutError(CloudHubError):
    """A model upload or rollout request that cannot be done; ``status`` is the HTTP code
    the API answers with."""

    reason = "rollout"

    def __init__(self, message: str, *, reason: str, status: int = 400) -> None:
        super().__init__(message, reason=reason)
        self.status = status


class AuthError(CloudHubError):
    """An API request without a valid key, for another brand, or without the scope.

    ``status`` is the HTTP answer: 401 (no or bad key), 403 (wrong brand or scope), or
    400/404 for key management mistakes.
    """

    reason = "unauthenticated"

    def __init__(self, message: str, *, reason: str, status: int = 401) -> None:
        super().__init__(message, reason=reason)
        self.status = status
