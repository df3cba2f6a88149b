"""Agent configuration: pydantic model from TOML, then environment, then overrides.

Environment variables ``TWINSYNC_EDGE__<SECTION>__<KEY>`` override the file (values are
parsed as TOML scalars). Relative paths resolve against the TOML file's directory. The
hub loads its settings with the same function (``protocol.load_settings``). Key files are
read and checked at load time, so a bad bundle fails at start-up, not at the first signal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocol import (
    FIELDS,
    MIN_KEY_BYTES,
    PRODUCTS,
    BoxPublicKey,
    SettingsError,
    SigningKey,
    TwinSyncError,
    VerifyKey,
    check_brand,
    check_device,
    check_timezone,
    load_settings,
)

from ._errors import ConfigError

__all__ = ["AgentConfig", "Keys", "load_config"]

_ENV_PREFIX = "TWINSYNC_EDGE__"


def _ident(check: Callable[[str], str], value: str) -> str:
    # protocol raises IdentifierError (not a ValueError); pydantic only turns ValueError
    # into a located validation error, so translate to get "device.brand: ..." messages.
    try:
        return check(value)
    except TwinSyncError as exc:
        raise ValueError(str(exc)) from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceSettings(_Section):
    """Who this device is."""

    brand: str
    id: str
    product: str
    key_file: Path = Path("device.key")
    #: the household's time zone: "UTC", an offset ("+05:30") or an IANA name
    #: ("Europe/Berlin"); features count days, dayparts and weekends on its local clock
    timezone: str = "UTC"

    @field_validator("brand")
    @classmethod
    def _brand(cls, v: str) -> str:
        return _ident(check_brand, v)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _ident(check_device, v)

    @field_validator("product")
    @classmethod
    def _product(cls, v: str) -> str:
        if v not in PRODUCTS:
            raise ValueError(f"unknown product {v!r}; known: {', '.join(PRODUCTS)}")
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        return _ident(check_timezone, v)


class PreviousKey(_Section):
    """A brand key of an earlier epoch, held only while a key rotation carries twins over."""

    epoch: int = Field(ge=0, le=999_999)
    key_file: Path


class PseudonymSettings(_Section):
    """The brand's pseudonymization key and its epoch.

    During a key rotation the bundle also holds the previous key(s): a customer the device
    knows under an old twin id continues under the new one, and the device tells the hub
    (a twin link) so the history moves with it. Remove ``previous`` to retire an epoch.
    """

    key_file: Path = Path("brand.key")
    epoch: int = Field(1, ge=0, le=999_999)
    previous: list[PreviousKey] = Field(default_factory=list, max_length=4)

    @model_validator(mode="after")
    def _older(self) -> PseudonymSettings:
        epochs = [p.epoch for p in self.previous]
        if any(e >= self.epoch for e in epochs) or len(set(epochs)) != len(epochs):
            raise ValueError(
                f"pseudonym.previous epochs {epochs} must be distinct and older than "
                f"epoch {self.epoch}"
            )
        return self


class HubSettings(_Section):
    """Hub public keys that may sign acks and commands (several during rotation)."""

    public_key_files: list[Path] = Field(default_factory=lambda: [Path("hub.pub")], min_length=1)


class MqttSettings(_Section):
    """Broker connection."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str = ""
    password: str = ""
    #: file holding the broker password (written 0600 by provisioning); wins over password
    password_file: Path | None = None
    tls: bool = False
    ca_file: str = ""
    keepalive_s: int = Field(30, ge=5, le=3600)
    client_id: str = ""


class OutboxSettings(_Section):
    """The durable outbox (SQLite, WAL)."""

    path: Path = Path("outbox.sqlite")
    max_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024)
    max_age_s: int = Field(30 * 86_400, ge=60)


