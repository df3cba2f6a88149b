"""The strategy lab's forecast: what a campaign would do, before it reaches anyone.

A campaign is a targeting rule over the twin query index (the ``where`` language of
cloud_hub.api._twin_query), an offer (a name and its cost per treated twin) and an
effect: an assumed share of would-be churners the offer keeps, or ``learnt:<id>``, the
relative effect an experiment measured (with its interval). The forecast:

- **reach**: the twins the rule selects; **cost**: reach x the offer's cost;
- **expected saved churners**: the sum over the reached twins of churn risk x effect
  (a twin without a churn risk counts 0 and is counted in ``unscored``), with the
  effect's interval when it has one; **cost per saved churner**;
- **the split by segment**, per product: each segment's members, reach and expected
  benefit, each compared with the whole population's.

**Fairness rule.** A segment is flagged when its reach rate, or its expected benefit per
member, is below ``fairness_ratio`` (0.8 unless asked) times the population's, or above
its inverse (``under_reached`` / ``over_reached``, ``less_benefit`` / ``more_benefit``).
This is the four-fifths rule of adverse-impact analysis, applied both ways: a segment
the campaign reaches at under 4/5 of everyone's rate is left out, one it reaches at over
5/4 is singled out; either is worth a look before a campaign runs. Segments of fewer
than :data:`MIN_MEMBERS` twins are marked ``too_small`` instead: their ratios are noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cloud_hub._errors import RequestError
from cloud_hub.store import Filter, IndexReader, Position, SortKey

from ._twin_query import MAX_WHERE, parse_where

__all__ = [
    "FAIRNESS_RATIO",
    "MAX_TWINS",
    "MIN_MEMBERS",
    "Campaign",
    "Effect",
    "forecast",
    "parse_campaign",
    "scan",
]

#: the fairness rule's default ratio (the four-fifths rule)
FAIRNESS_RATIO = 0.8
#: segments smaller than this are not judged (``too_small``)
MIN_MEMBERS = 20
#: the most twins one forecast or experiment reads (a page of the index at a time)
MAX_TWINS = 100_000
_PAGE = 5_000
_MAX_NAME = 64
_MAX_COST = 1e9


@dataclass(frozen=True)
class Effect:
    """A relative effect on churn (the share of would-be churners kept) and its interval;
    ``source`` is ``assumed`` or ``learnt:<experiment id>``."""

    value: float
    low: float
    high: float
    source: str

    def to_json(self) -> dict[str, Any]:
        """As answered."""
        return {"value": self.value, "low": self.low, "high": self.high, "source": self.source}


@dataclass(frozen=True)
class Campaign:
    """A parsed campaign: the rule's text and filter, the offer, the effect asked for."""

    where_text: str | None
    where: Filter | None
    offer: str
    cost: float
    effect: float | str
    fairness_ratio: float


def _where(body: dict[str, Any], now_ms: int) -> tuple[str | None, Filter | None]:
    raw = body.get("where")
    if raw is None or raw == "":
        return None, None
    if not isinstance(raw, str) or len(raw) > MAX_WHERE:
        raise RequestError(
            f'"where" must be a twin query (text of at most {MAX_WHERE} characters, the '
            "language of GET .../twins?where=)",
            reason="bad_where",
        )
    return raw, parse_where(raw, now_ms)


def parse_offer(body: dict[str, Any]) -> tuple[str, float]:
    """``offer``: ``{"name", "cost"}`` (400 ``bad_offer`` with what to send)."""
    offer = body.get("offer")
    name = offer.get("name") if isinstance(offer, dict) else None
    cost = offer.get("cost", 0) if isinstance(offer, dict) else None
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= _MAX_NAME
        or not name.isprintable()
        or isinstance(cost, bool)
        or not isinstance(cost, int | float)
        or not 0 <= cost <= _MAX_COST
        or set(offer) - {"name", "cost"}  # type: ignore[arg-type]
    ):
        raise RequestError(
            f'"offer" must be {{"name": 1-{_MAX_NAME} printable characters, "cost": the cost '
            f"per treated twin, 0 to {_MAX_COST:g}}}",
            reason="bad_offer",
        )
    return name, float(cost)


def parse_campaign(body: dict[str, Any], now_ms: int) -> Campaign:
    """A campaign from a request body (400 with what to change)."""
    unknown = sorted(set(body) - {"where", "offer", "effect", "fairness_ratio"})
    if unknown:
        raise RequestError(
            f"unknown member {unknown[0]!r}: a campaign has where, offer, effect and "
            "fairness_ratio",
            reason="bad_campaign",
        )
    where_text, where = _where(body, now_ms)
    name, cost = parse_offer(body)
    effect = body.get("effect")
    if isinstance(effect, str) and effect.startswith("learnt:") and len(effect) <= 100:
        pass
    elif isinstance(effect, bool) or not isinstance(effect, int | float) or not 0 <= effect <= 1:
        raise RequestError(
            '"effect" must be the share of would-be churners the offer keeps (a number from '
            '0 to 1) or "learnt:<experiment id>" (the effect an experiment measured)',
            reason="bad_effect",
        )
    ratio = body.get("fairness_ratio", FAIRNESS_RATIO)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.5 <= ratio < 1:
        raise RequestError(
            '"fairness_ratio" must be a number from 0.5 to below 1 (0.8: the four-fifths rule)',
            reason="bad_fairness_ratio",
        )
    return Campaign(where_text, where, name, cost, effect, float(ratio))


