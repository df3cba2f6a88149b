"""The device's privacy duties: consent choices, erasure, and the user's own view.

Composed into :class:`edge_agent.Agent`, which hands it the twin book, the outbox and a
way to seal pending changes into a delta now. Everything here runs on the agent's event
loop between two commits (commits are synchronous), so no half-built delta can miss a
consent change or keep an erased twin's ops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from protocol import (
    CATALOG,
    FIELDS,
    OPTIONAL_PURPOSES,
    PRODUCTS,
    Clock,
    ConsentCommand,
    ConsentEntry,
    SchemaError,
    Tombstones,
    TwinSyncError,
    check_consent_time,
    check_notice,
    check_purposes,
)

from ._freshness import TargetKind, count_refusal
from ._outbox import Outbox
from ._twin import IngestResult, TwinBook

__all__ = ["DevicePrivacy"]

log = logging.getLogger("edge_agent.privacy")


class DevicePrivacy:
    """Consent ledger entries, tombstones and the local privacy view of one device."""

    def __init__(
        self,
        *,
        book: TwinBook,
        outbox: Outbox,
        clock: Clock,
        stats: dict[str, int],
        product: str,
        seal: Callable[[], object],
    ) -> None:
        self._book = book
        self._outbox = outbox
        self._clock = clock
        self._stats = stats
        self._product = product
        self._seal = seal

    def set_consent(self, subject: str, purposes: Mapping[str, bool], notice: str) -> ConsentEntry:
        """Record the customer's consent choice made on this device (its app or UI).

        Takes effect for the next signal; the ledger row and the delta that carries it
        to the hub are durable when this returns. A hub command issued before it cannot
        undo it when replayed (docs/privacy.md, "Fresh commands"). Raises SchemaError for
        unknown purposes (``service`` needs no consent), a missing notice version or a
        device clock outside what a consent time can be (reason ``timestamp``), and
        ValueError for a customer the hub erased.
        """
        twin = self._book.twin_of(subject)
        if self._book.is_erased(twin):
            raise ValueError("this customer's twin was erased; nothing is recorded for it")
        entry = ConsentEntry(
            twin,
            # The device's clock stamps the device's own entries, as it stamps its ops.
            check_consent_time(self._clock.now_ms()),
            check_purposes(dict(purposes)),
            "device",
            check_notice(notice),
        )
        self._record_consent([entry])
        self._outbox.freshness.local(twin, "purpose", (p for p, _g in entry.purposes))
        return entry

    def consent_state(self, subject: str) -> dict[str, bool]:
        """The customer's current choice per optional purpose (defaults filled in)."""
        twin = self._book.twin_of(subject)
        gate = self._book.gate
        return {p: gate.allows(twin, p) for p in OPTIONAL_PURPOSES}

    def view(self, subject: str) -> dict[str, Any]:
        """What this device collects about a user, for which purpose, whether it may, and
        what the twin says about them now (the device's own privacy page)."""
        book = self._book
        twin = book.twin_of(subject)
        product = self._product
        return {
            "twin": twin,
            "erased": book.is_erased(twin),
            "consent": {p: book.gate.allows(twin, p) for p in OPTIONAL_PURPOSES},
            "consent_ledger": [e.to_wire()[1:] for e in self._outbox.consent_ledger(twin)],
            "collected": [
                {
                    "signal": name,
                    "purpose": CATALOG[name].purpose,
                    "allowed": book.gate.allows_field(
                        twin, CATALOG[name].field, CATALOG[name].purpose
                    ),
                    "becomes": CATALOG[name].field,
                }
                for name in PRODUCTS[product]
            ],
            "suppressed": sorted(book.gate.suppressed(twin)),
            "twin_says": {
                field: {"value": value, "purpose": FIELDS[field].purpose}
                for (t, field), value in sorted(book.values.items())
                if t == twin and field in FIELDS
            },
            "leaves_device": "the twin fields above, keyed by the pseudonym; never your identifier",
        }

    def local_request(self, kind: str, request: object) -> IngestResult | dict[str, Any]:
        if kind == "view":
            subject = request.get("subject") if isinstance(request, dict) else None
            if not isinstance(subject, str) or not 1 <= len(subject) <= 256:
                return IngestResult(None, "rejected", "malformed")
            return {"view": self.view(subject)}
        if kind == "fields":
            return self._fields_line(request)
        return self._consent_line(request)

    def set_fields(
        self, subject: str, suppress: Sequence[str] = (), restore: Sequence[str] = ()
    ) -> None:
        """The user's own choice on this device (its app or UI): stop collecting
        ``suppress`` fields of their twin here, or collect ``restore`` fields again.

        Durable when this returns. It concerns this device: the brand's rectification
        request (through the hub) is what stops every device and removes stored points.
        Raises SchemaError (reason ``unknown_field``) for a field this product does not
        collect, and ValueError for a customer the hub erased.
        """
        for name in (*suppress, *restore):
            spec = FIELDS.get(name)
            if spec is None or spec.product != self._product:
                raise SchemaError(
                    f"{name!r} is not a twin field of a {self._product}", reason="unknown_field"
                )
        if set(suppress) & set(restore):
            raise SchemaError("a field cannot be suppressed and restored at once")
        twin = self._book.twin_of(subject)
        if self._book.is_erased(twin):
            raise ValueError("this customer's twin was erased; nothing is recorded for it")
        if suppress:
            self._suppress([twin], tuple(suppress))
        if restore:
            self._restore([twin], tuple(restore))
        self._outbox.freshness.local(twin, "field", (*suppress, *restore))

    def _fields_line(self, request: object) -> IngestResult:
        """A ``{"fields": {"subject", "suppress"?, "restore"?}}`` line."""
        if (
            not isinstance(request, dict)
            or "subject" not in request
            or not set(request) <= {"subject", "suppress", "restore"}
        ):
            return IngestResult(None, "rejected", "malformed")
        subject = request["subject"]
        suppress, restore = request.get("suppress", []), request.get("restore", [])
        if (
            not isinstance(subject, str)
            or not 1 <= len(subject) <= 256
            or not isinstance(suppress, list)
            or not isinstance(restore, list)
            or not all(isinstance(f, str) for f in (*suppress, *restore))
            or not 0 < len(suppress) + len(restore) <= 64
        ):
            return IngestResult(None, "rejected", "malformed")
        try:
            self.set_fields(subject, suppress, restore)
        except TwinSyncError as exc:
            return IngestResult(None, "rejected", exc.reason)
        except ValueError:
            return IngestResult(None, "rejected", "erased")
        return IngestResult(None, "accepted", "fields")

    def _consent_line(self, request: object) -> IngestResult:
        """A ``{"consent": {"subject", "purposes", "notice"}}`` line of the local interface."""
        if not isinstance(request, dict) or set(request) != {"subject", "purposes", "notice"}:
            return IngestResult(None, "rejected", "malformed")
        subject = request["subject"]
        if not isinstance(subject, str) or not 1 <= len(subject) <= 256:
            return IngestResult(None, "rejected", "malformed")
        try:
            self.set_consent(subject, request["purposes"], request["notice"])
        except TwinSyncError as exc:
            return IngestResult(None, "rejected", exc.reason)
        except ValueError:
            return IngestResult(None, "rejected", "erased")
        return IngestResult(None, "accepted", "consent")

    def _record_consent(self, entries: list[ConsentEntry]) -> None:
        self._book.gate.apply(entries)
        if self._book.models is not None:
            for entry in entries:
                self._book.models.rescore(entry.twin)
        self._book.consent_pending.extend(entries)
        self._stats["consent_changes"] = self._stats.get("consent_changes", 0) + len(entries)
        # Seal now (commits are synchronous on this loop): durable before we return.
        self._seal()

    def consent_from_hub(self, command: ConsentCommand) -> None:
        """The brand backend changed a customer's consent (or suppressed fields of their
        twin, or lifted a suppression): apply it to twins we know.

        Only what is newer than the last command applied to each target (a twin's
        purpose, a twin's field) is applied; the rest is refused, counted and logged
        (``edge_agent._freshness``), so a replayed command changes nothing.
        """
        book = self._book
        fresh = self._outbox.freshness
        at, request = command.ts_ms, command.request_id
        values = {t for t, _f in book.values}
        unknown, refused = [], []
        plan: list[tuple[str, dict[str, bool], tuple[str, ...], tuple[str, ...]]] = []
        for twin in command.twins:
            if book.is_erased(twin):
                continue
            if twin not in values and not book.gate.knows(twin):
                unknown.append(twin)
                continue

            def fresh_part(kind: TargetKind, name: str, twin: str = twin) -> bool:
                why = fresh.refusal(twin, kind, name, at, request)
                if why:
                    refused.append(f"{why} {kind} {name}")
                return not why

            plan.append(
                (
                    twin,
                    {p: g for p, g in command.purposes.items() if fresh_part("purpose", p)},
                    tuple(f for f in command.suppress if fresh_part("field", f)),
                    tuple(f for f in command.restore if fresh_part("field", f)),
                )
            )
        entries = []
        for twin, purposes, suppress, restore in plan:
            if suppress:
                self._suppress([twin], suppress)
            if restore:
                self._restore([twin], restore)
            if purposes:
                entries.append(
                    ConsentEntry(twin, at, tuple(sorted(purposes.items())), "hub", command.notice)
                )
        if entries:
            self._record_consent(entries)
            log.info("consent request %s applied to %d twin(s)", request, len(entries))
        # Marked once applied: a crash in between at worst applies the same command twice.
        for twin, purposes, suppress, restore in plan:
            fresh.applied(twin, "purpose", purposes, at, request)
            fresh.applied(twin, "field", (*suppress, *restore), at, request)
        fresh.unknown(unknown, at, request)
        if refused:
            count_refusal(
                self._stats,
                f"consent command {request}",
                "not newer than what this device applied",
                ", ".join(sorted(set(refused))),
            )

    def _suppress(self, twins: list[str], fields: tuple[str, ...]) -> None:
        """The customer suppressed ``fields`` of ``twins``: the gate refuses them from now
        on and ops of them not yet sealed into a delta are dropped (the hub drops any
        that were already sent)."""
        book = self._book
        self._outbox.suppress(twins, fields)  # durable first: a restart keeps refusing
        for twin in twins:
            book.gate.suppress(twin, fields)
            ops = book.pending.get(twin)
            if ops:
                kept = [op for op in ops if op.field not in fields]
                book.pending_ops -= len(ops) - len(kept)
                book.pending[twin] = kept
        if twins:
            self._stats["fields_suppressed"] = self._stats.get("fields_suppressed", 0) + len(
                twins
            ) * len(fields)
            log.info("suppressed %d field(s) of %d twin(s)", len(fields), len(twins))

    def _restore(self, twins: list[str], fields: tuple[str, ...]) -> None:
        """The customer lifted a suppression: collect ``fields`` of ``twins`` again."""
        self._outbox.suppress(twins, fields, lift=True)
        for twin in twins:
            self._book.gate.restore(twin, fields)
        log.info("restored %d field(s) of %d twin(s)", len(fields), len(twins))

    def forget(self, tombstones: Tombstones) -> None:
        """The hub erased these twins: drop all we hold about them, refuse them from now on.

        Runs on the event loop between two commits (commits are synchronous), so no
        half-built delta can slip an erased twin's ops past it.
        """
        book = self._book
        # Only twins this device holds anything about: remembering every erased customer
        # of the brand would grow without bound on every device (the hub refuses the
        # others' ops anyway).
        held = {t for t, _f in book.values} | {e.twin for e in book.consent_pending}
        twins = {t for t in tombstones.twins if t in held or book.gate.knows(t)}
        if not twins:
            return
        book.forget(twins)
        rewritten, deleted = self._outbox.forget(twins, tombstones.erased_ms)
        self._stats["twins_erased"] = self._stats.get("twins_erased", 0) + len(twins)
        log.info(
            "erasure %s: %d twin(s) forgotten, %d unsent deltas rewritten, %d deleted",
            tombstones.request_id,
            len(twins),
            rewritten,
            deleted,
        )
