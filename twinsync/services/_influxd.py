"""influxd (InfluxDB 1.x) from the system package, with its own credentials, on loopback ports."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ._process import Service, ServiceError, find_binary, free_port

__all__ = ["Influxd"]


class Influxd(Service):
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
        self.binary = find_binary("influxd")
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
