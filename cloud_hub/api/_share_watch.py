"""The scheduled segment share check: operators' side of the share alerts.

Every ``segments.share_check_s`` seconds, for each brand this instance serves
(``mqtt.brands``; all brands InfluxDB holds segments of when that is empty) and each
product, the rule of ``GET .../segments/alerts`` (cloud_hub.store._segment_alerts) is
run on the last ``segments.share_baseline_days`` days up to now. Each alert is logged
(brand, product, model, segment and why; never a twin) and the gauge
``twinsync_hub_segment_share_alerts{product}`` is set to the segments alerting, summed
over the brands, so a Prometheus alert on it being above 0 points an operator at the
route. Every instance checks and reports the same answer (a gauge, not a counter); a
failed check (InfluxDB away, a history over the read cap) is logged and retried at the
next turn.
"""

from __future__ import annotations

import asyncio
import logging

from cloud_hub._config import SegmentSettings
from cloud_hub._errors import StoreError
from cloud_hub._metrics import Metrics
from cloud_hub.store import (
    MEASUREMENT_OF,
    InfluxStore,
    ShareRule,
    TwinReader,
    quote_ident,
    share_alerts,
)
from protocol import MODEL_FIELDS, PRODUCTS, Clock

__all__ = ["ShareWatch"]

log = logging.getLogger("cloud_hub.segments")

_DAY_NS = 86_400_000 * 1_000_000


class ShareWatch:
    """Runs the share check every ``share_check_s`` (module docstring)."""

    def __init__(
        self,
        settings: SegmentSettings,
        *,
        reader: TwinReader,
        store: InfluxStore,
        metrics: Metrics,
        clock: Clock,
        brands: list[str],
    ) -> None:
        self._settings = settings
        self._reader = reader
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._brands = list(brands)

    async def run(self) -> None:
        """Check every ``share_check_s``, forever (0: never); cancel to stop."""
        if not self._settings.share_check_s:
            await asyncio.Event().wait()
        while True:
            await asyncio.sleep(self._settings.share_check_s)
            try:
                await self.check()
            except StoreError as exc:
                log.warning("segment share check failed (next turn): %s", exc)

    async def _served(self) -> list[str]:
        if self._brands:
            return self._brands
        field = MODEL_FIELDS[("coffee", "segment")]
        result = await self._store.query(
            f'SHOW TAG VALUES FROM {quote_ident(MEASUREMENT_OF[field])} WITH KEY = "brand"'
        )
        return sorted(str(v[1]) for s in result[0].get("series", []) or [] for v in s["values"])

    async def check(self) -> dict[str, int]:
        """One check of every served brand and product; return the alerts per product."""
        s = self._settings
        rule = ShareRule(k=s.share_k)
        at_ns = self._clock.now_ms() * 1_000_000
        brands = await self._served()
        out: dict[str, int] = {}
        for product in sorted(PRODUCTS):
            alerting = 0
            for brand in brands:
                try:
                    sizes = await self._reader.segment_sizes(
                        brand, product, at_ns - s.share_baseline_days * _DAY_NS, at_ns + 1, _DAY_NS
                    )
                except OverflowError as exc:
                    log.warning("segment share check of %s %s skipped: %s", brand, product, exc)
                    continue
                for seg in share_alerts(sizes, rule):
                    if seg["alert"]:
                        alerting += 1
                        log.warning(
                            "segment share alert: brand %s product %s model %s segment %s: %s",
                            brand, product, seg["model"], seg["segment"], seg["why"],
                        )  # fmt: skip
            self._metrics.set("twinsync_hub_segment_share_alerts", alerting, product=product)
            out[product] = alerting
        return out
