"""The swarm's world: a provisioned fleet, a broker secured as deployed, hub processes,
generator processes, and the CPU and memory of each.

The fleet is provisioned like any other (``provision_devices``: registry, device keys,
broker passwords, bundles); the broker is mosquitto with the Dynamic Security plugin and
the accounts ``twinsync hub broker-auth --out`` writes (one per device bound to its
client id, one per hub instance); the hubs are ``python -m twinsync hub run`` processes,
each with its own account, on one shared subscription. File descriptors: the bench
raises its own ``RLIMIT_NOFILE`` before it starts anything, and mosquitto inherits it
from the launcher's ``Popen``; each generator process raises its own.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from cloud_hub import load_hub_config, provision_devices
from cloud_hub.registry import DYNSEC_FILE, broker_setup, ensure_hub_password
from protocol import PRODUCTS, BoxPublicKey, VerifyKey, pseudonymize
from twinsync.services import LocalServices, Mosquitto, free_port

from ._swarm_devices import DeviceSpec, WorkerSpec, split, worker_main

__all__ = ["HubProc", "Swarm", "Usage", "Workers", "raise_fd_limit"]

BRAND = "swarm"
#: hub instance accounts the broker gets; ``bench-wire`` is the latency probe's observer
#: (the hubs' role: it may subscribe to deltas, unshared)
HUB_IDS = ("swarm-hub-1", "swarm-hub-2", "bench-wire")


def raise_fd_limit(want: int) -> int:
    """Raise this process's soft (and, as root, hard) ``RLIMIT_NOFILE`` to ``want``;
    children (mosquitto, influxd, hubs, generators) inherit it. Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want:
        with contextlib.suppress(ValueError, OSError):  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _high_water(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


_SAMPLE = re.compile(r"^([a-z_]+)(?:\{[^}]*\})? ([0-9.e+-]+)$", re.MULTILINE)


@dataclass
class HubProc:
    """One ``twinsync hub run`` process."""

    name: str
    api_port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def metrics(self) -> dict[str, float]:
        """Every metric summed over its labels."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for name, value in _SAMPLE.findall(text):
            out[name] = out.get(name, 0.0) + float(value)
        return out

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


@dataclass
class Usage:
    """CPU seconds and memory of the processes a run involves, between two snapshots."""

    cpu: dict[str, float] = field(default_factory=dict)
    rss_peak: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class _Sampler:
    """CPU times at the start; RSS peaks sampled while running."""

    def __init__(self, procs: dict[str, list[int]]) -> None:
        self._procs = {
            role: [psutil.Process(p) for p in pids] for role, pids in procs.items() if pids
        }
        self._t0 = time.perf_counter()
        self._cpu0 = {role: self._cpu(ps) for role, ps in self._procs.items()}
        self.rss: dict[str, int] = dict.fromkeys(self._procs, 0)
        self.sample()

    @staticmethod
    def _cpu(ps: list[psutil.Process]) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in ps)

    def sample(self) -> None:
        for role, ps in self._procs.items():
            self.rss[role] = max(self.rss[role], sum(p.memory_info().rss for p in ps))

    def done(self) -> Usage:
        self.sample()
        return Usage(
            {role: self._cpu(ps) - self._cpu0[role] for role, ps in self._procs.items()},
            dict(self.rss),
            time.perf_counter() - self._t0,
        )


class Workers:
    """Generator processes, each driving a slice of the devices (``_swarm_devices``)."""

    def __init__(self, spec: WorkerSpec, procs: int, nofile: int) -> None:
        ctx = mp.get_context("spawn")
        self._conns = []
        self._procs = []
        for part in split(spec.devices, procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main, args=(replace(spec, devices=part), child, nofile), daemon=True
            )
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def call(self, command: str, arg: Any = None) -> list[dict[str, Any]]:
        """Send ``command`` to every worker and return their answers."""
        for conn in self._conns:
            conn.send((command, arg))
        return [conn.recv() for conn in self._conns]

    def stats(self) -> dict[str, Any]:
        """The workers' counters summed (ack latencies concatenated)."""
        total: dict[str, Any] = {"latency": []}
        answers = self.call("stats")
        for s in answers:
            for key, value in s.items():
                if key == "latency":
                    total["latency"] += value
                elif key not in ("first_sent", "last_acked"):
                    total[key] = total.get(key, 0) + value
        firsts = [s["first_sent"] for s in answers if s["first_sent"]]
        total["first_sent"] = min(firsts, default=0.0)
        total["last_acked"] = max(s["last_acked"] for s in answers)
        return total

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.call("close")
        for proc in self._procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()


class Swarm:
    """``devices`` provisioned devices of brand ``swarm`` on a secured broker; hub and
    generator processes come and go per measurement. A context manager."""

    def __init__(
        self,
        root: Path,
        services: LocalServices,
        devices: int,
        *,
        extra: Sequence[tuple[str, str]] = (),
        nofile: int = 65536,
    ) -> None:
        self.root = root
        self.services = services
        self.count = devices
        self.extra = list(extra)
        self.nofile = nofile
        self.port = free_port()
        self.hubs: list[HubProc] = []
        self.bundles: dict[str, Path] = {}
        self.broker: Mosquitto | None = None
        self._database = "swarm"

    def __enter__(self) -> Swarm:
        self.root.mkdir(parents=True, exist_ok=True)
        products = list(PRODUCTS)
        wanted = [(f"s{i:05d}", products[i % len(products)]) for i in range(self.count)]
        config = self._config("swarm-hub-1", 1)
        self.bundles = {
            d: p.parent
            for d, p in provision_devices(
                config.registry.path,
                config.keys.secrets_dir,
                BRAND,
                wanted + self.extra,
                self.root / "bundles",
                "127.0.0.1",
                self.port,
            ).items()
        }
        self.products = dict(wanted + self.extra)
        ensure_hub_password(config.keys.secrets_dir)
        broker_setup(config, out=self.root / "broker-auth", apply=False, hub_ids=HUB_IDS)
        self.broker = Mosquitto(
            self.root / "mosquitto",
            self.port,
            # The deployment's settings (deploy/mosquitto/mosquitto.conf): no anonymous
            # clients, no cap on connections, the persistence file saved every 30 s
            # (the launcher's 1 s would rewrite 10,000 sessions every second).
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\nmax_connections -1\n"
            "autosave_interval 30\n",
            dynsec_file=self.root / "broker-auth" / DYNSEC_FILE,
        )
        self.broker.start()
        assert self.broker.pid is not None
        #: the broker's RSS with every account loaded and no client connected
        self.idle_broker_rss = psutil.Process(self.broker.pid).memory_info().rss
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_hubs()
        if self.broker is not None:
            self.broker.stop()

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    def _config_data(self, client_id: str, api_port: int) -> dict[str, Any]:
        return {
            "mqtt": {
                "port": self.port,
                "client_id": client_id,
                "username": client_id,
                "password_file": str(self.secrets / "mqtt-hub.password"),
                "shared_group": "swarm",
            },
            "influx": self.services.influxd.hub_settings(self._database),
            "api": {"port": api_port},
            "registry": {"path": str(self.root / "registry.sqlite")},
            "keys": {"secrets_dir": str(self.secrets)},
            "models": {"dir": str(self.root / "models")},
        }

    def _config(self, client_id: str, api_port: int) -> Any:
        return load_hub_config(None, self._config_data(client_id, api_port), environ={})

    def device_specs(self, count: int) -> list[DeviceSpec]:
        """The first ``count`` swarm devices, read from their bundles."""
        out = []
        for i in range(count):
            device = f"s{i:05d}"
            bundle = self.bundles[device]
            out.append(
                DeviceSpec(
                    device,
                    self.products[device],
                    (bundle / "device.key").read_bytes(),
                    (bundle / "mqtt.password").read_text().strip(),
                    pseudonymize((bundle / "brand.key").read_bytes(), 1, f"customer-{device}"),
                )
            )
        return out

    def worker_spec(self, devices: Sequence[DeviceSpec], **kw: Any) -> WorkerSpec:
        bundle = next(iter(self.bundles.values()))
        return WorkerSpec(
            "127.0.0.1",
            self.port,
            BRAND,
            VerifyKey.from_hex((bundle / "hub.pub").read_text()).raw,
            BoxPublicKey.from_hex((bundle / "hub-box.pub").read_text()).raw,
            tuple(devices),
            **kw,
        )

    def start_hubs(self, count: int, database: str = "swarm") -> list[HubProc]:
        """Start ``count`` hub processes (distinct client ids, one shared group) writing
        into ``database``; return once every one is ready."""
        self.stop_hubs()
        self._database = database
        for n in range(1, count + 1):
            name = f"swarm-hub-{n}"
            api_port = free_port()
            toml = self.root / f"{name}.toml"
            toml.write_text(_toml(self._config_data(name, api_port)))
            log = self.root / f"{name}.log"
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "twinsync", "hub", "run", "--config", str(toml)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.root,  # `-m` puts the working directory first on sys.path
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            self.hubs.append(HubProc(name, api_port, proc, log))
        deadline = time.monotonic() + 60
        for hub in self.hubs:
            while not hub.ready():
                if hub.proc.poll() is not None or time.monotonic() > deadline:
                    tail = hub.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{hub.name} did not become ready:\n{tail}")
                time.sleep(0.1)
        return self.hubs

    def stop_hubs(self) -> None:
        for hub in self.hubs:
            hub.proc.terminate()
        for hub in self.hubs:
            try:
                hub.proc.wait(30)
            except subprocess.TimeoutExpired:
                hub.proc.kill()
                hub.proc.wait()
        self.hubs = []

    @contextlib.contextmanager
    def workers(self, devices: Sequence[DeviceSpec], procs: int, **kw: Any) -> Iterator[Workers]:
        """Generator processes for ``devices`` (connected by the caller)."""
        workers = Workers(self.worker_spec(devices, **kw), procs, self.nofile)
        try:
            yield workers
        finally:
            workers.close()

    def sampler(self, workers: Workers | None = None) -> _Sampler:
        """Start measuring CPU and RSS of hubs, broker, InfluxDB and the generators."""
        assert self.broker is not None
        assert self.broker.pid is not None
        influxd = self.services.influxd.pid
        return _Sampler(
            {
                "hub": [h.proc.pid for h in self.hubs],
                "broker": [self.broker.pid],
                "influxd": [influxd] if influxd else [],
                "generator": workers.pids if workers else [],
            }
        )

    def hub_high_water(self) -> int:
        """The largest VmHWM (peak RSS since start) of the running hub processes."""
        return max((_high_water(h.proc.pid) for h in self.hubs), default=0)

    def hub_metrics(self) -> dict[str, float]:
        """The hubs' metrics, summed over instances."""
        out: dict[str, float] = {}
        for hub in self.hubs:
            for name, value in hub.metrics().items():
                out[name] = out.get(name, 0.0) + value
        return out


def _toml(data: dict[str, Any]) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {str(value).lower()}")
            elif isinstance(value, int | float):
                lines.append(f"{key} = {value!r}")
            else:
                lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"
