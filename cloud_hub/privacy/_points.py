"""The stored points of a customer's twins, as InfluxQL: select them, delete them for good.

Erasure, objection, rectification and key rotation all find a customer's points by
brand and twin ids, and the deleting ones share one rule: a write that was already on the
wire when every instance learnt to drop the twin may land after the first ``DELETE``, so
delete, wait, count, and go again until nothing is left.
"""

from __future__ import annotations

import asyncio

from cloud_hub.store import InfluxStore, count_values, quote_ident, quote_str

__all__ = ["delete_until_gone", "twin_points_where"]

_ATTEMPTS = 5


def twin_points_where(brand: str, twins: list[str]) -> str:
    """InfluxQL condition selecting ``twins`` of ``brand``."""
    return (
        f'"brand" = {quote_str(brand)} AND ('
        + " OR ".join(f'"twin" = {quote_str(t)}' for t in twins)
        + ")"
    )


async def delete_until_gone(
    store: InfluxStore, measurements: tuple[str, ...], where: str
) -> tuple[int, int]:
    """DELETE ``where`` from ``measurements`` until a count finds nothing (a write already
    on the wire may land after a delete), at most five times; return (points found
    before, points left)."""
    # InfluxQL's DELETE takes one measurement at a time: one statement each, one request.
    delete = ";".join(f"DELETE FROM {quote_ident(m)} WHERE {where}" for m in measurements)
    found = left = await count_values(store, where, measurements)
    for attempt in range(_ATTEMPTS):
        await store.query(delete, write=True)
        await asyncio.sleep(0.2 * (attempt + 1))  # a write already on the wire lands
        left = await count_values(store, where, measurements)
        if left == 0:
            break
    return found, left
