"""A brand's trigger rules: what each watches, checked and bounded, and where they are kept.

A rule is JSON a brand backend sends (``POST /v1/brands/{brand}/triggers``)::

    {"name": "churn alert", "kind": "churn_risk", "threshold": 0.7, "direction": "up",
     "product": "coffee", "where": "coffee.segment in (1, 2)",
     "webhook": "https://crm.example.com/hooks/twinsync"}

Kinds and the twin fields they watch (``product`` narrows them to one product's):

- ``churn_risk``: ``<product>.churn_risk`` crossing ``threshold`` (``direction`` ``up``:
  from below to at-or-above it; ``down``: from at-or-above to below);
- ``segment_change``: ``<product>.segment`` took another value (also its first one);
- ``tag``: the behaviour tag ``<product>.tag_<tag>`` was ``gained`` or ``lost``
  (``change``);
- ``anomaly``: ``<product>.anomalies_total`` grew.

``where`` (the twin query language, docs/brand-api.md "Finding twins") restricts a rule to
the twins that match it after the change. ``webhook`` (optional) is the rule's own
endpoint: rules of one brand serve different systems (a CRM, an app backend), so the
target is per rule; a rule without one feeds only the event stream. Its URL passes the
same egress policy (SSRF rules) as the privacy webhook, and it gets its own signing
secret, shown once.

Limits (hostile input is refused before any work): :data:`MAX_RULES` rules per brand,
:data:`MAX_RULE_BYTES` bytes of JSON per rule, ``where`` at most the query language's
own limit, a name of 1-64 printable characters. Every refusal is a 400 (413 for size,
409 for too many rules) that says what to change.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cloud_hub._errors import RequestError
from cloud_hub.privacy import EgressPolicy
from cloud_hub.store import StateStore, Tx
from protocol import MODEL_FIELDS, PRODUCTS, Clock, check_brand

__all__ = [
    "MAX_RULES",
    "MAX_RULE_BYTES",
    "Rule",
    "Rules",
    "StoredRule",
    "parse_rule",
    "rules_in",
]

#: the most rules one brand may hold
MAX_RULES = 100
#: the largest rule body accepted (bytes of JSON)
MAX_RULE_BYTES = 4096
_MAX_WHERE = 2000
_RULE_ID = re.compile(r"^trg_[0-9a-f]{12}$")


class Rule(BaseModel):
    """One trigger rule as the brand sent it (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    kind: Literal["churn_risk", "segment_change", "tag", "anomaly"]
    product: str | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    direction: Literal["up", "down"] = "up"
    tag: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,31}$")
    change: Literal["gained", "lost"] = "gained"
    where: str | None = Field(None, min_length=1, max_length=_MAX_WHERE)
    webhook: str | None = Field(None, max_length=2048)

    @model_validator(mode="after")
    def _kind_params(self) -> Rule:
        if not self.name.isprintable():
            raise ValueError("name: printable characters only")
        if self.product is not None and self.product not in PRODUCTS:
            raise ValueError(f"product must be one of: {', '.join(sorted(PRODUCTS))}")
        if (self.kind == "churn_risk") != (self.threshold is not None):
            raise ValueError("threshold (0-1) goes with kind churn_risk, and only with it")
        if (self.kind == "tag") != (self.tag is not None):
            raise ValueError("tag (a tag name, e.g. weekend_heavy) goes with kind tag only")
        return self

    def fields(self) -> tuple[str, ...]:
        """The twin fields this rule watches."""
        products = [self.product] if self.product else sorted(PRODUCTS)
        if self.kind == "tag":
            return tuple(f"{p}.tag_{self.tag}" for p in products)
        output = {"churn_risk": "churn_risk", "segment_change": "segment"}.get(
            self.kind, "anomalies_total"
        )
        return tuple(MODEL_FIELDS[(p, output)] for p in products if (p, output) in MODEL_FIELDS)

    def fires(self, before: object, after: object) -> bool:
        """Whether a watched field going from ``before`` to ``after`` (None: absent) is
        this rule's condition."""
        if after is None or before == after:
            return False
        if self.kind == "segment_change":
            return True
        if self.kind == "anomaly":
            return isinstance(after, int | float) and after > (
                before if isinstance(before, int | float) else 0
            )
        if self.kind == "tag":
            # a tag is a boolean field (stored as 1/0 when the catalog does not know it)
            was, now = bool(before), bool(after)
            return (not was and now) if self.change == "gained" else (was and not now)
        assert self.threshold is not None
        if not isinstance(after, int | float) or isinstance(after, bool):
            return False
        low = not isinstance(before, int | float) or before < self.threshold
        if self.direction == "up":
            return low and after >= self.threshold
        return not low and before is not None and after < self.threshold


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A rule as kept: its id, the rule, its endpoint's secret (None without one)."""

    rule_id: str
    rule: Rule
    secret: str | None
    created_ms: int

    def summary(self) -> dict[str, Any]:
        """The API's view (never the secret)."""
        return {
            "rule_id": self.rule_id,
            "created_ms": self.created_ms,
            **self.rule.model_dump(exclude_none=True),
            "fields": list(self.rule.fields()),
        }


