"""``twinsync demo``: broker, database, hub and a simulated fleet on this machine.

Starts private mosquitto and influxd instances (twinsync.services), a hub in this
process, provisions a fleet (default 120 devices), replays a simulated day through real
edge agents, then prints where to look and a summary of the twins the hub merged. It
keeps serving the API until Ctrl-C (or exits at once with ``--exit``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import aiohttp

from cloud_hub import Hub, load_hub_config, provision_devices
from firmware_sim import FaultSpec, Fleet, FleetRunner, FleetSpec
from protocol import TwinSyncError

from ._demo_lab import DemoLab
from .services import LocalServices, ServiceError

__all__ = ["main", "parser"]

# One representative field per product for the summary table.
_HIGHLIGHTS = {
    "coffee.segment": "segment",
    "coffee.churn_risk": "churn risk",
    "coffee.brews_total": "brews",
    "thermostat.setpoint_c": "setpoint",
    "wearable.steps_total": "steps",
    "tv.genre": "genre",
}

_HUB_TOML = """\
# Written by `twinsync demo`; a real deployment starts from deploy/hub.example.toml.
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
client_id = "demo-hub"

{influx}
[api]
host = "127.0.0.1"
port = {api_port}

[registry]
path = "registry.sqlite"

[keys]
secrets_dir = "secrets"
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2): what is wrong and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="twinsync demo",
        description="Run broker, database, hub and a simulated fleet locally; show the twins.",
    )
    p.add_argument("--devices", type=int, default=120, help="simulated devices (default 120)")
    p.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    p.add_argument("--seed", type=int, default=7, help="fleet seed (default 7)")
    p.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="simulated seconds per real second (default 0: as fast as possible)",
    )
    p.add_argument("--api-port", type=int, default=8080, help="hub API port (default 8080)")
    p.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    p.add_argument("--show", type=int, default=12, help="twins in the summary table")
    p.add_argument(
        "--no-faults",
        action="store_true",
        help="no firmware faults (the realistic fleet's other mess stays)",
    )
    p.add_argument("--exit", action="store_true", help="stop after printing the summary")
    return p


def _say(text: str = "") -> None:
    print(text, flush=True)


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return "" if value is None else str(value)


