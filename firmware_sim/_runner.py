"""Drive real edge agents with a fleet's signals.

``FleetRunner`` hosts one in-process ``edge_agent.Agent`` per device (each with its own
MQTT connection and SQLite outbox, exactly as on a device) and feeds it its stream in
chunks, restarting the agent at the fleet's reboot points. ``ExternalFeeder`` feeds an
agent process over its local NDJSON ingest port and survives that process being killed:
un-replied signals are re-sent, and ones already committed come back ``duplicate``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol import SignalIn

from ._errors import SimulationError
from ._feeder import ALL_GRANTED
from ._fleet import Fleet
from ._labels import DeviceClock
from ._truth import GroundTruth, Outcome

if TYPE_CHECKING:
    from edge_agent import Agent, AgentConfig, Exposure

__all__ = ["FleetRunner"]

log = logging.getLogger("firmware_sim.runner")

#: Smallest pause when pacing (seconds): keeps thousands of paced devices cheap.
_TICK_S = 0.01


class FleetRunner:
    """Runs every device of ``fleet`` (or only ``devices``) through an in-process agent.

    ``bundles`` maps device id -> its provisioned ``agent.toml``. Each agent's outbox lives
    in ``workdir/<device>/outbox.sqlite``; ``agent_overrides`` are merged into every
    agent's config (e.g. faster resends for fault tests). ``models`` runs the on-device
    models too (off by default: the ground truth does not include their outputs). After
    :meth:`run`, the agents stay up so :meth:`drain` can wait for the hub's acks;
    :meth:`close` stops them.
    """

    def __init__(
        self,
        fleet: Fleet,
        bundles: dict[str, Path],
        mqtt_host: str,
        mqtt_port: int,
        workdir: Path,
        *,
        chunk: int = 500,
        devices: Sequence[str] | None = None,
        agent_overrides: dict[str, Any] | None = None,
        models: bool = False,
        on_exposure: Callable[[str, Exposure], None] | None = None,
    ) -> None:
        self.fleet = fleet
        self.bundles = {d: Path(p) for d, p in bundles.items()}
        self.mqtt_host, self.mqtt_port = mqtt_host, mqtt_port
        self.workdir = Path(workdir)
        self.chunk = chunk
        self.device_ids = (
            list(devices) if devices is not None else [d.device_id for d in fleet.devices]
        )
        missing = [d for d in self.device_ids if d not in self.bundles]
        if missing:
            raise SimulationError(f"no bundle for devices {missing[:5]} ({len(missing)} in all)")
        self.overrides = agent_overrides or {}
        self.models = models
        #: the simulated households' application: ``(device id, exposure)`` for each offer
        #: of the strategy lab an agent hands on (None: the agents take no offers)
        self.on_exposure = on_exposure
        #: device id -> [(seq, status, reason)] as the agent answered, in sending order
        self.results: dict[str, list[Outcome]] = {}
        #: agent restarts performed at the fleet's reboot points
        self.reboots_done = 0
        self._agents: dict[str, Agent] = {}
        self._run_task: asyncio.Task[Any] | None = None

    @property
    def agents(self) -> dict[str, Agent]:
        """The agents currently running, by device id."""
        return dict(self._agents)

    def config(self, device_id: str) -> AgentConfig:
        """The agent config of one device: its bundle plus broker, outbox and overrides."""
        from edge_agent import load_config

        overrides: dict[str, Any] = {
            "mqtt": {"host": self.mqtt_host, "port": self.mqtt_port},
            "outbox": {"path": str(self.workdir / device_id / "outbox.sqlite")},
            "ingest": {"port": 0},
            # Ground truth covers what signals do to twins; model outputs are checked by
            # their own tests (they depend on the models, not on the protocol rules).
            "models": {"enabled": self.models},
        }
        zone = self.fleet.device_map[device_id].tz
        if zone != "UTC":  # the device knows its household's zone (docs/edge-agent.md)
            overrides["device"] = {"timezone": zone}
        for section, values in self.overrides.items():
            overrides.setdefault(section, {}).update(values)
        (self.workdir / device_id).mkdir(parents=True, exist_ok=True)
        return load_config(self.bundles[device_id], overrides, environ={})

    async def run(self, speed: float | None = None, chunk: int | None = None) -> None:
        """Feed every device concurrently; returns when every signal has a reply.

        ``speed``: simulated seconds per real second (None or 0: as fast as possible).
        ``chunk``: signals per ``ingest_many`` call (default: the constructor's).
        """
        size = chunk or self.chunk
        if size < 1:
            raise SimulationError("chunk must be at least 1")
        t0 = time.monotonic()
        self._run_task = asyncio.current_task()
        try:
            async with asyncio.TaskGroup() as tg:
                for device_id in self.device_ids:
                    tg.create_task(
                        self._run_device(device_id, speed or None, size, t0),
                        name=f"firmware_sim.device[{device_id}]",
                    )
        finally:
            self._run_task = None

    async def _start(self, device_id: str) -> Agent:
        from edge_agent import Agent

        if self.on_exposure is None:
            agent = Agent(self.config(device_id))
        else:
            agent = Agent(
                self.config(device_id), on_exposure=functools.partial(self.on_exposure, device_id)
            )
        await agent.__aenter__()
        self._agents[device_id] = agent
        return agent

    async def _stop(self, device_id: str) -> None:
        agent = self._agents.pop(device_id, None)
        if agent is not None:
            await agent.__aexit__(None, None, None)

    async def _run_device(self, device_id: str, speed: float | None, size: int, t0: float) -> None:
        signals = self.fleet.signals(device_id)
        cuts = sorted({0, *self.fleet.reboots(device_id), len(signals)})
        results = self.results.setdefault(device_id, [])
        clock = self.fleet.clock(device_id)
        agent = self._agents.get(device_id) or await self._start(device_id)
        # The simulated customers accept the device's notice before they use it (their
        # consent is in the agent's ledger, so a reboot keeps it).
        for subject in sorted({s.subject for s in signals}):
            if not all(agent.consent_state(subject).values()):
                agent.set_consent(subject, ALL_GRANTED, "sim-1")
        try:
            for a, b in itertools.pairwise(cuts):
                if a > 0:  # a reboot: the process stops politely and comes back
                    await self._stop(device_id)
                    agent = await self._start(device_id)
                    self.reboots_done += 1
                i = a
                while i < b:
                    j = min(b, i + size)
                    if speed is not None:
                        j = await self._paced(signals, i, j, clock, speed, t0)
                    for r in await agent.ingest_many(signals[i:j]):
                        results.append((r.seq, r.status, r.reason))  # type: ignore[arg-type]
                    i = j
        except BaseException as exc:
            try:
                await self._stop(device_id)
            except Exception as stop_exc:
                if isinstance(exc, asyncio.CancelledError):
                    # The agent's own task group cancelled us: its failure is the real news.
                    raise SimulationError(
                        f"the agent of {device_id} failed: {stop_exc!r}"
                    ) from stop_exc
                log.exception("stopping the agent of %s after %r failed", device_id, exc)
            raise

    async def _paced(
        self, signals: list[SignalIn], i: int, j: int, clock: DeviceClock, speed: float, t0: float
    ) -> int:
        """Wait until signal ``i`` is due; return the end of the due run within [i, j)."""
        start, end = self.fleet.start_ms, self.fleet.end_ms

        def due(k: int) -> float:  # real seconds since t0 (absurd stamps are due at once)
            true_ts = min(max(clock.true_ms(signals[k].ts), start), end)
            return (true_ts - start) / 1000 / speed

        await asyncio.sleep(max(0.0, due(i) - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0 + _TICK_S
        k = i + 1
        while k < j and due(k) <= elapsed:
            k += 1
        return k

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - mirrors Agent.drained
        """Wait until every running agent's outbox is acked by the hub; False on timeout."""
        checks = await asyncio.gather(*(a.drained(timeout) for a in self._agents.values()))
        return all(checks)

    async def close(self) -> None:
        """Stop a :meth:`run` still in progress, then every agent (outboxes stay on disk)."""
        task = self._run_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            await asyncio.wait([task])
        for device_id in list(self._agents):
            try:
                await self._stop(device_id)
            except Exception:
                log.exception("stopping the agent of %s failed", device_id)

    def mismatches(self, truth: GroundTruth) -> list[str]:
        """Differences between the agents' replies and the ground truth (empty: all agree).

        One line per device that disagrees, naming the first differing signal.
        """
        out = []
        for device_id in self.device_ids:
            got = self.results.get(device_id, [])
            want = truth.outcomes.get(device_id, [])
            if got == want:
                continue
            for i, (g, w) in enumerate(zip(got, want, strict=False)):
                if g != w:
                    sig = self.fleet.signals(device_id)[i]
                    out.append(f"{device_id} #{i} ({sig.name} ts={sig.ts}): agent {g} != truth {w}")
                    break
            else:
                out.append(f"{device_id}: {len(got)} replies != {len(want)} expected")
        return out
