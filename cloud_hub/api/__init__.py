"""api: the HTTP API for brand backends.

The aiohttp application (``build_app`` and the privacy, rollout and trigger routes), API keys and
scopes (``ApiKeys``, the guard), the one error path every refusal takes, strict
parameter parsing, the twin query language (``parse_where``), the gated listener that
caps connections, the OpenAPI document that describes every route (``openapi/``, served
at ``GET /v1/openapi.json``), and the brand dashboard's static pages (``dashboard/``,
served under ``/dashboard/``), and the scheduled segment share check
(``ShareWatch``) that logs what ``GET .../segments/alerts`` would say and sets its gauge.
"""

from __future__ import annotations

from ._app import build_app
from ._auth import SCOPES, ApiKey, ApiKeys
from ._dashboard import CONTENT_SECURITY_POLICY as DASHBOARD_CSP
from ._guard import route, route_scopes
from ._lab import LabContext, add_lab_routes
from ._listener import PROBE_LIFETIME_S, ConnectionGate, GatedSite, connection_cap, install
from ._privacy import PrivacyContext, add_privacy_routes
from ._rollouts import RolloutContext, add_rollout_routes
from ._share_watch import ShareWatch
from ._triggers import TriggerContext, add_trigger_routes
from ._twin_query import MAX_DEPTH, MAX_IN, MAX_TERMS, MAX_TEXT, MAX_WHERE, parse_where
from ._twins import COUNT_CAP, MAX_FIELDS
from ._uplift import newcombe, relative_effect, wilson
from .openapi import document as openapi_document

__all__ = [
    "COUNT_CAP",
    "DASHBOARD_CSP",
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
    "LabContext",
    "PrivacyContext",
    "RolloutContext",
    "ShareWatch",
    "TriggerContext",
    "add_lab_routes",
    "add_privacy_routes",
    "add_rollout_routes",
    "add_trigger_routes",
    "build_app",
    "connection_cap",
    "install",
    "newcombe",
    "openapi_document",
    "parse_where",
    "relative_effect",
    "route",
    "route_scopes",
    "wilson",
]
