"""api: the HTTP API for brand backends.

The aiohttp application (``build_app`` and the privacy and rollout routes), API keys and
scopes (``ApiKeys``, the guard), the one error path every refusal takes, strict
parameter parsing, the twin query language (``parse_where``), and the gated listener
that caps connections.
"""

from __future__ import annotations

from ._app import build_app
from ._auth import SCOPES, ApiKey, ApiKeys
from ._guard import route_scopes
from ._listener import PROBE_LIFETIME_S, ConnectionGate, GatedSite, connection_cap, install
from ._privacy import PrivacyContext, add_privacy_routes
from ._rollouts import RolloutContext, add_rollout_routes
from ._twin_query import MAX_DEPTH, MAX_IN, MAX_TERMS, MAX_TEXT, MAX_WHERE, parse_where
from ._twins import COUNT_CAP, MAX_FIELDS

__all__ = [
    "COUNT_CAP",
    "MAX_DEPTH",
    "MAX_FIELDS",
    "MAX_IN",
    "MAX_TERMS",
    "MAX_TEXT",
    "MAX_WHERE",
    "PROBE_LIFETIME_S",
    "SCOPES",
    "ApiKey",
    "ApiKeys",
    "ConnectionGate",
    "GatedSite",
    "PrivacyContext",
    "RolloutContext",
    "add_privacy_routes",
    "add_rollout_routes",
    "build_app",
    "connection_cap",
    "install",
    "parse_where",
    "route_scopes",
]