def parse_rule(raw: bytes) -> Rule:
    """The rule in request body ``raw``; RequestError (413 ``rule_too_large``, 400
    ``bad_rule``) saying what to change."""
    if len(raw) > MAX_RULE_BYTES:
        raise RequestError(
            f"a rule is at most {MAX_RULE_BYTES} bytes of JSON", reason="rule_too_large", status=413
        )
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RequestError(
            'send a JSON object, e.g. {"name": "churn alert", "kind": "churn_risk", '
            '"threshold": 0.7}',
            reason="bad_rule",
        )
    try:
        return Rule.model_validate(body)
    except ValidationError as exc:
        why = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'rule'}: {e['msg']}" for e in exc.errors()
        )
        raise RequestError(f"invalid trigger rule: {why}", reason="bad_rule") from None


class Rules:
    """The brands' rules in the state store (blocking: call from a thread)."""

    def __init__(self, *, state: StateStore, clock: Clock, egress: EgressPolicy) -> None:
        self._state = state
        self._clock = clock
        self.egress = egress

    def add(self, brand: str, rule: Rule) -> tuple[StoredRule, str | None]:
        """Keep ``rule``; return it and its webhook's signing secret (shown once; None
        without a webhook). The webhook URL passes the egress policy first (400
        ``bad_url`` / ``url_refused``); a brand at :data:`MAX_RULES` gets 409."""
        brand = check_brand(brand)
        if rule.webhook is not None:
            self.egress.check_url(rule.webhook)
        secret = secrets.token_urlsafe(32) if rule.webhook is not None else None
        stored = StoredRule(f"trg_{secrets.token_hex(6)}", rule, secret, self._clock.now_ms())
        with self._state.transaction() as tx:
            tx.lock(f"trigger_rules:{brand}")  # count and insert as one step
            held = tx.execute(
                "SELECT COUNT(*) FROM trigger_rules WHERE brand = ?", (brand,)
            ).scalar()
            if int(held) >= MAX_RULES:
                raise RequestError(
                    f"brand {brand} holds {MAX_RULES} trigger rules, the most allowed: "
                    "delete one first",
                    reason="too_many_rules",
                    status=409,
                )
            tx.insert(
                "trigger_rules",
                {
                    "brand": brand,
                    "rule_id": stored.rule_id,
                    "rule": rule.model_dump_json(exclude_none=True),
                    "url": rule.webhook,
                    "secret": secret,
                    "created_ms": stored.created_ms,
                },
            )
        return stored, secret

    def list(self, brand: str) -> list[StoredRule]:
        """Every rule of ``brand``, oldest first."""
        with self._state.transaction(readonly=True) as tx:
            return rules_in(tx, brand)

    def get(self, brand: str, rule_id: str) -> StoredRule:
        """One rule (404 ``unknown_rule``)."""
        for rule in self.list(brand) if _RULE_ID.match(rule_id) else []:
            if rule.rule_id == rule_id:
                return rule
        raise RequestError(
            f"brand {brand} has no trigger rule {rule_id!r}", reason="unknown_rule", status=404
        )

    def delete(self, brand: str, rule_id: str) -> None:
        """Remove a rule and its undelivered events (404 ``unknown_rule``); its events in
        the log stay until retention removes them."""
        with self._state.transaction() as tx:
            gone = tx.execute(
                "DELETE FROM trigger_rules WHERE brand = ? AND rule_id = ?", (brand, rule_id)
            ).rowcount
            tx.execute(
                "DELETE FROM trigger_queue WHERE brand = ? AND rule_id = ?", (brand, rule_id)
            )
        if not gone:
            raise RequestError(
                f"brand {brand} has no trigger rule {rule_id!r}", reason="unknown_rule", status=404
            )


def rules_in(tx: Tx, brand: str) -> list[StoredRule]:
    """The rules of ``brand`` as transaction ``tx`` sees them."""
    return [
        StoredRule(str(rid), Rule.model_validate_json(str(body)), secret, int(created))
        for rid, body, secret, created in tx.execute(
            "SELECT rule_id, rule, secret, created_ms FROM trigger_rules WHERE brand = ? "
            "ORDER BY created_ms, rule_id",
            (brand,),
        )
    ]
