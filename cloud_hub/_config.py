"""Hub configuration: a pydantic model loaded from TOML, then environment, then overrides.

Environment variables ``TWINSYNC_HUB__<SECTION>__<KEY>`` override the file (values are
parsed as TOML scalars, so ``8080``, ``true`` and ``"x"`` all work). Relative paths are
resolved against the directory of the TOML file. Everything is validated at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from protocol import (
    SettingsError,
    TwinSyncError,
    check_brand,
    load_settings,
)

from ._addresses import parse_allow
from ._errors import ConfigError
from ._state_url import StateUrl, parse_state_url

__all__ = ["HubConfig", "StateSettings", "load_hub_config"]

_ENV_PREFIX = "TWINSYNC_HUB__"


def _check_brands(value: list[str]) -> list[str]:
    for brand in value:
        try:
            check_brand(brand)
        except TwinSyncError as exc:
            raise ValueError(str(exc)) from None
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    """Broker connection."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str = ""
    password: str = ""
    #: file holding the broker password (see 'twinsync hub broker-auth'); wins over password
    password_file: Path | None = None
    tls: bool = False
    ca_file: str = ""
    client_id: str = "twinsync-hub-1"
    shared_group: str = "twinsync-hub"
    #: brands this hub serves (one deployment per tenant on a shared broker); [] = all
    brands: list[str] = Field(default_factory=list)

    @field_validator("brands")
    @classmethod
    def _valid_brands(cls, value: list[str]) -> list[str]:
        return _check_brands(value)

    keepalive_s: int = Field(30, ge=5)
    queue_size: int = Field(20000, ge=100)


class InfluxSettings(_Section):
    """InfluxDB v1-compatible HTTP API (1.x; 2.x/3.x through their v1 endpoints)."""

    url: str = "http://127.0.0.1:8086"
    database: str = Field("twinsync", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    retention_policy: str = ""
    username: str = ""
    password: str = ""
    token: str = ""
    create_database: bool = True
    batch_max_lines: int = Field(20000, ge=1, le=200_000)
    batch_max_wait_ms: int = Field(50, ge=0, le=10_000)
    #: batches written at once (verification of the next overlaps the write of this one)
    write_concurrency: int = Field(2, ge=1, le=16)
    timeout_s: float = Field(30.0, gt=0)


class ApiSettings(_Section):
    """HTTP API listener."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: serve HTTPS with this certificate chain and key (PEM); both or neither
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: a connection that has not sent a whole request head this many seconds after it
    #: opened, or after its last answer, is closed (idle keep-alive and slow headers)
    idle_timeout_s: float = Field(15.0, gt=0, le=3600)
    #: a request's body must have arrived this many seconds after its head, or the
    #: connection is closed (a 64 MiB model upload needs about 5 Mbit/s at 120 s)
    body_timeout_s: float = Field(120.0, gt=0, le=3600)
    #: open API connections at most; a new one beyond it is closed at once and counted.
    #: 0 = sized at start-up from the file-descriptor limit (cloud_hub/api/_listener.py)
    max_connections: int = Field(0, ge=0, le=1_000_000)
    #: connections beyond max_connections that may still ask /healthz, /readyz and
    #: /metrics (each closed after one answer or a few seconds), so probes get through
    probe_connections: int = Field(8, ge=0, le=1024)
    #: raise the soft file-descriptor limit (RLIMIT_NOFILE) to the hard one at start-up
    raise_fd_limit: bool = True

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both api.tls_cert_file and api.tls_key_file, or neither")
        return self


class RegistrySettings(_Section):
    """The SQLite file of the shared state when ``state.url`` is unset (its older name)."""

    path: Path = Path("registry.sqlite")


# -- [state]: where the shared hub state lives (cloud_hub/store/_state.py) ------------------
class StateSettings(_Section):
    """Where the hub's shared state lives (docs/hub.md, "State store")."""

    #: "" = the SQLite file at registry.path; sqlite:///<file> or postgresql://user@host/db
    url: str = ""
    #: the PostgreSQL password (set it from the environment: TWINSYNC_HUB__STATE__PASSWORD)
    password: SecretStr = SecretStr("")
    #: file holding the PostgreSQL password (wins over password)
    password_file: Path | None = None
    #: PostgreSQL connections each instance keeps open at most
    pool_size: int = Field(4, ge=1, le=64)
    #: how long to wait for a connection (PostgreSQL) or a SQLite write lock
    timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if value:
            parse_state_url(value)
        return value

    @model_validator(mode="after")
    def _password_for_postgres(self) -> StateSettings:
        given = self.password.get_secret_value() or self.password_file is not None
        if given and self.target.scheme == "sqlite":
            raise ValueError("state.password and state.password_file are for PostgreSQL urls")
        return self

    @property
    def target(self) -> StateUrl:
        """The parsed ``url`` (a SQLite file at ``registry.path`` when unset)."""
        return parse_state_url(self.url) if self.url else StateUrl("sqlite", path=Path())

    def secret(self) -> str:
        """The PostgreSQL password: ``password_file``'s content, else ``password``."""
        if self.password_file is None:
            return self.password.get_secret_value()
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read state.password_file {self.password_file}: {exc.strerror}"
            ) from None

    def resolved(self, base: Path, registry_path: Path) -> tuple[StateSettings, Path]:
        """Paths made absolute against ``base``, and the SQLite file both ``registry.path``
        and ``state.url`` then name (the old setting is kept as the default's location)."""
        update: dict[str, Any] = {
            "password_file": None if self.password_file is None else base / self.password_file
        }
        target = self.target
        if target.scheme == "sqlite":
            registry_path = base / registry_path if not self.url else base / (target.path or "")
            update["url"] = f"sqlite:///{registry_path}"
        else:
            registry_path = base / registry_path  # unused with PostgreSQL, but not relative
        return self.model_copy(update=update), registry_path


