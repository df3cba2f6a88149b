"""Model rollouts: named cohorts, rollouts, and which models each device should run.

State lives in the state store (cloud_hub.store), shared by every hub instance. A rollout
assigns one uploaded model (:mod:`cloud_hub.models._repository`) to a target:

- ``all``: every device of the model's product, including devices provisioned later;
- ``percent``: that share of the product's devices, exactly (rounded half up). Devices
  are taken in a fixed pseudo-random order per model *name* and stay members once taken,
  so raising the share (a new rollout of the same model at 50 % after 10 %) keeps the
  first devices, and a device is never pulled back when the fleet grows;
- ``cohort``: the devices of a named cohort (``PUT .../cohorts/{name}``), live: a device
  added to the cohort later gets the model too.

A device's desired set is, per model name, the model of the newest rollout it is a
member of; :mod:`cloud_hub.models._publisher` sends it to the device.

Reads that decide a write (topping a percentage rollout up, numbering a device's model
set) hold the brand's lock ``rollouts:<brand>`` (``Tx.lock``), so instances doing the same
work at once do it one after the other: no device is counted twice toward a share, and a
set's version is handed out once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from cloud_hub._errors import RolloutError
from cloud_hub.registry import Registry
from cloud_hub.store import StateStore, Tx
from protocol import Clock, ModelManifest, SystemClock, TwinSyncError, check_device

from ._repository import ModelRepo

__all__ = ["Rollout", "RolloutStore", "Target"]

TargetKind = Literal["all", "percent", "cohort"]
_COHORT_MAX = 100_000
# Rollouts of one brand with the model each names (for its product and manifest).
_OF_BRAND = (
    "FROM rollouts r JOIN models m "
    "ON m.brand=r.brand AND m.name=r.name AND m.version=r.version WHERE r.brand=?"
)


@dataclass(frozen=True, slots=True)
class Target:
    """Which devices a rollout addresses."""

    kind: TargetKind
    value: str = ""  # percent: the share as text ("12.5"); cohort: its name

    @classmethod
    def parse(cls, raw: object) -> Target:
        """``{"all": true}``, ``{"percent": 0 < p <= 100}`` or ``{"cohort": "name"}``."""
        if not isinstance(raw, dict) or len(raw) != 1:
            raise RolloutError(
                'target must be one of {"all": true}, {"percent": P}, {"cohort": "name"}',
                reason="bad_target",
            )
        ((key, value),) = raw.items()
        if key == "all" and value is True:
            return cls("all")
        if key == "percent" and isinstance(value, int | float) and not isinstance(value, bool):
            if 0 < value <= 100:
                return cls("percent", repr(float(value)))
            raise RolloutError("percent must be in (0, 100]", reason="bad_target")
        if key == "cohort" and isinstance(value, str):
            return cls("cohort", _check_cohort(value))
        raise RolloutError(f"unknown or malformed target {raw!r}", reason="bad_target")

    def to_json(self) -> dict[str, object]:
        """The API form."""
        if self.kind == "all":
            return {"all": True}
        if self.kind == "percent":
            return {"percent": float(self.value)}
        return {"cohort": self.value}


@dataclass(frozen=True, slots=True)
class Rollout:
    """One rollout and the devices it currently addresses."""

    id: int
    brand: str
    model: ModelManifest
    target: Target
    created_ms: int
    members: tuple[str, ...]

    @property
    def name(self) -> str:
        """The model's name (one model per name runs on a device)."""
        return self.model.name

    @property
    def version(self) -> int:
        """The model's version."""
        return self.model.version

    def summary(self) -> dict[str, object]:
        """The API's view (without per-device progress)."""
        return {
            "id": self.id,
            "model": self.model.ref,
            "product": self.model.product,
            "target": self.target.to_json(),
            "created_ms": self.created_ms,
            "devices": len(self.members),
        }


def _check_cohort(name: str) -> str:
    if not (1 <= len(name) <= 64 and name.replace("-", "").replace("_", "").isalnum()):
        raise RolloutError("cohort names are 1-64 letters, digits, '-' or '_'", reason="bad_cohort")
    return name


def _order(name: str, device: str) -> bytes:
    # Fixed per model name: successive rollouts of one model walk the fleet in one order.
    return hashlib.sha256(f"{name}\0{device}".encode()).digest()


