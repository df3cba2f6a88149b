"""One launcher for the real services: mosquitto and influxd from the system packages.

Used by ``twinsync demo`` and by the test fixtures alike. Each service runs on free
loopback ports in its own temporary directory, is waited for until it answers, and can be
stopped gracefully, killed (SIGKILL) and restarted on the same ports and data, which is
what the fault-injection tests need.

    with LocalServices() as services:
        services.mosquitto.port, services.influxd.url
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = [
    "Influxd",
    "LocalServices",
    "Mosquitto",
    "ServiceError",
    "free_port",
    "wait_port",
]

_SETUP_HINT = (
    "install it with 'make setup' (apt-get install -y mosquitto influxdb) or put it on PATH"
)


class ServiceError(RuntimeError):
    """A local service could not be found, started or stopped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout}s"
                ) from None
            time.sleep(0.05)


def _find(binary: str) -> str:
    for candidate in (shutil.which(binary), f"/usr/sbin/{binary}", f"/usr/bin/{binary}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceError(f"{binary} not found: {_SETUP_HINT}")


class _Service:
    """A child process with start / stop / kill / restart on fixed ports and data."""

    name = "service"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self.running and self._proc else None

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until it serves."""
        if self.running:
            return
        argv, env = self._command()
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_ready(timeout)
        except ServiceError as exc:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            self.kill()
            raise ServiceError(f"{self.name} did not become ready: {exc}\n{tail}") from exc

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM), escalating to SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Crash it: SIGKILL, no chance to flush anything."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()

    def restart(self, timeout: float = 30.0) -> None:
        """Stop if running, then start again on the same ports and data."""
        self.stop()
        self.start(timeout)


class Mosquitto(_Service):
    """A mosquitto broker on 127.0.0.1 with persistence in ``workdir``."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, extra_config: str = "") -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.extra_config = extra_config
        self.binary = _find("mosquitto")

    @property
    def config_path(self) -> Path:
        """The generated mosquitto.conf."""
        return self.workdir / "mosquitto.conf"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        has_listener = "listener " in self.extra_config
        lines = [
            f"persistence true\npersistence_location {self.workdir}/\n",
            "autosave_interval 1\n",
            # The hub withholds PUBACK until InfluxDB has the data, so the broker must let
            # many QoS 1 messages be in flight per client for batching to work.
            "max_inflight_messages 2000\nmax_queued_messages 1000000\n",
            "max_packet_size 1048576\n",
            "log_dest stdout\nlog_type error\nlog_type warning\n",
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto would switch to the 'mosquitto' user, which cannot
            # read this private work directory (persistence, password and ACL files).
            lines.append("user root\n")
        if not has_listener:
            lines.append(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        lines.append(self.extra_config)
        self.config_path.write_text("".join(lines))
        return [self.binary, "-c", str(self.config_path)], {}

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.running:
            if time.monotonic() > deadline or (self._proc and self._proc.poll() is not None):
                raise ServiceError("mosquitto exited")
            time.sleep(0.05)
        wait_port(self.port, timeout)


class Influxd(_Service):
    """An InfluxDB 1.x server on loopback, configured only through environment variables."""

    name = "influxd"

    def __init__(
        self, workdir: Path, http_port: int | None = None, rpc_port: int | None = None
    ) -> None:
        super().__init__(workdir)
        self.http_port = http_port or free_port()
        self.rpc_port = rpc_port or free_port()
        self.binary = _find("influxd")

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.http_port}"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        d = self.workdir
        env = {
            "INFLUXDB_META_DIR": str(d / "meta"),
            "INFLUXDB_DATA_DIR": str(d / "data"),
            "INFLUXDB_DATA_WAL_DIR": str(d / "wal"),
            "INFLUXDB_HTTP_BIND_ADDRESS": f"127.0.0.1:{self.http_port}",
            "INFLUXDB_BIND_ADDRESS": f"127.0.0.1:{self.rpc_port}",
            "INFLUXDB_REPORTING_DISABLED": "true",
            "INFLUXDB_HTTP_LOG_ENABLED": "false",
            "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false",
            "INFLUXDB_DATA_INDEX_VERSION": "tsi1",
            "INFLUXDB_LOGGING_LEVEL": "warn",
            "INFLUXDB_MONITOR_STORE_ENABLED": "false",
        }
        return [self.binary, "run"], env

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServiceError(f"influxd exited with {self._proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:  # noqa: S310
                    if resp.status == 204:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"influxd /ping did not answer 204 within {timeout}s")
            time.sleep(0.1)


class LocalServices:
    """mosquitto + influxd in one temporary directory; a context manager.

    ``keep=True`` leaves the directory (logs, data) behind for inspection.
    """

    def __init__(self, root: Path | None = None, *, keep: bool = False) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="twinsync-services-")
            root = Path(self._tmp.name)
        self.root = root
        self.keep = keep
        self.mosquitto = Mosquitto(root / "mosquitto")
        self.influxd = Influxd(root / "influxd")

    def start(self) -> LocalServices:
        """Start both services (in parallel-friendly order: influxd takes longer)."""
        try:
            self.influxd.start()
            self.mosquitto.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both and remove the temporary directory unless ``keep``."""
        self.mosquitto.stop()
        self.influxd.stop()
        if self._tmp is not None and not self.keep:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()

    def __enter__(self) -> LocalServices:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