def scan(index: IndexReader, brand: str, where: Filter | None) -> Iterator[dict[str, Any]]:
    """Every twin of ``brand`` matching ``where`` (the index's rows, by twin id); 413
    ``too_many_twins`` past :data:`MAX_TWINS` (blocking: run it in a thread)."""
    after: Position | None = None
    seen = 0
    while True:
        page = index.query(brand, where, SortKey(), _PAGE, after, (), MAX_TWINS)
        if page.count > MAX_TWINS:
            raise RequestError(
                f"the rule selects more than {MAX_TWINS} twins: narrow it with where",
                reason="too_many_twins",
                status=413,
            )
        yield from page.items
        seen += len(page.items)
        if page.next is None:
            return
        after = page.next


def _ratio(part: float, whole: float) -> float | None:
    return None if whole == 0 else part / whole


def _flags(reach: float | None, benefit: float | None, ratio: float) -> list[str]:
    flags = []
    for value, low, high in (
        (reach, "under_reached", "over_reached"),
        (benefit, "less_benefit", "more_benefit"),
    ):
        if value is None:
            continue
        if value < ratio:
            flags.append(low)
        elif value > 1 / ratio:
            flags.append(high)
    return flags


def segment_split(
    population: list[dict[str, Any]],
    reached: set[str],
    benefit: Callable[[dict[str, Any]], float],
    ratio: float,
) -> list[dict[str, Any]]:
    """Per product and segment: members, reached, rates and the fairness flags."""
    total = len(population)
    reach_all = len(reached) / total if total else 0.0
    benefit_all = sum(benefit(t) for t in population if t["twin"] in reached)
    benefit_all = benefit_all / total if total else 0.0
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for twin in population:
        for product, segment in twin["segments"].items():
            groups.setdefault((product, segment), []).append(twin)
    out = []
    for (product, segment), members in sorted(groups.items(), key=lambda g: str(g[0])):
        mine = [t for t in members if t["twin"] in reached]
        reach_rate = len(mine) / len(members)
        per_member = sum(benefit(t) for t in mine) / len(members)
        reach_ratio = _ratio(reach_rate, reach_all)
        benefit_ratio = _ratio(per_member, benefit_all)
        small = len(members) < MIN_MEMBERS
        out.append(
            {
                "product": product,
                "segment": segment,
                "members": len(members),
                "reached": len(mine),
                "reach_rate": reach_rate,
                "reach_ratio": reach_ratio,
                "benefit_per_member": per_member,
                "benefit_ratio": benefit_ratio,
                "flags": ["too_small"] if small else _flags(reach_ratio, benefit_ratio, ratio),
            }
        )
    return out


def forecast(
    campaign: Campaign,
    effect: Effect,
    population: list[dict[str, Any]],
    targeted: list[dict[str, Any]],
) -> dict[str, Any]:
    """The forecast of ``campaign`` (module docstring) over the index rows given."""
    reached = {t["twin"] for t in targeted}
    risks = [t["churn_risk"] for t in targeted if t["churn_risk"] is not None]
    risk_sum = math.fsum(risks)
    saved = {
        "value": risk_sum * effect.value,
        "low": risk_sum * effect.low,
        "high": risk_sum * effect.high,
    }
    cost = len(targeted) * campaign.cost
    segments = segment_split(
        population,
        reached,
        lambda t: (t["churn_risk"] or 0.0) * effect.value,
        campaign.fairness_ratio,
    )
    return {
        "where": campaign.where_text,
        "offer": {"name": campaign.offer, "cost": campaign.cost},
        "effect": effect.to_json(),
        "population": len(population),
        "reach": len(targeted),
        "unscored": len(targeted) - len(risks),
        "expected_saved": saved,
        "cost": cost,
        "cost_per_saved": cost / saved["value"] if saved["value"] > 0 else None,
        "fairness": {
            "rule": "four-fifths: a segment's reach rate or expected benefit per member "
            "below ratio x the population's, or above it / ratio",
            "ratio": campaign.fairness_ratio,
            "min_members": MIN_MEMBERS,
        },
        "segments": segments,
        "flagged": sum(1 for s in segments if set(s["flags"]) - {"too_small"}),
    }
