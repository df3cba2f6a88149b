"""The strategy lab's experiments: randomised treatment/holdout assignment, kept in the
state store (migration 7), and the outcomes read from the twin query index.

**Assignment** is deterministic and keyed: each twin's place is
HMAC-SHA256(the experiment's salt, ``experiment|twin``), the salt drawn once when the
experiment is created and stored with it, so every hub instance computes the same arms
from the same rows, and nobody can tell the arms before the experiment exists. It is
**stratified** by the twin's segments (one stratum per combination of product segments):
within a stratum the twins sorted by their hash go to the holdout until the stratum's
share is reached (the fraction left over rounds up or down by the stratum's own hash),
so every segment is split in the asked proportion and an experiment never compares a
treated group of one kind of customer with a holdout of another.

**Who is left out.** A twin whose customer objected to profiling (a ``class:profile``
field block) is not assigned: an offer chosen from their profile is what they objected
to. An erased twin is not assigned, and one erased later leaves the experiment (its
member row is deleted with the twin: :meth:`Experiments.forget`), so it leaves the
counts too.

**Outcome** ``churned``: a member churned when the index has not seen it for
``quiet_ms`` before the end of the window (its ``last_seen_ms`` older than
``end - quiet_ms``); :meth:`outcomes` counts both arms at any time (an interim look) and
:meth:`finish` freezes the result when the experiment ends or is stopped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol import Clock

from ._state import StateStore
from ._state_tx import Tx, marks

__all__ = ["ExperimentSpec", "Experiments", "assign"]

_PROFILE_BLOCK = "class:profile"  # cloud_hub.privacy's PROFILE_BLOCK (a layer above)
_CHUNK = 500


def _lock(brand: str) -> str:
    return f"experiments:{brand}"


@dataclass(frozen=True)
class ExperimentSpec:
    """What a brand asks for: who (the rule's text), the offer, the holdout share and
    the outcome window."""

    where_text: str | None
    offer: str
    cost: float
    holdout: float
    metric: str
    window_ms: int
    quiet_ms: int


def _place(salt: bytes, experiment: str, twin: str) -> float:
    digest = hmac.new(salt, f"{experiment}|{twin}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(
    salt: bytes, experiment: str, twins: Iterable[tuple[str, str]], holdout: float
) -> dict[str, str]:
    """twin -> ``treated`` or ``holdout`` for ``(twin, stratum)`` pairs (module
    docstring): stratified, keyed by ``salt``, the same on every instance."""
    strata: dict[str, list[tuple[float, str]]] = {}
    for twin, stratum in twins:
        strata.setdefault(stratum, []).append((_place(salt, experiment, twin), twin))
    arms: dict[str, str] = {}
    for stratum, members in strata.items():
        members.sort()
        want = holdout * len(members)
        extra = _place(salt, experiment, f"stratum:{stratum}") < want - int(want)
        held = int(want) + (1 if extra else 0)
        for i, (_place_of, twin) in enumerate(members):
            arms[twin] = "holdout" if i < held else "treated"
    return arms


class Experiments:
    """Experiments of every brand in the state store (module docstring); blocking."""

    def __init__(
        self,
        *,
        state: StateStore,
        clock: Clock,
        entropy: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._state = state
        self._clock = clock
        #: n random bytes: the experiment ids and salts (a seeded source in tests, so an
        #: experiment's assignment can be replayed)
        self._entropy = entropy

    def create(
        self, brand: str, spec: ExperimentSpec, twins: Sequence[tuple[str, str]]
    ) -> dict[str, Any]:
        """A new experiment over ``(twin, stratum)`` pairs (those the customer objected
        for or erased are left out and counted in ``excluded``), assigned and stored."""
        experiment = "exp-" + self._entropy(6).hex()
        salt = self._entropy(16)
        now = self._clock.now_ms()
        with self._state.transaction() as tx:
            # Held with an erasure's (forget): a twin erased while this runs is either
            # left out here or deleted there, never kept (PostgreSQL reads committed).
            tx.lock(_lock(brand))
            out = self._left_out(tx, brand, [t for t, _s in twins])
            kept = [(t, s) for t, s in twins if t not in out]
            arms = assign(salt, experiment, kept, spec.holdout)
            tx.insert(
                "experiments",
                {
                    "brand": brand,
                    "id": experiment,
                    "created_ms": now,
                    "salt": salt.hex(),
                    "where_text": spec.where_text,
                    "offer": spec.offer,
                    "cost": spec.cost,
                    "holdout": spec.holdout,
                    "metric": spec.metric,
                    "window_ms": spec.window_ms,
                    "quiet_ms": spec.quiet_ms,
                    "ends_ms": now + spec.window_ms,
                    "excluded": len(twins) - len(kept),
                },
            )
            tx.insert_ignore(
                "experiment_members",
                [
                    {
                        "brand": brand,
                        "experiment": experiment,
                        "twin": twin,
                        "arm": arms[twin],
                        "stratum": stratum,
                        "exposed_ms": now if arms[twin] == "treated" else None,
                    }
                    for twin, stratum in kept
                ],
            )
            found = self._get(tx, brand, experiment)
        assert found is not None
        return found

    @staticmethod
    def _left_out(tx: Tx, brand: str, twins: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(twins), _CHUNK):
            part = twins[i : i + _CHUNK]
            inside = f"brand = ? AND twin IN ({marks(len(part))})"
            for (twin,) in tx.execute(
                f"SELECT twin FROM field_blocks WHERE {inside} AND target = ? "
                f"UNION SELECT twin FROM tombstones WHERE {inside}",
                (brand, *part, _PROFILE_BLOCK, brand, *part),
            ):
                out.add(str(twin))
        return out

    def get(self, brand: str, experiment: str) -> dict[str, Any] | None:
        """One experiment with its arms' sizes (None: no such experiment of ``brand``)."""
        with self._state.transaction(readonly=True) as tx:
            return self._get(tx, brand, experiment)

    def of_brand(self, brand: str) -> list[dict[str, Any]]:
        """Every experiment of ``brand``, newest first."""
        with self._state.transaction(readonly=True) as tx:
            ids = [
                str(r[0])
                for r in tx.execute(
                    "SELECT id FROM experiments WHERE brand = ? ORDER BY created_ms DESC, id",
                    (brand,),
                )
            ]
            return [e for i in ids if (e := self._get(tx, brand, i)) is not None]

    def _get(self, tx: Tx, brand: str, experiment: str) -> dict[str, Any] | None:
        row = tx.execute(
            "SELECT created_ms, where_text, offer, cost, holdout, metric, window_ms, quiet_ms, "
            "ends_ms, excluded, finished_ms, result FROM experiments WHERE brand = ? AND id = ?",
            (brand, experiment),
        ).fetchone()
        if row is None:
            return None
        created, where, offer, cost, holdout, metric, window, quiet, ends, excluded = row[:10]
        finished, result = row[10], row[11]
        arms = {"treated": 0, "holdout": 0}
        exposed = 0
        for arm, count, shown in tx.execute(
            "SELECT arm, COUNT(*), COUNT(exposed_ms) FROM experiment_members "
            "WHERE brand = ? AND experiment = ? GROUP BY arm",
            (brand, experiment),
        ):
            arms[str(arm)] = int(count)
            exposed += int(shown)
        return {
            "brand": brand,
            "id": experiment,
            "created_ms": int(created),
            "where": where,
            "offer": {"name": offer, "cost": float(cost)},
            "holdout": float(holdout),
            "outcome": {"metric": metric, "window_ms": int(window), "quiet_ms": int(quiet)},
            "ends_ms": int(ends),
            "status": "finished" if finished is not None else "running",
            "finished_ms": None if finished is None else int(finished),
            "assigned": arms,
            "exposed": exposed,
            "excluded": int(excluded),
            "result": None if result is None else json.loads(str(result)),
        }

    def outcomes(self, brand: str, experiment: str, end_ms: int) -> tuple[int, int, int, int]:
        """(treated, treated churned, holdout, holdout churned) at ``end_ms``: a member
        churned when the index has not seen it since ``end_ms - quiet_ms``; members the
        index no longer holds (erased) are not counted."""
        with self._state.transaction(readonly=True) as tx:
            return self._outcomes(tx, brand, experiment, end_ms)

    @staticmethod
    def _outcomes(tx: Tx, brand: str, experiment: str, end_ms: int) -> tuple[int, int, int, int]:
        quiet = tx.execute(
            "SELECT quiet_ms FROM experiments WHERE brand = ? AND id = ?", (brand, experiment)
        ).scalar()
        cut = end_ms - int(quiet or 0)
        counts = {"treated": (0, 0), "holdout": (0, 0)}
        for arm, n, churned in tx.execute(
            "SELECT m.arm, COUNT(*), SUM(CASE WHEN t.last_seen_ms < ? THEN 1 ELSE 0 END) "
            "FROM experiment_members m JOIN twin_index t ON t.brand = m.brand AND t.twin = m.twin "
            "WHERE m.brand = ? AND m.experiment = ? GROUP BY m.arm",
            (cut, brand, experiment),
        ):
            counts[str(arm)] = (int(n), int(churned or 0))
        return (*counts["treated"], *counts["holdout"])

    def finish(self, brand: str, experiment: str, result: dict[str, Any]) -> dict[str, Any] | None:
        """Freeze ``result`` as the experiment's (a finished one keeps its first);
        the experiment after (None: no such experiment)."""
        now = self._clock.now_ms()
        with self._state.transaction() as tx:
            tx.execute(
                "UPDATE experiments SET finished_ms = ?, result = ? "
                "WHERE brand = ? AND id = ? AND finished_ms IS NULL",
                (now, json.dumps(result, separators=(",", ":")), brand, experiment),
            )
            return self._get(tx, brand, experiment)

    def members(self, brand: str, experiment: str) -> dict[str, str]:
        """twin -> arm of every member (the assignment, for the dashboard and tests)."""
        with self._state.transaction(readonly=True) as tx:
            return {
                str(t): str(a)
                for t, a in tx.execute(
                    "SELECT twin, arm FROM experiment_members WHERE brand = ? AND experiment = ?",
                    (brand, experiment),
                )
            }

    def delete(self, brand: str, experiment: str) -> dict[str, Any] | None:
        """Delete an experiment and its assignment; the experiment as it was (None: no
        such experiment of ``brand``)."""
        with self._state.transaction() as tx:
            found = self._get(tx, brand, experiment)
            if found is not None:
                where = "brand = ? AND experiment = ?"
                tx.execute(f"DELETE FROM experiment_members WHERE {where}", (brand, experiment))
                tx.execute(
                    "DELETE FROM experiments WHERE brand = ? AND id = ?", (brand, experiment)
                )
            return found

    def treated_devices(self, brand: str, experiment: str) -> dict[str, list[str]]:
        """device -> the treated twins it holds (from the twin query index), where the
        experiment's offer goes."""
        out: dict[str, list[str]] = {}
        with self._state.transaction(readonly=True) as tx:
            for device, twin in tx.execute(
                "SELECT DISTINCT f.device, m.twin FROM experiment_members m JOIN "
                "(SELECT brand, twin, device FROM twin_fields UNION "
                "SELECT brand, twin, device FROM twin_counter_parts) f "
                "ON f.brand = m.brand AND f.twin = m.twin "
                "WHERE m.brand = ? AND m.experiment = ? AND m.arm = 'treated' "
                "ORDER BY f.device, m.twin",
                (brand, experiment),
            ):
                out.setdefault(str(device), []).append(str(twin))
        return out

    @staticmethod
    def forget(tx: Tx, brand: str, twins: Sequence[str]) -> None:
        """Erasure: the twins leave every experiment (inside the erasure's transaction)."""
        tx.lock(_lock(brand))
        for i in range(0, len(twins), _CHUNK):
            part = list(twins[i : i + _CHUNK])
            tx.execute(
                f"DELETE FROM experiment_members WHERE brand = ? AND twin IN ({marks(len(part))})",
                (brand, *part),
            )
