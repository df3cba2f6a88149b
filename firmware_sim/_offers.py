"""Offers: customers who respond to a brand's offer with a hidden true effect per persona.

The strategy lab (docs/hub.md, "Strategy lab") estimates what an offer does from a
randomised experiment; this module is the answer it must find. An :class:`OfferSpec`
gives each persona a true effect: the share of that persona's would-be churners an
exposure *saves* (a relative reduction of the churn probability over the outcome
window, the same for every customer of the persona). Who is saved is a seeded draw per
customer (keyed by seed, offer and subject, like every other knob's generator), so the
same spec gives the same answer, and both potential outcomes of every customer are
known: whether they churn without the offer (their churn date, ground truth of the
fleet) and whether the offer would keep them.

:class:`OfferTruth` is the ground truth of one offer on one fleet: it records who was
exposed when (what the agent hands the local application), says who churns in an
outcome window given the exposures, and computes the true average effect over any
population of customers, the number an experiment's interval must contain.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from protocol import CATALOG, SignalIn

from ._errors import SimulationError
from ._fleet import Fleet

__all__ = ["CHECK_IN_SIGNALS", "OfferSpec", "OfferTruth"]

#: per product, the counter signal a customer who is still there sends at the end of an
#: outcome window (a counter always makes an op, so the twin's last seen moves)
CHECK_IN_SIGNALS: dict[str, str] = {}
for _spec in CATALOG.values():
    if _spec.kind == "counter" and _spec.shared:
        CHECK_IN_SIGNALS.setdefault(_spec.product, _spec.name)


@dataclass(frozen=True)
class OfferSpec:
    """An offer and its hidden true effect per persona (0: none, 1: saves every
    would-be churner of the persona); personas left out have ``default``."""

    name: str = "loyalty_discount"
    effect: Mapping[str, float] = field(default_factory=dict)
    default: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for persona, value in {**self.effect, "default": self.default}.items():
            if not 0.0 <= value <= 1.0:
                raise SimulationError(
                    f"OfferSpec.effect[{persona!r}] must be a share of churners saved, "
                    f"between 0 and 1; got {value}"
                )
        if not self.name:
            raise SimulationError("OfferSpec.name must not be empty")

    def true_effect(self, persona: str) -> float:
        """The hidden relative effect of an exposure on a customer of ``persona``."""
        return float(self.effect.get(persona, self.default))


class OfferTruth:
    """The ground truth of ``spec`` on ``fleet``: exposures, who is saved, who churns."""

    def __init__(self, fleet: Fleet, spec: OfferSpec) -> None:
        self.fleet = fleet
        self.spec = spec
        #: subject -> when (Unix ms) the customer was first exposed to the offer
        self.exposed: dict[str, int] = {}

    def expose(self, subject: str, at_ms: int) -> None:
        """The local application showed the offer to ``subject`` (the first time counts)."""
        if subject not in {c.subject for c in self.fleet.customers}:
            raise SimulationError("expose: that subject is no customer of this fleet")
        self.exposed.setdefault(subject, at_ms)

    def saved(self, subject: str) -> bool:
        """Whether an exposure keeps this customer (a seeded draw against their
        persona's true effect; meaningful only for a would-be churner)."""
        customer = self.fleet.customer(subject)
        key = f"{self.spec.seed}|offer|{self.spec.name}|{subject}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
        return rng.random() < self.spec.true_effect(customer.persona)

    def would_churn(self, subject: str, start_ms: int, end_ms: int) -> bool:
        """Whether the customer churns in ``[start_ms, end_ms)`` without the offer."""
        churn_ms = self.fleet.customer(subject).churn_ms
        return churn_ms is not None and start_ms <= churn_ms < end_ms

    def churns(self, subject: str, start_ms: int, end_ms: int) -> bool:
        """Whether the customer has churned by ``end_ms`` given the exposures so far (a
        customer who churned before ``start_ms`` too: no offer brings them back); a
        would-be churner of the window exposed before their churn date and saved by the
        offer stays."""
        churn_ms = self.fleet.customer(subject).churn_ms
        if churn_ms is None or churn_ms >= end_ms:
            return False
        at = self.exposed.get(subject)
        kept = self.would_churn(subject, start_ms, end_ms) and at is not None and at <= churn_ms
        return not (kept and self.saved(subject))

    def true_uplift(self, subjects: Iterable[str], start_ms: int, end_ms: int) -> float:
        """The true average effect of exposing everyone of ``subjects`` against no one:
        the share of them that churn without the offer and would be kept by it (the
        reduction of the churn rate an experiment on them estimates)."""
        chosen = list(subjects)
        if not chosen:
            raise SimulationError("true_uplift needs at least one subject")
        kept = sum(self.would_churn(s, start_ms, end_ms) and self.saved(s) for s in chosen)
        return kept / len(chosen)

    def check_ins(
        self, device_id: str, start_ms: int, end_ms: int, at_ms: int, first_seq: int
    ) -> list[SignalIn]:
        """What ``device_id`` sends at the end of the outcome window: one use (its
        product's counter) per user who has not churned in it, stamped ``at_ms`` and
        numbered from ``first_seq``. Churned customers send nothing: their twin's last
        seen stays before the window, which is how the hub sees that they left."""
        device = self.fleet.device_map[device_id]
        name = CHECK_IN_SIGNALS.get(device.product)
        if name is None:
            raise SimulationError(f"no counter signal for product {device.product!r}")
        users = [u for u in device.users if not self.churns(u, start_ms, end_ms)]
        one: int | float = 1 if CATALOG[name].type == "int" else 1.0
        return [
            SignalIn(seq=first_seq + i, ts=at_ms, subject=user, name=name, value=one)
            for i, user in enumerate(users)
        ]
