"""One launcher for the real services: mosquitto and influxd from the system packages.

Used by ``twinsync demo`` and by the test fixtures alike. Each service runs on free
loopback ports in its own temporary directory, is waited for until it answers, and can be
stopped gracefully, killed (SIGKILL) and restarted on the same ports and data, which is
what the fault-injection tests need.

    with LocalServices() as services:
        services.mosquitto.port, services.influxd.url
        services.influxd.query("SHOW DATABASES")      # as the admin the launcher created
        services.influxd.hub_settings("twinsync")     # the hub's [influx] section
"""

from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

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
    """A mosquitto broker on 127.0.0.1 with persistence in ``workdir``.

    ``dynsec_file`` loads mosquitto's Dynamic Security plugin with that configuration
    (what ``twinsync hub broker-auth --out`` writes): accounts bound to client ids,
    checked subscriptions. ``user`` is whom a broker started as root switches to (default
    root itself, since the 'mosquitto' user cannot read a private work directory; give
    that user the work directory and the plugin file's directory to run as it).
    """

    name = "mosquitto"
    #: where distributions install the plugin: Debian/Ubuntu (multiarch), Alpine and the
    #: eclipse-mosquitto image, source builds
    DYNSEC_PLUGIN_PATHS = (
        "/usr/lib/*/mosquitto_dynamic_security.so",
        "/usr/lib/mosquitto_dynamic_security.so",
        "/usr/local/lib/mosquitto_dynamic_security.so",
        "/usr/local/lib/*/mosquitto_dynamic_security.so",
    )

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_config: str = "",
        *,
        dynsec_file: Path | None = None,
        user: str | None = None,
    ) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.extra_config = extra_config
        self.dynsec_file = dynsec_file
        self.user = user
        self.binary = _find("mosquitto")

    @classmethod
    def dynsec_plugin(cls) -> str:
        """The path of mosquitto's Dynamic Security plugin on this host."""
        for pattern in cls.DYNSEC_PLUGIN_PATHS:
            found = sorted(glob.glob(pattern))
            if found:
                return found[0]
        raise ServiceError(
            "mosquitto_dynamic_security.so not found (Debian's mosquitto 2.0 package ships "
            f"it in /usr/lib/<arch>/): {_SETUP_HINT}"
        )

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
            lines.append(f"user {self.user or 'root'}\n")
        if not has_listener:
            lines.append(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        if self.dynsec_file is not None:
            lines.append(
                f"plugin {self.dynsec_plugin()}\nplugin_opt_config_file {self.dynsec_file}\n"
            )
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
    """An InfluxDB 1.x server on loopback, configured only through environment variables.

    Authentication is on, as in production (deploy/compose.yaml): on its first start the
    launcher creates the admin user :attr:`username` with a random password, kept in
    ``workdir/admin.password`` (mode 0600) so a restart on the same data keeps it.
    Everything that talks to it passes the credentials: :meth:`hub_settings` and
    :meth:`hub_toml` are the hub's ``[influx]`` settings, :meth:`query` and :meth:`write`
    talk to it directly. ``/ping`` needs none.

    InfluxDB's own query limits are set as well (the ``MAX_SELECT_*`` attributes), so a
    runaway query fails with InfluxDB's error instead of taking the machine.
    """

    name = "influxd"
    #: the admin user the launcher creates
    username = "admin"
    #: ``[coordinator] max-select-point``: points one SELECT may read (InfluxDB checks
    #: the count once a second, so only long reads are stopped). Everything a test,
    #: demo or bench database holds (a few million points at most) is far below it, so
    #: no hub query (per-twin reads, training over a brand, the start-up ``last_seq``
    #: scan) can reach it; a runaway read is stopped before it takes the machine.
    MAX_SELECT_POINT = 50_000_000
    #: ``max-select-series``: series one SELECT may touch. One series is one
    #: (brand, twin, device); whole-brand reads (training, segment changes, devices)
    #: touch every series of the brand: thousands here, far below.
    MAX_SELECT_SERIES = 1_000_000
    #: ``max-select-buckets``: GROUP BY time() buckets one SELECT may make: ten times
    #: the hub's own cap on history buckets (10,000), so the hub's cap, with its clear
    #: message, is what users meet.
    MAX_SELECT_BUCKETS = 100_000

    def __init__(
        self, workdir: Path, http_port: int | None = None, rpc_port: int | None = None
    ) -> None:
        super().__init__(workdir)
        self.http_port = http_port or free_port()
        self.rpc_port = rpc_port or free_port()
        self.binary = _find("influxd")
        self.password_file = workdir / "admin.password"
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24))  # [A-Za-z0-9_-]: safe in InfluxQL
        #: the admin password (random, made with the work directory)
        self.password = self.password_file.read_text().strip()

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.http_port}"

    def hub_settings(self, database: str) -> dict[str, str]:
        """The hub config's ``influx`` section for ``database`` on this server."""
        return {
            "url": self.url,
            "database": database,
            "username": self.username,
            "password": self.password,
        }

    def hub_toml(self, database: str) -> str:
        """The same as an ``[influx]`` TOML table (more keys may follow it)."""
        return "[influx]\n" + "".join(
            f'{key} = "{value}"\n' for key, value in self.hub_settings(database).items()
        )

    def query(
        self, q: str, database: str | None = None, *, check: bool = True
    ) -> list[dict[str, Any]]:
        """Run InfluxQL ``q`` as the admin (POST, so any statement; times in epoch ns)
        and return the ``results`` list. Raise ServiceError if InfluxDB refuses the
        request or (``check``) a statement failed; else failures stay in ``results``."""
        params = {"epoch": "ns", **({"db": database} if database else {})}
        body = self._request("query", params, urllib.parse.urlencode({"q": q}).encode())
        results: list[dict[str, Any]] = json.loads(body)["results"]
        for result in results:
            if check and "error" in result:
                raise ServiceError(f"InfluxQL error in {q[:200]!r}: {result['error']}")
        return results

    def write(self, database: str, lines: list[str]) -> None:
        """Write line-protocol ``lines`` (ns precision) into ``database`` as the admin."""
        self._request("write", {"db": database, "precision": "ns"}, "\n".join(lines).encode())

    def rebuild_index(self) -> None:
        """Stop, delete every database's series file and each shard's TSI and field
        index, start: influxd rebuilds them from its TSM and WAL data on start-up.

        InfluxDB 1.x keeps the tag values (and series-file entries) of deleted series
        until then, so an erased twin id stays listed by an unscoped ``SHOW TAG VALUES``
        (influxdb#10285); this is the purge docs/privacy.md ("Erasure") describes."""
        self.stop()
        for database in (self.workdir / "data").iterdir():
            shutil.rmtree(database / "_series", ignore_errors=True)
            for shard in database.glob("*/*"):  # <retention policy>/<shard id>
                shutil.rmtree(shard / "index", ignore_errors=True)
                (shard / "fields.idx").unlink(missing_ok=True)
        self.start()

    def _request(
        self, path: str, params: dict[str, str], body: bytes, *, auth: bool = True
    ) -> bytes:
        # Our own http://127.0.0.1 URL, never a caller's: no file: or custom scheme.
        request = urllib.request.Request(  # noqa: S310
            f"{self.url}/{path}?{urllib.parse.urlencode(params)}", data=body, method="POST"
        )
        if auth:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise ServiceError(f"influxd answered {exc.code} to /{path}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceError(f"influxd unreachable at {self.url}: {exc}") from exc

    def _command(self) -> tuple[list[str], dict[str, str]]:
        d = self.workdir
        env = {
            "INFLUXDB_META_DIR": str(d / "meta"),
            "INFLUXDB_DATA_DIR": str(d / "data"),
            "INFLUXDB_DATA_WAL_DIR": str(d / "wal"),
            "INFLUXDB_HTTP_BIND_ADDRESS": f"127.0.0.1:{self.http_port}",
            "INFLUXDB_BIND_ADDRESS": f"127.0.0.1:{self.rpc_port}",
            "INFLUXDB_HTTP_AUTH_ENABLED": "true",
            "INFLUXDB_COORDINATOR_MAX_SELECT_POINT": str(self.MAX_SELECT_POINT),
            "INFLUXDB_COORDINATOR_MAX_SELECT_SERIES": str(self.MAX_SELECT_SERIES),
            "INFLUXDB_COORDINATOR_MAX_SELECT_BUCKETS": str(self.MAX_SELECT_BUCKETS),
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
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"influxd /ping did not answer 204 within {timeout}s")
            time.sleep(0.1)
        self._ensure_admin()

    def _ensure_admin(self) -> None:
        # With auth on and no user yet, InfluxDB accepts one kind of unauthenticated
        # statement: creating an admin. Once a user exists it answers 401, so this is
        # harmless on every later start; the check below is what must succeed.
        create = (
            f"CREATE USER \"{self.username}\" WITH PASSWORD '{self.password}' WITH ALL PRIVILEGES"
        )
        with contextlib.suppress(ServiceError):
            self._request("query", {}, urllib.parse.urlencode({"q": create}).encode(), auth=False)
        try:
            self.query("SHOW DATABASES")
        except ServiceError as exc:
            raise ServiceError(
                f"influxd in {self.workdir} refuses the credentials in {self.password_file} "
                f"({exc}); its users were made with another password: start it on a fresh "
                "work directory"
            ) from exc


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