class KeySettings(_Section):
    """Where the hub's signing key and the brands' pseudonymization keys live."""

    secrets_dir: Path = Path("secrets")
    #: key rotation: how long a twin link may wait for the linking device's older data
    #: to arrive before it is refused (see cloud_hub/privacy/_rekey.py)
    link_grace_s: float = Field(600.0, gt=0, le=30 * 86_400)


class LimitSettings(_Section):
    """Hard limits on what devices may send."""

    max_payload_bytes: int = Field(256 * 1024, ge=1024, le=1024 * 1024)
    max_future_ms: int = Field(86_400_000, ge=0)
    max_age_ms: int = Field(90 * 86_400_000, ge=0)
    replay_window: int = Field(4096, ge=64, le=1 << 20)
    #: refuse deltas whose body is not sealed to the hub (docs/privacy.md, "Sealed
    #: deltas"), from every brand ...
    require_sealed: bool = False
    #: ... or from these brands only
    require_sealed_brands: list[str] = Field(default_factory=list)

    @field_validator("require_sealed_brands")
    @classmethod
    def _sealed_brands(cls, value: list[str]) -> list[str]:
        return _check_brands(value)

    def requires_sealed(self, brand: str) -> bool:
        """Whether an unsealed delta from ``brand`` must be refused."""
        return self.require_sealed or brand in self.require_sealed_brands


class ModelRolloutSettings(_Section):
    """Model rollout (docs/hub.md, "Model rollout")."""

    #: where uploaded model files are kept (shared by every hub instance, like the registry)
    dir: Path = Path("models")
    #: base URL devices download model files from; "" = this instance's API URL
    public_url: str = Field("", pattern=r"^(https?://\S+)?$")
    #: how often device model sets are recomputed (changes through the API apply at once)
    reconcile_s: float = Field(10.0, gt=0, le=3600)


class WebhookSettings(_Section):
    """Where the hub may POST a brand's webhook events (docs/hub.md, "Webhooks")."""

    #: destinations permitted although they are not public addresses (an internal
    #: receiver): host names, IP addresses or CIDR networks, each optionally ":port"
    #: ("[IPv6]:port"). The hub's own InfluxDB, broker and API stay refused regardless.
    allow: list[str] = Field(default_factory=list)
    #: refuse plain http:// endpoints
    require_https: bool = True
    #: per delivery attempt
    timeout_s: float = Field(10.0, gt=0, le=30)

    @field_validator("allow")
    @classmethod
    def _allow_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_allow(entry)  # ValueError naming the entry and the forms it may take
        return value