class IngestSettings(_Section):
    """The local interface firmware sends signals to (provisioned bundles: a Unix socket)."""

    host: str = "127.0.0.1"
    #: loopback TCP port; 0 = no TCP server
    port: int = Field(0, ge=0, le=65535)
    #: Unix socket path; "" = none. A relative path lies in systemd's runtime directory
    #: ($RUNTIME_DIRECTORY) when there is one, else next to agent.toml (see load_config)
    unix_socket: str = ""
    max_line_bytes: int = Field(4096, ge=256, le=65536)


class SyncSettings(_Section):
    """Batching and delivery."""

    flush_interval_ms: int = Field(200, ge=0, le=60_000)
    max_ops_per_delta: int = Field(1000, ge=1, le=4096)
    inflight: int = Field(16, ge=1, le=1024)
    ack_timeout_s: float = Field(10.0, gt=0)
    status_interval_s: float = Field(30.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)


class ValidationSettings(_Section):
    """Signal sanity limits."""

    max_signal_age_s: int = Field(7 * 86_400, ge=1)
    max_clock_ahead_s: int = Field(300, ge=0)


class ModelSettings(_Section):
    """On-device models (docs/models.md)."""

    enabled: bool = True
    #: installed models (rollouts); the package's defaults serve until one is installed
    dir: Path = Path("models")
    #: re-score a customer's segment and churn risk at most this often (signal time)
    every_s: int = Field(3600, ge=1)
    #: model downloads (rollouts): timeout, and the CA bundle for https ("" = system CAs)
    fetch_timeout_s: float = Field(60.0, gt=0, le=3600)
    ca_file: str = ""


class ConsentSettings(_Section):
    """Consent (docs/privacy.md): optional purposes are off until the customer agrees."""

    #: state of analytics/personalization/marketing for a customer with no ledger entry
    optional_default: bool = False


class MinimiseSettings(_Section):
    """Data minimisation: twin fields that never leave this device (docs/privacy.md)."""

    #: in addition to the catalog's own (e.g. ``wearable.heart_rate_bpm``)
    keep_local: list[str] = Field(default_factory=list)

    @field_validator("keep_local")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown twin fields {unknown}; see protocol.FIELDS")
        return value


class SecuritySettings(_Section):
    """Sealed deltas (docs/privacy.md, "Sealed deltas"): bodies encrypted to the hub."""

    #: true: seal every delta (the hub box key file must exist); false: signed only, in
    #: the clear; unset: seal exactly when the bundle has the hub box key file (bundles
    #: made by 'twinsync hub provision' do, so new installs are private by default)
    seal_deltas: bool | None = None
    #: the hub's box (X25519) public key, 64 hex chars; written by provisioning
    hub_box_key_file: Path = Path("hub-box.pub")

    def hub_box_key(self) -> BoxPublicKey | None:
        """The key deltas are sealed to, or None when they go unsealed.

        Read at start-up, so a bad or missing key file fails the agent early with a
        message naming the file, instead of at the first delta.
        """
        path = self.hub_box_key_file
        if self.seal_deltas is False or (self.seal_deltas is None and not path.exists()):
            return None
        try:
            return BoxPublicKey.from_hex(path.read_text())
        except OSError as exc:
            raise ConfigError(
                f"security.seal_deltas is on but the hub box key {path} cannot be read "
                f"({exc.strerror}); copy hub-box.pub from the device bundle "
                "('twinsync hub provision' writes it) or set security.seal_deltas = false"
            ) from exc
        except TwinSyncError as exc:
            raise ConfigError(f"bad hub box key file {path}: {exc}") from exc


class AgentConfig(_Section):
    """The whole agent configuration (see docs/edge-agent.md)."""

    device: DeviceSettings
    pseudonym: PseudonymSettings = PseudonymSettings()
    hub: HubSettings = HubSettings()
    mqtt: MqttSettings = MqttSettings()
    outbox: OutboxSettings = OutboxSettings()
    ingest: IngestSettings = IngestSettings()
    sync: SyncSettings = SyncSettings()
    validation: ValidationSettings = ValidationSettings()
    models: ModelSettings = ModelSettings()
    consent: ConsentSettings = ConsentSettings()
    minimise: MinimiseSettings = MinimiseSettings()
    security: SecuritySettings = SecuritySettings()

    def keys(self) -> Keys:
        """Read and check every key file this config names."""
        return Keys.load(self)


