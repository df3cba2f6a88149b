"""TwinSync protocol: the pure, sans-I/O library both the edge agent and the hub import.

Schema and codec (``Delta``, ``Ack``, ``Status``, ``Desired``, ``SignalIn``, ``packb``,
``unpackb``), the signed envelope (``seal``, ``open_envelope``), topics, hybrid logical
clocks, merge rules (``TwinState``), pseudonymization and the signal catalog. No sockets,
files or event loops here: a test enforces it.
"""

from ._baseline import SignalBaseline, is_baselined
from ._catalog import (
    CATALOG,
    FIELDS,
    MODEL_FIELDS,
    PRODUCTS,
    PURPOSES,
    FieldSpec,
    Kind,
    Purpose,
    Scalar,
    SignalSpec,
    ValueType,
    check_signal_value,
    field_spec,
    signal_spec,
)
from ._clock import Clock, ManualClock, SystemClock
from ._codec import DEFAULT_LIMITS, Limits, packb, unpackb
from ._envelope import ENVELOPE_VERSION, Envelope, SignedEnvelope, open_envelope, seal
from ._errors import (
    ClockError,
    DecodeError,
    IdentifierError,
    LimitError,
    SchemaError,
    SignatureError,
    TopicError,
    TwinSyncError,
)
from ._features import COMMON_FEATURES, WINDOW_DAYS, FeatureState, feature_names
from ._hlc import HLC, MAX_COUNTER, HybridClock
from ._ids import check_brand, check_device, check_field, check_twin
from ._keys import SigningKey, VerifyKey, key_id
from ._manifest import ANOMALY_FEATURES, MANIFEST_VERSION, ModelKind, ModelManifest, sha256_hex
from ._merge import FieldValue, TwinState
from ._messages import (
    MAX_OPS_PER_DELTA,
    MAX_TWINS_PER_DELTA,
    Ack,
    Delta,
    Desired,
    Op,
    Rejection,
    SignalIn,
    Status,
    TwinOps,
    decode_body,
)
from ._pseudonym import MIN_KEY_BYTES, normalise_subject, pseudonymize
from ._settings import SettingsError, layer_settings, validate_settings
from ._topics import BROADCAST, PREFIX, Channel, DeviceTopic, hub_subscriptions, parse_topic, topic

__all__ = [
    "ANOMALY_FEATURES",
    "BROADCAST",
    "CATALOG",
    "COMMON_FEATURES",
    "DEFAULT_LIMITS",
    "ENVELOPE_VERSION",
    "FIELDS",
    "HLC",
    "MANIFEST_VERSION",
    "MAX_COUNTER",
    "MAX_OPS_PER_DELTA",
    "MAX_TWINS_PER_DELTA",
    "MIN_KEY_BYTES",
    "MODEL_FIELDS",
    "PREFIX",
    "PRODUCTS",
    "PURPOSES",
    "WINDOW_DAYS",
    "Ack",
    "Channel",
    "Clock",
    "ClockError",
    "DecodeError",
    "Delta",
    "Desired",
    "DeviceTopic",
    "Envelope",
    "FeatureState",
    "FieldSpec",
    "FieldValue",
    "HybridClock",
    "IdentifierError",
    "Kind",
    "LimitError",
    "Limits",
    "ManualClock",
    "ModelKind",
    "ModelManifest",
    "Op",
    "Purpose",
    "Rejection",
    "Scalar",
    "SchemaError",
    "SettingsError",
    "SignalBaseline",
    "SignalIn",
    "SignalSpec",
    "SignatureError",
    "SignedEnvelope",
    "SigningKey",
    "Status",
    "SystemClock",
    "TopicError",
    "TwinOps",
    "TwinState",
    "TwinSyncError",
    "ValueType",
    "VerifyKey",
    "check_brand",
    "check_device",
    "check_field",
    "check_signal_value",
    "check_twin",
    "decode_body",
    "feature_names",
    "field_spec",
    "hub_subscriptions",
    "is_baselined",
    "key_id",
    "layer_settings",
    "normalise_subject",
    "open_envelope",
    "packb",
    "parse_topic",
    "pseudonymize",
    "seal",
    "sha256_hex",
    "signal_spec",
    "topic",
    "unpackb",
    "validate_settings",
]