_DURATION_UNITS = {"h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def duration_ms(text: str) -> int | None:
    """A retention duration (``"12h"``, ``"90d"``, ``"52w"``) in ms; ``""`` is no limit.

    Raises ValueError on anything else: hours are the finest unit because InfluxDB
    refuses retention policies shorter than one hour and sweeps run at most that often.
    """
    if text == "":
        return None
    number, unit = text[:-1], text[-1:]
    # ASCII digits only, and at most 6 of them (999999h is 114 years): int() would also
    # take "１２", "1_0" and " 12", and str.isdigit() takes "²", which int() refuses.
    digits = number.isascii() and number.isdigit() and len(number) <= 6
    if unit not in _DURATION_UNITS or not digits or int(number) == 0:
        raise ValueError(f'invalid duration {text!r}: use e.g. 12h, 90d, 52w, or "" for none')
    return int(number) * _DURATION_UNITS[unit]


class RetentionSettings(_Section):
    """How long each field class is kept (docs/privacy.md, data inventory)."""

    #: signal-fed twin fields (measurement ``twin``); "" = until erased
    usage: str = ""
    #: features and predictions (measurement ``twin_profile``); "" = until erased
    profile: str = ""
    #: database-wide ceiling: the InfluxDB retention policy ``influx.retention_policy``
    #: is created or altered to this duration at start-up; "" = leave policies alone
    ceiling: str = ""
    #: how often a class is swept (shared by every instance through the registry file)
    sweep_s: float = Field(3600.0, gt=0, le=86_400)

    @field_validator("usage", "profile", "ceiling")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_ms(value)
        return value

    @model_validator(mode="after")
    def _ceiling_covers_classes(self) -> RetentionSettings:
        ceiling = duration_ms(self.ceiling)
        if ceiling is None:
            return self
        for name in ("usage", "profile"):
            limit = duration_ms(getattr(self, name))
            # InfluxDB would drop points before the hub's own limit says so.
            if limit is None or limit > ceiling:
                raise ValueError(
                    f"retention.{name} ({getattr(self, name) or 'no limit'}) is longer than "
                    f"retention.ceiling ({self.ceiling})"
                )
        return self

    def limits_ms(self) -> dict[str, int]:
        """Field class -> retention in ms, for the classes that have a limit."""
        out = {}
        for name in ("usage", "profile"):
            limit = duration_ms(getattr(self, name))
            if limit is not None:
                out[name] = limit
        return out


class IndexSettings(_Section):
    """The twin query index (docs/hub.md, "Twin query index")."""

    #: keep the index up to date at ingest and answer filtered twin queries; off: this
    #: instance neither (privacy requests still clean the index); every instance of a
    #: deployment must agree, and an index turned on again needs a rebuild
    enabled: bool = True


class SegmentSettings(_Section):
    """The scheduled segment share check (docs/hub.md, "Segment intelligence")."""

    #: how often every served brand's segment shares are checked (0: never; the route
    #: GET .../segments/alerts answers either way)
    share_check_s: float = Field(3600.0, ge=0, le=86_400)
    #: days of normal variation a share is compared with
    share_baseline_days: int = Field(14, ge=3, le=90)
    #: alert beyond this many sigma
    share_k: int = Field(3, ge=2, le=10)


class TriggerSettings(_Section):
    """Trigger events (docs/hub.md, "Triggers"): how much of the event log is kept for
    the resumable stream (``Last-Event-ID``)."""

    #: events older than this many days leave the log (queued deliveries are kept)
    log_retention_days: int = Field(7, ge=1, le=365)
    #: at most this many events per brand stay in the log (the oldest leave first)
    log_max_events: int = Field(100_000, ge=100, le=10_000_000)
    #: a stream client that takes no data for this long is dropped (it resumes with
    #: Last-Event-ID)
    stream_write_timeout_s: float = Field(10.0, gt=0, le=300)


class TagSettings(_Section):
    """Behaviour tags (docs/edge-agent.md, "Behaviour tags")."""

    #: a tag catalog document (version 2 or more) the hub checks at start-up, signs with
    #: its key and sends, retained, to every brand's devices; unset: devices keep the
    #: default catalog they ship
    catalog: Path | None = None


class HubConfig(_Section):
    """The whole hub configuration (see docs/hub.md for every field)."""

    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    api: ApiSettings = ApiSettings()
    registry: RegistrySettings = RegistrySettings()
    keys: KeySettings = KeySettings()
    limits: LimitSettings = LimitSettings()
    models: ModelRolloutSettings = ModelRolloutSettings()
    retention: RetentionSettings = RetentionSettings()
    webhooks: WebhookSettings = WebhookSettings()
    state: StateSettings = StateSettings()
    index: IndexSettings = IndexSettings()
    segments: SegmentSettings = SegmentSettings()
    triggers: TriggerSettings = TriggerSettings()
    tags: TagSettings = TagSettings()

    @model_validator(mode="after")
    def _one_sqlite_file(self) -> HubConfig:
        target = self.state.target
        # With a PostgreSQL url registry.path names nothing the hub opens (it is only the
        # SQLite default's location), so an example config that sets it stays valid.
        explicit = "path" in self.registry.model_fields_set and target.scheme == "sqlite"
        if explicit and self.state.url and target.path != self.registry.path:
            raise ValueError(
                "state.url and registry.path name different SQLite files: set state.url only "
                "(registry.path is the older name of the same setting)"
            )
        return self

    @model_validator(mode="after")
    def _ceiling_needs_policy(self) -> HubConfig:
        if self.retention.ceiling and not self.influx.retention_policy:
            # The hub manages only a policy it is told the name of, never the default one
            # another tool may own.
            raise ValueError("retention.ceiling needs influx.retention_policy (its name)")
        return self

    def resolved(self, base: Path) -> HubConfig:
        """Copy with what is relative made absolute against ``base``: the state store's
        location (a URL, not a path setting). Path settings already are, as in the agent
        (``protocol.load_settings``); joining an absolute path to ``base`` keeps it."""
        state, registry_path = self.state.resolved(base, self.registry.path)
        return self.model_copy(
            update={
                "state": state,
                "registry": self.registry.model_copy(update={"path": registry_path}),
            }
        )


def load_hub_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    environ: dict[str, str] | None = None,
) -> HubConfig:
    """Load and validate the hub configuration; raise ConfigError naming what is wrong."""
    base = Path.cwd()
    text: str | None = None
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read hub config {file}: {exc.strerror}") from exc
        base = file.resolve().parent
    try:
        config = load_settings(
            HubConfig,
            text,
            what="hub config",
            source=f"hub config {path}",
            environ=os.environ if environ is None else environ,
            prefix=_ENV_PREFIX,
            base=base,
            overrides=overrides,
        )
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    return config.resolved(base)
