"""Which of some twins match a twin query filter now, inside a caller's transaction (a
trigger rule's ``where``, checked where the change that fired it is merged)."""

from __future__ import annotations

from collections.abc import Iterable

from ._state_tx import Tx
from ._twin_filter import Filter, matches

__all__ = ["matching_twins"]


def matching_twins(tx: Tx, brand: str, twins: Iterable[str], node: Filter) -> set[str]:
    """The twins of ``twins`` that match ``node`` as ``tx`` sees the index (one lookup
    per twin by the index's keys: a handful of twins per batch)."""
    where = matches(node, brand, "i.twin")
    found = set()
    for twin in sorted(set(twins)):
        row = tx.execute(
            f"SELECT i.twin FROM twin_index i WHERE i.brand = ? AND i.twin = ? AND {where.text}",
            (brand, twin, *where.params),
        ).fetchone()
        if row is not None:
            found.add(twin)
    return found
