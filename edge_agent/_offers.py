"""offers: the strategy lab's exposures, checked and handed to the local application.

The hub sends a device ``protocol.OfferExposure`` on its own ``offer`` topic, signed
with the hub key (verified like every downlink by the uplink): show an experiment's
offer to these twins. For each twin the device holds, the exposure is handed to the
local application (the ``on_exposure`` callback the agent was given: the app knows its
users, it maps a twin id to one with ``Agent.twin_of``) only when

- the twin is not erased, and the device holds it (an unknown twin's time is kept, so
  a replay is refused should the device meet that customer later);
- it is fresh: newer than anything applied for that twin and experiment (a replayed
  exposure, or one older than the device's floor, is refused: edge_agent._freshness);
- the customer consents to ``marketing`` (an offer is marketing): otherwise it is
  recorded as not shown (``offers_no_consent``) and never shown later from this copy.

Every refusal is counted (``downlinks_refused``) and logged with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from protocol import OfferExposure

from ._freshness import DownlinkFreshness, count_refusal
from ._twin import TwinBook

__all__ = ["Exposure", "OfferInbox"]

log = logging.getLogger("edge_agent.offers")


@dataclass(frozen=True, slots=True)
class Exposure:
    """One offer for one twin, as the local application receives it."""

    twin: str
    experiment: str
    offer: str
    #: the hub's time of the exposure (Unix ms)
    ts_ms: int


class OfferInbox:
    """Checks each hub-signed exposure and hands what passes to ``deliver``."""

    def __init__(
        self,
        *,
        book: TwinBook,
        freshness: DownlinkFreshness,
        stats: dict[str, int],
        deliver: Callable[[Exposure], None],
    ) -> None:
        self._book = book
        self._fresh = freshness
        self._stats = stats
        self._deliver = deliver

    def receive(self, body: OfferExposure) -> None:
        """Apply one exposure (module docstring); never raises for what it refuses."""
        book, fresh, stats = self._book, self._fresh, self._stats
        at, experiment = body.ts_ms, body.experiment
        unknown: list[str] = []
        refused: list[str] = []
        for twin in body.twins:
            if book.is_erased(twin):
                continue
            if not book.knows(twin):
                unknown.append(twin)
                continue
            why = fresh.refusal(twin, "offer", experiment, at, experiment)
            if why:
                refused.append(why)
                continue
            # Marked before it is handed on: an exposure reaches the app at most once.
            fresh.applied(twin, "offer", [experiment], at, experiment)
            if not book.gate.allows(twin, "marketing"):
                stats["offers_no_consent"] = stats.get("offers_no_consent", 0) + 1
                continue
            stats["offers_shown"] = stats.get("offers_shown", 0) + 1
            self._deliver(Exposure(twin, experiment, body.offer, at))
        fresh.unknown(unknown, at, experiment)
        if refused:
            count_refusal(
                stats,
                f"offer of {experiment}",
                "not newer than what this device applied (a replay?)",
                ", ".join(sorted(set(refused))),
            )
