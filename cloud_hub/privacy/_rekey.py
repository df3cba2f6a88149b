"""Key rotation at the hub: a twin's history follows its customer to the new key epoch.

A brand's pseudonymization key rotates by epoch (``twinsync hub brand-key rotate``). The
hub never sees raw identifiers, so it cannot compute a customer's new twin id itself:
a device that holds both keys and knows the customer under the old id sends a
:class:`~protocol.TwinLink` (old -> new) in a delta. Per link, in the state store:

1. ``proposed``: recorded at ingest. The first link of an old id wins (instances
   recording links of one brand at once take turns, under the lock ``twin_links:<brand>``);
   another device naming a different new id for it is refused and counted
   (``link_conflict``).
2. ``aliased``: the proposing device has points of the old twin in InfluxDB (a device can
   only link customers it served, so a compromised device cannot graft another
   customer's history onto a twin) and the old twin is not erased. Every instance then
   stores ops of the old id under the new one (within ``refresh_s``), also in batches
   built before it learnt of the alias.
3. ``done``: after ``refresh_s`` more, every point of the old id (every measurement with
   a twin tag, ``_lines.TWIN_TAGGED``) is rewritten under the new id, the copy is checked,
   and only then the old series are deleted; the twin query index merges the old id's
   rows into the new id's. A crash anywhere resumes from the row's state (the copy is
   idempotent: the same points land on the same keys).

A link that cannot be checked within ``grace_s`` is ``refused``. The rows map old to new
ids, so they live only until the old epoch is retired (``brand-key retire``): from then on
nothing links the customer's old pseudonym to the new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from cloud_hub._errors import CloudHubError, StoreError
from cloud_hub._metrics import Metrics
from cloud_hub.registry import held_epochs
from cloud_hub.store import (
    TWIN_TAGGED,
    InfluxStore,
    SharedView,
    StateStore,
    TwinIndex,
    Tx,
    count_values,
    quote_ident,
    quote_str,
    typed_value,
)
from protocol import Clock, SystemClock, TwinLink, ValueType, check_brand, twin_epoch

from ._points import twin_points_where

__all__ = ["Relinks"]

log = logging.getLogger("cloud_hub.rekey")

_CHUNK = 5000
_FROM = ",".join(quote_ident(m) for m in TWIN_TAGGED)
#: InfluxDB's field types (SHOW FIELD KEYS) as the catalog's value types
_INFLUX_TYPES: dict[str, ValueType] = {
    "float": "float",
    "integer": "int",
    "boolean": "bool",
    "string": "str",
}


class _Links(NamedTuple):
    #: brand -> old -> new twin id, for links whose ops are stored under the new id
    alias: dict[str, dict[str, str]]
    #: brand -> retired key epochs
    retired: dict[str, frozenset[int]]


class Relinks(SharedView[_Links]):
    """Twin links from devices: checked, aliased at ingest, and history moved."""

    WHAT = "twin links"
    STAMP = "view:twin_links"

    def __init__(
        self,
        *,
        state: StateStore,
        secrets_dir: Path,
        store: InfluxStore,
        index: TwinIndex,
        metrics: Metrics,
        clock: Clock | None = None,
        is_erased: Callable[[str, str], bool] = lambda brand, twin: False,
        notify: Callable[[str, str, dict[str, Any]], object] | None = None,
        refresh_s: float = 1.0,
        grace_s: float = 600.0,
    ) -> None:
        # The command line's 'brand-key retire' makes one without a hub: the system clock.
        self._clock: Clock = clock or SystemClock()
        self._secrets = Path(secrets_dir)
        self._store = store
        self._index = index
        self._metrics = metrics
        self._is_erased = is_erased
        self._notify = notify
        self.grace_s = grace_s
        self._types: dict[str, dict[str, str]] = {}
        super().__init__(state, refresh_s)

    def _load(self, tx: Tx) -> _Links:
        alias: dict[str, dict[str, str]] = {}
        for brand, old, new in tx.execute(
            "SELECT brand, old, new FROM twin_links WHERE state IN ('aliased', 'done')"
        ):
            alias.setdefault(brand, {})[old] = new
        retired: dict[str, set[int]] = {}
        for brand, epoch in tx.execute("SELECT brand, epoch FROM retired_epochs"):
            retired.setdefault(brand, set()).add(epoch)
        return _Links(alias, {b: frozenset(e) for b, e in retired.items()})

    # -- what ingestion asks ------------------------------------------------------------
    def alias(self, brand: str) -> dict[str, str]:
        """old -> new twin ids of ``brand`` whose ops are stored under the new id."""
        return self.view.alias.get(brand, {})

    def retired(self, brand: str) -> frozenset[int]:
        """Retired key epochs of ``brand``: ops of their twins are no longer stored."""
        return self.view.retired.get(brand, frozenset())

    def realias(self, lines: list[str]) -> list[str]:
        """Rewrite already built points of aliased twins to the new id (line protocol)."""
        out = []
        for line in lines:
            if ",twin=" in line:
                head, sep, rest = line.partition(",twin=")
                twin, space, tail = rest.partition(" ")
                brand = head.partition(",brand=")[2].partition(",")[0]
                new = self._view.alias.get(brand, {}).get(twin)
                if new is not None:
                    out.append(f"{head}{sep}{new}{space}{tail}")
                    continue
            out.append(line)
        return out

    def held_epochs(self, brand: str) -> set[int]:
        """Key epochs the hub holds for ``brand`` (its secrets)."""
        return set(held_epochs(self._secrets, brand))

    def propose(self, brand: str, device: str, links: Iterable[TwinLink]) -> None:
        """Record links a device sent (called at ingest; the check comes later).
        Blocking: one short transaction (links come only while a brand's key rotates)."""
        held = self.held_epochs(brand)
        now = self._clock.now_ms()
        outcomes: list[tuple[TwinLink, str]] = []
        with self._state.transaction() as tx:
            # Read, then insert: instances recording links of this brand take turns, so
            # the first link of an old id wins everywhere and a conflict is seen.
            tx.lock(f"twin_links:{brand}")
            for link in links:
                if not {twin_epoch(link.old), twin_epoch(link.new)} <= held:
                    outcomes.append((link, "unknown_epoch"))
                    continue
                row = tx.execute(
                    "SELECT new FROM twin_links WHERE brand=? AND old=?", (brand, link.old)
                ).fetchone()
                if row is None:
                    tx.insert(
                        "twin_links",
                        {
                            "brand": brand,
                            "old": link.old,
                            "new": link.new,
                            "device": device,
                            "state": "proposed",
                            "proposed_ms": now,
                            "updated_ms": now,
                        },
                    )
                    outcomes.append((link, ""))
                elif row[0] != link.new:
                    outcomes.append((link, "link_conflict"))
        # Counted once committed: a transaction that failed recorded nothing.
        for link, refused in outcomes:
            if refused:
                self._refuse_now(brand, link, refused)
            else:
                self._metrics.inc("twinsync_hub_twin_links_total", state="proposed")

    def _refuse_now(self, brand: str, link: TwinLink, reason: str) -> None:
        self._metrics.inc("twinsync_hub_twin_links_total", state="refused", reason=reason)
        log.warning("twin link of brand %s refused: %s (%s)", brand, reason, link.old)

    # -- the procedure -----------------------------------------------------------------
    async def run(self) -> None:
        """Forever: check proposed links, move aliased twins. Cancel to stop."""
        while True:
            try:
                await self.step()
            except StoreError as exc:
                log.warning("twin links: InfluxDB unavailable (%s); retrying", exc)
            await asyncio.sleep(self.refresh_s)

    async def step(self) -> int:
        """One pass over unfinished links; return how many changed state."""
        await asyncio.to_thread(self.refresh)
        rows = await asyncio.to_thread(self._unfinished)
        changed = 0
        now = self._clock.now_ms()
        for brand, old, new, device, state, proposed_ms, updated_ms in rows:
            if state == "proposed":
                changed += await self._check(brand, old, new, device, now - proposed_ms)
            elif now - updated_ms >= self.refresh_s * 1000 + 200:
                # Every instance has had refresh_s to learn the alias: nobody writes the old
                # id any more, so what is there now is all there will be.
                await self._move(brand, old, new)
                changed += 1
        return changed

    def _unfinished(self) -> list[tuple[Any, ...]]:
        with self._state.transaction(readonly=True) as tx:
            return tx.execute(
                "SELECT brand, old, new, device, state, proposed_ms, updated_ms FROM twin_links "
                "WHERE state IN ('proposed', 'aliased') ORDER BY proposed_ms, brand, old"
            ).fetchall()

    async def _check(self, brand: str, old: str, new: str, device: str, age_ms: int) -> int:
        reason = ""
        if self._is_erased(brand, old) or self._is_erased(brand, new):
            reason = "erased"
        elif not await self._count(brand, old, device):
            if age_ms < self.grace_s * 1000:
                return 0  # the device's older deltas may still be on their way
            reason = "device_never_wrote_old_twin"
        state = "refused" if reason else "aliased"
        await asyncio.to_thread(self._set, brand, old, state, reason)
        self._metrics.inc("twinsync_hub_twin_links_total", state=state, reason=reason or "ok")
        if reason:
            log.warning("twin link of brand %s refused: %s (%s)", brand, reason, old)
        else:
            await asyncio.to_thread(self.refresh)
        return 1

    async def _count(self, brand: str, twin: str, device: str | None = None) -> int:
        where = twin_points_where(brand, [twin])
        if device is not None:
            where += f' AND "device" = {quote_str(device)}'
        return await count_values(self._store, where, TWIN_TAGGED)

    async def _field_types(self, measurement: str) -> dict[str, str]:
        types = self._types.get(measurement)
        if types is None:
            results = await self._store.query(f"SHOW FIELD KEYS FROM {quote_ident(measurement)}")
            types = {
                name: kind
                for result in results
                for series in result.get("series", [])
                for name, kind in series["values"]
            }
            self._types[measurement] = types
        return types

    async def _move(self, brand: str, old: str, new: str) -> None:
        where = twin_points_where(brand, [old])
        results = await self._store.query(f"SELECT * FROM {_FROM} WHERE {where} GROUP BY *")
        lines: list[str] = []
        for result in results:
            for series in result.get("series", []):
                types = await self._field_types(series["name"])
                lines += _rewrite(series, types, new)
        for i in range(0, len(lines), _CHUNK):
            await self._store.write(lines[i : i + _CHUNK])
        moved = await self._count(brand, old)
        copied = await self._count(brand, new)
        if copied < moved:
            raise StoreError(f"twin link {old}: only {copied} of {moved} values copied")
        await self._delete(where)
        left = await self._count(brand, old)
        if left:
            raise StoreError(f"twin link {old}: {left} values still under the old id; retrying")
        # The twin query index follows (idempotent: a rerun finds the old id gone).
        await asyncio.to_thread(self._index.move, brand, old, new)
        await asyncio.to_thread(self._set, brand, old, "done", "", moved)
        self._metrics.inc("twinsync_hub_twin_links_total", state="done", reason="ok")
        log.info(
            "twin of brand %s moved to key epoch %d (%d values)", brand, twin_epoch(new), moved
        )
        if self._notify is not None:
            await asyncio.to_thread(
                self._notify, brand, "twin_relinked", {"old": old, "new": new, "values": moved}
            )

    def _set(self, brand: str, old: str, state: str, reason: str, points: int = 0) -> None:
        with self._state.transaction() as tx:
            self.changed_in(tx)  # aliased or done: ingest's aliases change
            tx.execute(
                "UPDATE twin_links SET state=?, reason=?, updated_ms=?, points=? "
                "WHERE brand=? AND old=?",
                (state, reason, self._clock.now_ms(), points, brand, old),
            )

    # -- operators ------------------------------------------------------------------------
    def status(self, brand: str) -> dict[str, Any]:
        """Epochs held and links per state (no twin ids: this goes to operators' logs)."""
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT state, COUNT(*) FROM twin_links WHERE brand=? GROUP BY state", (brand,)
            ).fetchall()
        return {"epochs": sorted(self.held_epochs(brand)), "links": {s: int(n) for s, n in rows}}

    async def retire(self, brand: str, epoch: int, *, delete_unlinked: bool = False) -> int:
        """Retire key epoch ``epoch`` of ``brand``: from now on its twins' ops are dropped
        at ingest (counted), its links (the old -> new map) are deleted, and so is its key
        file (then nothing can compute those pseudonyms any more). Twins still stored
        under the epoch could no longer be found by an erasure request, so they must be
        gone first: with ``delete_unlinked`` they are deleted, else CloudHubError names
        how many are left. Returns the number of twins deleted."""
        folder = self._secrets / "brands" / check_brand(brand)
        if not (folder / f"{epoch}.key").exists():
            raise CloudHubError(f"brand {brand} holds no key of epoch {epoch}", reason="epoch")
        if max(self.held_epochs(brand)) == epoch:
            raise CloudHubError(
                f"epoch {epoch} is brand {brand}'s current key; rotate first", reason="epoch"
            )
        retired = {"brand": brand, "epoch": epoch, "retired_ms": self._clock.now_ms()}
        await asyncio.to_thread(self._retire, retired)
        await asyncio.to_thread(self.refresh)
        await asyncio.sleep(self.refresh_s + 0.2)  # every instance stops storing them
        results = await self._store.query(
            f'SHOW TAG VALUES FROM {_FROM} WITH KEY = "twin" WHERE "brand" = {quote_str(brand)}'
        )
        left = sorted(
            {
                value
                for result in results
                for series in result.get("series", [])
                for _key, value in series["values"]
                if value.startswith(f"{epoch}-")
            }
        )
        if left and not delete_unlinked:
            raise CloudHubError(
                f"{len(left)} twins of brand {brand} are still stored under key epoch {epoch} "
                "(no device linked them): wait for devices to carry them over, or pass "
                "--delete-unlinked to delete them with the key",
                reason="epoch_in_use",
            )
        for twin in left:
            await self._delete(twin_points_where(brand, [twin]))
        await asyncio.to_thread(self._index.erase, brand, left)
        await asyncio.to_thread(self._forget_links, brand, epoch)
        (folder / f"{epoch}.key").unlink()
        await asyncio.to_thread(self.refresh)
        log.info(
            "brand %s: key epoch %d retired, %d unlinked twins deleted", brand, epoch, len(left)
        )
        return len(left)

    def _retire(self, row: dict[str, object]) -> None:
        with self._state.transaction() as tx:
            tx.insert_ignore("retired_epochs", [row])
            self.changed_in(tx)

    def _forget_links(self, brand: str, epoch: int) -> None:
        with self._state.transaction() as tx:
            tx.execute("DELETE FROM twin_links WHERE brand=? AND old LIKE ?", (brand, f"{epoch}-%"))
            self.changed_in(tx)

    async def _delete(self, where: str) -> None:
        for name in TWIN_TAGGED:
            await self._store.query(f"DELETE FROM {quote_ident(name)} WHERE {where}", write=True)


def _rewrite(series: dict[str, Any], types: dict[str, str], new: str) -> list[str]:
    """The series' points as line protocol, under twin id ``new``."""
    tags = {**series.get("tags", {}), "twin": new}
    head = series["name"] + "".join(f",{k}={v}" for k, v in sorted(tags.items()) if v)
    columns = series["columns"]
    lines = []
    for row in series["values"]:
        fields = []
        for name, value in zip(columns[1:], row[1:], strict=True):
            if value is None or name in tags:
                continue
            kind = _INFLUX_TYPES.get(types.get(name, "float"), "float")
            fields.append(f"{name}={typed_value(kind, value)}")
        if fields:
            lines.append(f"{head} {','.join(fields)} {row[0]}")
    return lines