async def _summary(hub: Hub, brand: str, show: int) -> None:
    base = f"{hub.api_url}/v1/brands/{brand}"
    # A read-only key for this demo's brand (the API needs one for every /v1 route).
    _key, token = hub.api_keys.create(brand, "demo", ["read"])
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        twins = (await _get(session, f"{base}/twins?limit=10000"))["twins"]
        devices = (await _get(session, f"{base}/devices"))["devices"]
        states = [await _get(session, f"{base}/twins/{t}") for t in twins[:show]]
    cols = ["twin", "devices", *_HIGHLIGHTS.values(), "fields"]
    rows = []
    for s in states:
        fields = s["fields"]
        rows.append(
            [
                s["twin"][:18] + "…",
                str(len(s["devices"])),
                *(_cell(fields.get(name, {}).get("value")) for name in _HIGHLIGHTS),
                str(len(fields)),
            ]
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    _say(f"{len(twins)} twins from {len(devices)} devices (first {len(rows)} shown):")
    _say("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        _say("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    if twins:
        _say()
        _say("Look at them (with this demo's read-only API key):")
        _say(f"  export TS_KEY={token}")
        auth = 'curl -H "Authorization: Bearer $TS_KEY"'
        _say(f"  {auth} {base}/twins")
        _say(f"  {auth} {base}/twins/{twins[0]}")
        field = sorted(states[0]["fields"])[0]
        _say(f"  {auth} '{base}/twins/{twins[0]}/history?field={field}&every=1h'")
        _say(f"  {auth} {base}/devices")
        _say(f"  {auth} '{base}/segments/changes/stream?product=coffee&since=0'")
        _say(f"  curl {hub.api_url}/metrics")
        _say()
        # The key above is read-only: every page but the privacy requests (docs/dashboard.md).
        _say(f"Dashboard: {hub.api_url}/dashboard/  (brand {brand}, the key above)")
        _say(f"  the finished experiment: {hub.api_url}/dashboard/#experiments")


async def _progress(runner: FleetRunner, total: int, started: float) -> None:
    while True:
        await asyncio.sleep(2.0)
        done = sum(len(r) for r in runner.results.values())
        rate = done / max(time.monotonic() - started, 1e-9)
        _say(f"  … {done:,}/{total:,} signals through the agents ({rate:,.0f}/s)")


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _demo(args: argparse.Namespace, workdir: Path) -> None:
    with LocalServices(workdir / "services", keep=True) as services:
        _say(f"mosquitto  mqtt://127.0.0.1:{services.mosquitto.port}")
        _say(
            f"influxd    {services.influxd.url}  (database twinsync_demo, user "
            f"{services.influxd.username}, password in {services.influxd.password_file})"
        )
        hub_toml = workdir / "hub.toml"
        hub_toml.write_text(
            _HUB_TOML.format(
                mqtt_port=services.mosquitto.port,
                influx=services.influxd.hub_toml("twinsync_demo"),
                api_port=args.api_port,
            )
        )
        config = load_hub_config(hub_toml)
        # The realistic profile (docs/simulation.md): what a real fleet looks like.
        spec = FleetSpec.realistic(seed=args.seed, devices=args.devices, days=args.days)
        if args.no_faults:
            spec = dataclasses.replace(spec, faults=FaultSpec.none())
        fleet = Fleet.generate(spec)
        bundles = provision_devices(
            config.registry.path,
            config.keys.secrets_dir,
            fleet.spec.brand,
            [(d.device_id, d.product) for d in fleet.devices],
            workdir / "bundles",
            "127.0.0.1",
            services.mosquitto.port,
        )
        total = sum(len(fleet.signals(d.device_id)) for d in fleet.devices)
        products = Counter(d.product for d in fleet.devices)
        async with Hub(config) as hub:
            await hub.ready.wait()
            _say(f"hub API    {hub.api_url}  (config {hub_toml})")
            _say()
            _say(
                f"Simulating {len(fleet.devices)} devices "
                f"({', '.join(f'{n} {p}' for p, n in sorted(products.items()))}) "
                f"for {args.days:g} day(s): {total:,} signals"
            )
            lab = DemoLab(fleet, bundles)  # the households' side of the experiment
            runner = FleetRunner(
                fleet,
                bundles,
                "127.0.0.1",
                services.mosquitto.port,
                workdir / "agents",
                models=True,
                on_exposure=lab.household,
            )
            started = time.monotonic()
            progress = asyncio.create_task(_progress(runner, total, started))
            try:
                await runner.run(speed=args.speed or None)
                drained = await runner.drain(120)
                progress.cancel()
                outcomes = Counter(s for r in runner.results.values() for _, s, _ in r)
                _say(
                    f"done in {time.monotonic() - started:.1f}s: "
                    + ", ".join(f"{n:,} {s}" for s, n in sorted(outcomes.items()))
                    + ("" if drained else " (some outboxes were not drained in 120 s)")
                )
                m = hub.metrics
                _say(
                    f"hub: {m.get('twinsync_hub_deltas_written_total'):,.0f} deltas, "
                    f"{m.get('twinsync_hub_ops_written_total'):,.0f} field values written, "
                    f"{m.get('twinsync_hub_rejected_total'):,.0f} messages rejected"
                )
                _say()
                # The strategy lab: one short experiment to a finished result (the
                # dashboard's Experiments page shows it).
                await lab.run(hub, runner, _say)
            finally:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress
                await runner.close()
            _say()
            await _summary(hub, spec.brand, args.show)
            if not args.exit:
                _say()
                _say(f"Serving until Ctrl-C. Everything lives in {workdir}")
                await _wait_for_stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``twinsync demo``; returns the exit code."""
    args = parser().parse_args(argv)
    if args.devices < 1 or args.days <= 0:
        print("twinsync demo: --devices must be >= 1 and --days > 0", file=sys.stderr)
        return 2
    try:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            asyncio.run(_demo(args, args.workdir.resolve()))
        else:
            with tempfile.TemporaryDirectory(prefix="twinsync-demo-") as tmp:
                asyncio.run(_demo(args, Path(tmp)))
    except TwinSyncError as exc:
        if exc.reason == "already_provisioned":
            # A --workdir kept from an earlier demo: its registry already has this fleet.
            print(
                f"twinsync demo: --workdir {args.workdir} already holds a provisioned demo "
                "fleet; pass a new --workdir, or remove that one",
                file=sys.stderr,
            )
            return 2
        print(f"twinsync demo: {exc}", file=sys.stderr)
        return 1
    except ServiceError as exc:
        # mosquitto/influxd missing or not starting: the message says what to install.
        print(f"twinsync demo: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            # The one listener with a fixed port: the hub API (broker and database get
            # free ports).
            print(
                f"twinsync demo: --api-port {args.api_port} is in use (address already in "
                "use): pass another --api-port, or 0 for any free port",
                file=sys.stderr,
            )
        else:
            where = f" {exc.filename}" if exc.filename else ""
            print(f"twinsync demo: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