class RolloutStore:
    """Models, cohorts and rollouts of every brand (see the module docstring)."""

    def __init__(
        self,
        *,
        state: StateStore,
        repo: ModelRepo,
        registry: Registry,
        clock: Clock | None = None,
    ) -> None:
        self._state = state
        self.repo = repo
        self._registry = registry
        # The command line starts rollouts without a hub: the system clock then.
        self._clock: Clock = clock or SystemClock()

    # -- cohorts -----------------------------------------------------------------------
    def put_cohort(self, brand: str, cohort: str, devices: list[str]) -> list[str]:
        """Replace the cohort's device list; return it sorted."""
        cohort = _check_cohort(cohort)
        if len(devices) > _COHORT_MAX:
            raise RolloutError(f"a cohort holds at most {_COHORT_MAX} devices", reason="too_big")
        try:
            members = sorted({check_device(d) for d in devices})
        except TwinSyncError as exc:
            raise RolloutError(str(exc), reason="bad_device") from None
        with self._state.transaction() as tx:
            tx.execute("DELETE FROM cohorts WHERE brand=? AND cohort=?", (brand, cohort))
            tx.executemany(
                "INSERT INTO cohorts (brand, cohort, device) VALUES (?, ?, ?)",
                [(brand, cohort, d) for d in members],
            )
        return members

    def cohort(self, brand: str, cohort: str) -> list[str]:
        """The cohort's devices (empty if it does not exist)."""
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT device FROM cohorts WHERE brand=? AND cohort=? ORDER BY device",
                (brand, _check_cohort(cohort)),
            ).fetchall()
        return [r[0] for r in rows]

    # -- rollouts ----------------------------------------------------------------------
    def create(self, brand: str, ref: str, target: Target) -> Rollout:
        """Start a rollout of an uploaded model ``name@version``."""
        name, _, version = ref.partition("@")
        if not version.isdigit():
            raise RolloutError(f"model must be 'name@version', got {ref!r}", reason="bad_model")
        model = self.repo.model(brand, name, int(version))
        if model is None:
            raise RolloutError(
                f"no model {ref} uploaded for brand {brand}", reason="unknown_model", status=404
            )
        if target.kind == "cohort" and not self.cohort(brand, target.value):
            raise RolloutError(
                f"cohort {target.value!r} has no devices; PUT it first", reason="unknown_cohort"
            )
        row = {
            "brand": brand,
            "name": name,
            "version": int(version),
            "target": target.kind,
            "value": target.value,
            "created_ms": self._clock.now_ms(),
        }
        with self._state.transaction() as tx:
            rollout_id = int(tx.insert("rollouts", row, returning="id"))
        self.reconcile(brand)
        found = self.rollout(brand, rollout_id)
        assert found is not None
        return found

    def rollouts(self, brand: str) -> list[Rollout]:
        """Every rollout of ``brand``, oldest first, with its current members."""
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT r.id, r.target, r.value, r.created_ms, m.manifest "
                f"{_OF_BRAND} ORDER BY r.id",
                (brand,),
            ).fetchall()
        specs = [(r[0], Target(r[1], r[2]), ModelManifest.from_json(r[4]), r[3]) for r in rows]
        members = self._members(brand, [(i, t, m.product) for i, t, m, _ in specs])
        return [
            Rollout(i, brand, manifest, target, created, members[i])
            for i, target, manifest, created in specs
        ]

    def rollout(self, brand: str, rollout_id: int) -> Rollout | None:
        """One rollout, or None (also for another brand's id)."""
        return next((r for r in self.rollouts(brand) if r.id == rollout_id), None)

    def reconcile(self, brand: str) -> None:
        """Top percentage rollouts up to their share of the devices that exist now."""
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                f"SELECT r.id, r.name, r.value, m.product {_OF_BRAND} AND r.target='percent'",
                (brand,),
            ).fetchall()
        if not rows:
            return
        eligible = self._eligible_by_product(brand)
        with self._state.transaction() as tx:
            # Read the members and top them up as one step among instances: two doing it
            # at once would each pick the missing devices and overshoot the share.
            tx.lock(f"rollouts:{brand}")
            for rollout_id, name, share, product in rows:
                self._top_up(tx, rollout_id, name, share, _devices_for(eligible, product))

    @staticmethod
    def _top_up(tx: Tx, rollout_id: int, name: str, share: str, devices: list[str]) -> None:
        have = {
            r[0]
            for r in tx.execute("SELECT device FROM rollout_members WHERE rollout=?", (rollout_id,))
        }
        want = int(float(share) * len(devices) / 100 + 0.5)
        missing = want - len(have & set(devices))
        if missing <= 0:
            return
        pick = sorted((d for d in devices if d not in have), key=lambda d: _order(name, d))
        tx.insert_ignore(
            "rollout_members", [{"rollout": rollout_id, "device": d} for d in pick[:missing]]
        )

    def _eligible_by_product(self, brand: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for record in self._registry.devices(brand):
            if not record.revoked:
                out.setdefault(record.product, []).append(record.device)
        return out

    def _members(
        self, brand: str, specs: list[tuple[int, Target, str]]
    ) -> dict[int, tuple[str, ...]]:
        """rollout id -> the devices it addresses now, for (id, target, product) specs."""
        if not specs:
            return {}
        eligible = self._eligible_by_product(brand)
        out: dict[int, tuple[str, ...]] = {}
        with self._state.transaction(readonly=True) as tx:
            for rollout_id, target, product in specs:
                devices = set(_devices_for(eligible, product))
                if target.kind == "all":
                    chosen = devices
                elif target.kind == "percent":
                    chosen = devices & {
                        r[0]
                        for r in tx.execute(
                            "SELECT device FROM rollout_members WHERE rollout=?", (rollout_id,)
                        )
                    }
                else:
                    chosen = devices & {
                        r[0]
                        for r in tx.execute(
                            "SELECT device FROM cohorts WHERE brand=? AND cohort=?",
                            (brand, target.value),
                        )
                    }
                out[rollout_id] = tuple(sorted(chosen))
        return out

    # -- what each device should run -----------------------------------------------------
    def desired(self, brand: str) -> dict[str, dict[str, Rollout]]:
        """device -> model name -> the newest rollout of that name the device is in."""
        out: dict[str, dict[str, Rollout]] = {}
        for rollout in self.rollouts(brand):  # oldest first: newer ones overwrite
            for device in rollout.members:
                out.setdefault(device, {})[rollout.name] = rollout
        return out

    def set_versions(
        self, brand: str, digests: dict[str, str], *, everything: bool = False
    ) -> dict[str, int]:
        """Record each device's set ``digest``; return the new version of every device
        whose set changed (what must be published), or with ``everything`` the version of
        every device that has a set. Devices that once had a set and are not in
        ``digests`` get the digest of an empty set (``digests[""]``)."""
        with self._state.transaction() as tx:
            # One instance at a time: each version of a device's set is handed out once
            # (the other instance then finds the digest recorded: nothing to publish).
            tx.lock(f"rollouts:{brand}")
            known = {
                r[0]: (r[1], r[2])
                for r in tx.execute(
                    "SELECT device, version, digest FROM model_sets WHERE brand=?", (brand,)
                )
            }
            empty = digests.get("", "")
            changed: dict[str, int] = {}
            for device in set(known) | (set(digests) - {""}):
                digest = digests.get(device, empty)
                version, old = known.get(device, (0, None))
                if old != digest:
                    changed[device] = version + 1
                elif everything:
                    changed[device] = version
            tx.upsert(
                "model_sets",
                [
                    {"brand": brand, "device": d, "version": v, "digest": digests.get(d, empty)}
                    for d, v in changed.items()
                    if v != known.get(d, (0, None))[0]
                ],
                key=["brand", "device"],
                update=["version", "digest"],
            )
        return changed

    def brands(self) -> list[str]:
        """Brands with at least one rollout."""
        with self._state.transaction(readonly=True) as tx:
            return [r[0] for r in tx.execute("SELECT DISTINCT brand FROM rollouts ORDER BY 1")]


def _devices_for(eligible: dict[str, list[str]], product: str) -> list[str]:
    # Anomaly models may be product "any": every device of the brand can run them.
    if product == "any":
        return sorted(d for group in eligible.values() for d in group)
    return eligible.get(product, [])
