"""A bundle made by 'twinsync hub provision' gives the device a working local ingest
interface with no editing: 'twinsync edge run' says where it listens, and a signal sent
there reaches the hub and InfluxDB (real mosquitto, influxd, hub and agent process)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from _cli import run_twinsync, twinsync_command
from _poll import eventually

from cloud_hub import Hub, load_hub_config
from edge_agent import load_config
from twinsync.services import LocalServices

_NO_MODELS = {"TWINSYNC_EDGE__MODELS__ENABLED": "false"}  # start-up speed only


def _hub_toml(root: Path, services: LocalServices, unique: str) -> Path:
    toml = root / "hub.toml"
    toml.write_text(
        f'[mqtt]\nport = {services.mosquitto.port}\nclient_id = "h{unique}"\n'
        f'shared_group = "g{unique}"\nbrands = ["b{unique}"]\n'
        + services.influxd.hub_toml(f"db{unique}")
        + '[api]\nport = 0\n[registry]\npath = "registry.sqlite"\n'
        '[keys]\nsecrets_dir = "secrets"\n[models]\ndir = "models"\n'
    )
    return toml


def _start_agent(agent_toml: Path, stderr: Path) -> subprocess.Popen[str]:
    # Exactly what an operator types; RUNTIME_DIRECTORY unset, as outside systemd.
    env = {k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"}
    with stderr.open("w") as err:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*twinsync_command(), "edge", "run", "--config", str(agent_toml)],
            env={**env, **_NO_MODELS},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


async def _send(socket_path: str, line: dict[str, object]) -> dict[str, object]:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        writer.write(json.dumps(line).encode() + b"\n")
        await writer.drain()
        reply: dict[str, object] = json.loads(await reader.readline())
        return reply
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_provisioned_bundle_ingests_through_the_address_it_prints(
    tmp_path: Path, services: LocalServices, unique: str
) -> None:
    brand = f"b{unique}"
    toml = _hub_toml(tmp_path, services, unique)
    bundle = tmp_path / "coffee-1"
    proc = run_twinsync(
        "hub", "provision", "--config", str(toml), "--brand", brand, "--device", "coffee-1",
        "--product", "coffee", "--out", str(bundle),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    agent_toml = Path(proc.stdout.strip())
    assert agent_toml == bundle / "agent.toml"
    async with Hub(load_hub_config(toml, environ={})) as hub:
        await hub.ready.wait()
        agent = _start_agent(agent_toml, tmp_path / "agent.err")
        try:
            assert agent.stdout is not None
            printed = json.loads(await asyncio.to_thread(agent.stdout.readline))
            socket_path = printed["ingest_socket"]
            assert printed == {"ingest_socket": str(bundle / "ingest.sock")}
            # ... and one INFO line in the log says the same.
            log = (tmp_path / "agent.err").read_text()
            assert re.findall(r" INFO edge_agent\.ingest: ingest listening on (.*)", log) == [
                f"unix:{socket_path}"
            ]
            # Only the agent's user and group may talk to it (raw customer ids pass here).
            assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660
            signal_line = {
                "seq": 1,
                "ts": int(time.time() * 1000),
                "subject": "ann",
                "name": "coffee.brew",
                "value": 1,
            }
            assert await _send(socket_path, signal_line) == {
                "seq": 1,
                "status": "accepted",
                "reason": None,
            }

            def stored() -> bool:
                (result,) = services.influxd.query(
                    "SELECT * FROM twin WHERE device='coffee-1'", f"db{unique}", check=False
                )
                return bool(result.get("series"))

            assert await eventually(stored, within=30)
            # A crash leaves the socket file behind; the next start replaces it.
            agent.send_signal(signal.SIGKILL)
            await asyncio.to_thread(agent.wait, 10)
            assert await asyncio.to_thread(os.path.exists, socket_path)
            agent = _start_agent(agent_toml, tmp_path / "agent2.err")
            assert agent.stdout is not None
            await asyncio.to_thread(agent.stdout.readline)
            signal_line.update(seq=2, ts=int(time.time() * 1000))
            assert (await _send(socket_path, signal_line))["status"] == "accepted"
            agent.terminate()
            assert await asyncio.to_thread(agent.wait, 20) == 0
            assert not await asyncio.to_thread(
                os.path.exists, socket_path
            )  # a clean stop removes it
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()


def _bundle_config(bundle: Path, environ: dict[str, str]) -> str:
    return load_config(bundle / "agent.toml", environ=environ).ingest.unix_socket


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "{bundle}/ingest.sock"),  # started by hand: next to agent.toml
        ({"RUNTIME_DIRECTORY": "/run/twinsync"}, "/run/twinsync/ingest.sock"),  # the unit
        ({"RUNTIME_DIRECTORY": "/run/a:/run/b"}, "/run/a/ingest.sock"),  # several: the first
        ({"TWINSYNC_EDGE__INGEST__UNIX_SOCKET": "/srv/x.sock"}, "/srv/x.sock"),  # absolute
        ({"TWINSYNC_EDGE__INGEST__UNIX_SOCKET": '""'}, ""),  # turned off
    ],
)
def test_where_a_bundle_socket_lies(tmp_path: Path, environ: dict[str, str], expected: str) -> None:
    from cloud_hub import provision_device

    toml = provision_device(
        tmp_path / "r.sqlite", tmp_path / "s", "acme", "d-1", "coffee", tmp_path / "bundle"
    )
    assert _bundle_config(toml.parent, environ) == expected.format(bundle=toml.parent)
