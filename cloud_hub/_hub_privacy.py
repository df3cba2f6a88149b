"""The customer's rights, wired: :func:`build_privacy` makes the ingest policy and the
data-subject procedures (access, erasure, objection, rectification, consent, relinks)
on the state store and the hub's shared parts.

Split out of _hub.py: :class:`~cloud_hub._hub.Hub` calls it once the state store is open
and exposes each part under the same attribute name as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloud_hub.privacy import (
    ConsentChanges,
    DeviceCommands,
    Erasures,
    FieldBlocks,
    IngestPolicy,
    Objections,
    Rectifier,
    Relinks,
    RequestLedger,
    Subjects,
    Tombstones,
)
from cloud_hub.store import InfluxStore, StateStore, TwinIndex
from protocol import Clock, SigningKey

from ._config import HubConfig
from ._metrics import Metrics

__all__ = ["PrivacyParts", "build_privacy"]


@dataclass(frozen=True, kw_only=True)
class PrivacyParts:
    """The parts :func:`build_privacy` made (the hub keeps each as its own attribute)."""

    subjects: Subjects
    ledger: RequestLedger
    erasures: Erasures
    relinks: Relinks
    policy: IngestPolicy
    objections: Objections
    rectifier: Rectifier
    consent: ConsentChanges


def build_privacy(
    config: HubConfig,
    *,
    state: StateStore,
    key: SigningKey,
    clock: Clock,
    metrics: Metrics,
    store: InfluxStore,
    tombstones: Tombstones,
    blocks: FieldBlocks,
    index: TwinIndex,
    publish: Callable[[str, bytes], None],
    notify: Callable[[str, str, dict[str, Any]], object],
) -> PrivacyParts:
    """The ingest policy and the data-subject procedures, with their collaborators:
    ``publish`` sends the devices their signed commands, ``notify`` a privacy event."""
    subjects = Subjects(config.keys.secrets_dir)
    commands = DeviceCommands(key=key, clock=clock, publish=publish)
    ledger = RequestLedger(state=state, key=key, clock=clock, notify=notify)
    erasures = Erasures(
        state=state,
        tombstones=tombstones,
        blocks=blocks,
        subjects=subjects,
        ledger=ledger,
        commands=commands,
        store=store,
        index=index,
        clock=clock,
    )
    relinks = Relinks(
        state=state,
        secrets_dir=config.keys.secrets_dir,
        store=store,
        index=index,
        metrics=metrics,
        clock=clock,
        is_erased=tombstones.is_erased,
        notify=notify,
        grace_s=config.keys.link_grace_s,
    )
    policy = IngestPolicy(tombstones=tombstones, blocks=blocks, relinks=relinks, metrics=metrics)
    objections = Objections(
        subjects=subjects,
        ledger=ledger,
        blocks=blocks,
        commands=commands,
        store=store,
        index=index,
        clock=clock,
    )
    rectifier = Rectifier(
        state=state,
        subjects=subjects,
        ledger=ledger,
        blocks=blocks,
        commands=commands,
        store=store,
        index=index,
        clock=clock,
    )
    consent = ConsentChanges(
        commands=commands, ledger=ledger, objections=objections, clock=clock, notify=notify
    )
    return PrivacyParts(
        subjects=subjects,
        ledger=ledger,
        erasures=erasures,
        relinks=relinks,
        policy=policy,
        objections=objections,
        rectifier=rectifier,
        consent=consent,
    )
