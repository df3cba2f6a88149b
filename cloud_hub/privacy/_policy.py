"""What ingest may store of a verified delta: the customer's rights, asked in one place.

The pipeline (cloud_hub.ingest) asks :class:`IngestPolicy` about every delta, and again
about a batch just before it writes it. Per twin and op, in this order:

1. **erased** twins (tombstones, cloud_hub.privacy._erasure) are dropped, ops and
   consent entries alike, whatever device or timestamp they come with;
2. the delta's **twin links** (key rotation, cloud_hub.privacy._rekey) are proposed;
3. twins of a **retired key epoch** are dropped (their pseudonyms could no longer be
   found by an erasure request);
4. twins with an **alias** (a link that was checked) are stored under their new id,
   consent entries too;
5. **blocked fields** (objection, suppression: cloud_hub.privacy._objection) are dropped.

Every drop is counted (``twinsync_hub_erased_ops_dropped_total``,
``..._retired_epoch_ops_dropped_total``, ``..._aliased_ops_total``,
``..._blocked_ops_dropped_total``); the delta is still acked, so the device lets go of it.

All of it is state every hub instance re-reads from the shared file at most every
``refresh_s``. A batch is built against what the policy knew then (its
:class:`Generation`); if that changed before the write, :meth:`IngestPolicy.recheck`
applies the change to the batch's lines: points of twins aliased since are rewritten to
the new id, points of twins erased or fields blocked since are left out. The twin query
index asks once more, inside its own transaction (:meth:`IngestPolicy.index_admit`,
cloud_hub.privacy._index_gate), what changed since the views' :meth:`stamps`.
"""

from __future__ import annotations

from typing import NamedTuple

from cloud_hub._metrics import Metrics
from cloud_hub.store import TWIN_MEASUREMENTS, Admit
from protocol import ConsentEntry, Delta, TwinOps

from ._erasure import Tombstones
from ._index_gate import Stamps, index_gate
from ._objection import FieldBlocks
from ._rekey import Relinks

__all__ = ["Admitted", "Generation", "IngestPolicy"]

_TWIN_LINE = tuple(f"{m}," for m in TWIN_MEASUREMENTS)


class Generation(NamedTuple):
    """What the policy knew when a batch was built."""

    #: tombstones and field blocks (both only grow their generation)
    erasure: int
    #: twin aliases (key rotation)
    alias: int


class Admitted(NamedTuple):
    """What of a delta may be stored."""

    twins: tuple[TwinOps, ...]
    consent: tuple[ConsentEntry, ...]


class IngestPolicy:
    """The ingest side of tombstones, field blocks, twin links and retired epochs."""

    def __init__(
        self,
        *,
        tombstones: Tombstones,
        blocks: FieldBlocks,
        relinks: Relinks,
        metrics: Metrics,
    ) -> None:
        self._tombstones = tombstones
        self._blocks = blocks
        self._relinks = relinks
        self._metrics = metrics

    @property
    def generation(self) -> Generation:
        """What the policy knows now (taken when a batch starts, see :meth:`recheck`)."""
        return Generation(
            self._tombstones.generation + self._blocks.generation, self._relinks.generation
        )

    def stamps(self) -> Stamps:
        """The stamps of the views as this instance read them: take them *before*
        :meth:`recheck`, so the lines it passes are checked against at least these."""
        return self._tombstones.stamp, self._blocks.stamp, self._relinks.stamp

    @staticmethod
    def index_admit(seen: Stamps | None) -> Admit:
        """The twin query index's ``admit`` step for values written after a
        :meth:`recheck` at stamps ``seen`` (None: unknown, look everything up;
        cloud_hub.privacy._index_gate)."""
        return index_gate(seen)

    def admit(self, brand: str, device: str, delta: Delta) -> Admitted:
        """The twins' ops and consent entries of ``delta`` (from ``device`` of ``brand``)
        that may be stored, under the twin ids they are stored under; proposes its twin
        links and counts what it drops (module docstring)."""
        twins = delta.twins
        erased = self._tombstones.erased(brand)
        if erased and any(t.twin in erased for t in twins):
            # An erased twin never comes back, whatever outbox or late device sends it.
            dropped = sum(len(t.ops) for t in twins if t.twin in erased)
            self._metrics.inc("twinsync_hub_erased_ops_dropped_total", dropped)
            twins = tuple(t for t in twins if t.twin not in erased)
        consent = delta.consent
        relinks = self._relinks
        if delta.links:
            relinks.propose(brand, device, delta.links)
        retired = relinks.retired(brand)
        if retired:
            kept = tuple(t for t in twins if int(t.twin.split("-", 1)[0]) not in retired)
            if len(kept) != len(twins):
                # A device still on a retired key: its pseudonyms can no longer be erased
                # by subject, so they are not stored (acked, counted).
                self._metrics.inc(
                    "twinsync_hub_retired_epoch_ops_dropped_total",
                    sum(len(t.ops) for t in twins) - sum(len(t.ops) for t in kept),
                )
                twins = kept
        alias = relinks.alias(brand)
        if alias and any(t.twin in alias for t in twins):
            # Key rotation: the twin lives on under its new id (cloud_hub.privacy._rekey).
            self._metrics.inc(
                "twinsync_hub_aliased_ops_total",
                sum(len(t.ops) for t in twins if t.twin in alias),
            )
            twins = tuple(t._replace(twin=alias.get(t.twin, t.twin)) for t in twins)
        if alias:
            consent = tuple(e._replace(twin=alias.get(e.twin, e.twin)) for e in consent)
        twins, blocked = self._blocks.keep(brand, twins)
        if blocked:
            # Fields the customer objected to or suppressed.
            self._metrics.inc("twinsync_hub_blocked_ops_dropped_total", blocked)
        return Admitted(twins, tuple(e for e in consent if e.twin not in erased))

    def recheck(self, lines: list[str], built: Generation) -> tuple[list[str], Generation] | None:
        """``lines`` (built when the policy was at ``built``) as they may be written now,
        and the generation they now match; None when nothing of them may be."""
        now = self.generation
        if built.alias != now.alias:
            # Twins moved to a new key epoch since these lines were built: their old ids
            # are being emptied, so the points go under the new ids.
            lines = self._relinks.realias(lines)
        if built.erasure != now.erasure:
            # Twins were erased or fields blocked since: leave theirs out.
            lines = self._without_erased(lines)
            if not lines:
                return None
        return lines, now

    def _without_erased(self, lines: list[str]) -> list[str]:
        """``lines`` minus the twin points of tombstoned twins and blocked fields (line
        protocol as ``cloud_hub.store._lines`` writes it: ``twin,brand=..,device=..,
        twin=.. ...``, and ``twin_profile,...`` alike)."""
        kept = []
        for line in lines:
            if line.startswith(_TWIN_LINE):
                tags = line.split(" ", 1)[0].split(",")
                brand, twin = tags[1][len("brand=") :], tags[3][len("twin=") :]
                if self._tombstones.holds(brand, twin) or self._blocks.drops_line(
                    brand, twin, line
                ):
                    continue
            kept.append(line)
        return kept