class Keys:
    """Key material loaded from the files an AgentConfig names. ``repr`` hides secrets."""

    def __init__(
        self,
        device: SigningKey,
        brand_key: bytes,
        hub: list[VerifyKey],
        mqtt_password: str = "",
        previous: tuple[tuple[int, bytes], ...] = (),
    ) -> None:
        self.device = device
        self.brand_key = brand_key
        #: (epoch, key) of earlier brand keys held during a rotation
        self.previous = previous
        self.hub = {k.kid: k for k in hub}
        #: the broker password (from ``mqtt.password_file``, else ``mqtt.password``)
        self.mqtt_password = mqtt_password

    @classmethod
    def load(cls, config: AgentConfig) -> Keys:
        """Load from files; raise ConfigError naming the file on any problem."""

        def read(path: Path, what: str) -> bytes:
            try:
                return path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc

        try:
            device = SigningKey.from_bytes(read(config.device.key_file, "device key"))
            hub = [
                VerifyKey.from_hex(read(p, "hub public key").decode())
                for p in config.hub.public_key_files
            ]
        except TwinSyncError as exc:
            raise ConfigError(f"bad key file: {exc}") from exc
        brand_key = read(config.pseudonym.key_file, "brand key")
        previous = tuple(
            (p.epoch, read(p.key_file, f"brand key of epoch {p.epoch}"))
            for p in config.pseudonym.previous
        )
        for path, key in [(config.pseudonym.key_file, brand_key)] + [
            (p.key_file, k) for p, (_e, k) in zip(config.pseudonym.previous, previous, strict=True)
        ]:
            if len(key) < MIN_KEY_BYTES:
                raise ConfigError(f"brand key {path} is shorter than {MIN_KEY_BYTES} bytes")
        if any(key == brand_key for _e, key in previous):
            raise ConfigError("a previous brand key equals the current one; rotate to a new key")
        password = config.mqtt.password
        if config.mqtt.password_file is not None:
            password = read(config.mqtt.password_file, "mqtt password file").decode().strip()
        return cls(device, brand_key, hub, password, previous)

    def __repr__(self) -> str:
        return f"Keys(device={self.device.kid}, hub={sorted(self.hub)})"


def _socket_path(value: str, base: Path, environ: Mapping[str, str]) -> str:
    """Where a relative ``ingest.unix_socket`` lies.

    Under systemd with ``RuntimeDirectory=`` (deploy/systemd/twinsync-edge.service) the
    unit gets ``$RUNTIME_DIRECTORY`` (/run/twinsync): the one place it may create a
    socket, since the bundle's directory (/etc/twinsync) is read-only there. Started by
    hand there is no such variable, and /run/twinsync would need root: the socket goes
    next to agent.toml, the directory the operator already writes to.
    """
    if not value or Path(value).is_absolute():
        return value
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return str(Path(runtime) / value if runtime else base / value)


def load_config(
    path: str | Path | None,
    overrides: dict[str, Any] | None = None,
    *,
    environ: dict[str, str] | None = None,
) -> AgentConfig:
    """Load, merge and validate; resolve relative paths; raise ConfigError on any problem."""
    base = Path.cwd()
    text: str | None = None
    env = os.environ if environ is None else environ
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read agent config {file}: {exc.strerror}") from exc
        base = file.resolve().parent
    try:
        config = load_settings(
            AgentConfig,
            text,
            what="agent config",
            source=f"agent config {path}",
            environ=env,
            prefix=_ENV_PREFIX,
            base=base,
            overrides=overrides,
        )
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    # Every path setting is now absolute (protocol.load_settings); the ingest socket is
    # a string setting with a place of its own (systemd's runtime directory).
    socket = _socket_path(config.ingest.unix_socket, base, env)
    return config.model_copy(
        update={"ingest": config.ingest.model_copy(update={"unix_socket": socket})}
    )
