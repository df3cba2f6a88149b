"""PostgreSQL from the system package, with its own cluster and credentials, on a loopback port.

Debian's ``postgresql`` package puts the server in ``/usr/lib/postgresql/<version>/bin``
(not on PATH) and starts a system cluster, which the project leaves off: like mosquitto and
influxd, a private server is started here in a temporary directory on a free port.

PostgreSQL refuses to run as root, and the tests (and ``make``) run as root. Then the
cluster's data directory is made outside the caller's (private) work directory, in the
system temporary directory, owned by the ``postgres`` system user the package creates,
and ``initdb`` and ``postgres`` run as that user through ``setpriv`` (which execs, so the
launched process is the server itself: ``kill`` and ``restart`` reach it). As any other
user, both run as that user, in the work directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ._process import Service, ServiceError, find_binary, free_port

__all__ = ["Postgres", "PostgresDatabase"]

_HINT = "install it with 'make setup' (apt-get install -y postgresql) or put initdb on PATH"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _bindir() -> Path:
    """The server's binaries: ``initdb`` on PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # a link on PATH: pg_isready is beside the target
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not versions:
        raise ServiceError(f"PostgreSQL's initdb not found: {_HINT}")
    return Path(versions[-1]).parent


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
            fields = Path(stat).read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(Path(stat).parent.name))
    return found


@dataclass(frozen=True, slots=True)
class PostgresDatabase:
    """One database on a launched server and how the hub reaches it."""

    name: str
    #: ``state.url`` for it (no password: that is :attr:`password`)
    url: str
    password: str

    def hub_settings(self) -> dict[str, str]:
        """The hub config's ``state`` section for this database."""
        return {"url": self.url, "password": self.password}


class Postgres(Service):
    """A PostgreSQL server on 127.0.0.1:``port`` (TCP only, no Unix socket).

    On its first start the launcher makes the cluster (``initdb``) with the superuser
    :attr:`username` and a random password, kept in ``workdir/admin.password`` (0600), so
    a restart on the same data (also by a new object on the same work directory) keeps
    it; passwords are checked (scram-sha-256) as in production. ``fsync`` is off: the
    data is a test's or the demo's, and a killed server loses nothing the kernel holds.
    Use it as a context manager to start it and, at the end, stop it and delete the
    cluster (:meth:`remove`).
    """

    name = "postgres"
    #: the superuser the launcher creates
    username = "admin"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.bindir = _bindir()
        self.password_file = workdir / "admin.password"
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24))
        #: the superuser's password (random, made with the work directory)
        self.password = self.password_file.read_text().strip()
        self._as: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceError(
                    "PostgreSQL refuses to run as root and there is no 'postgres' user to "
                    f"run it as: {_HINT} (the package creates the user)"
                ) from None
            self._as = [
                find_binary("setpriv"),
                f"--reuid={self._owner.pw_uid}",
                f"--regid={self._owner.pw_gid}",
                "--init-groups",
                "--",
            ]
        self.data_dir = self._data_dir()

    def _data_dir(self) -> Path:
        # Remembered in the work directory, so a new object on it finds the same cluster.
        pointer = self.workdir / "data.path"
        if pointer.exists():
            return Path(pointer.read_text().strip())
        if self._owner is None:
            data = self.workdir / "data"
        else:
            # The postgres user cannot enter the caller's private work directory.
            root = Path(tempfile.mkdtemp(prefix="twinsync-postgres-"))
            os.chown(root, self._owner.pw_uid, self._owner.pw_gid)
            data = root / "data"
        pointer.write_text(f"{data}\n")
        return data

    @property
    def url(self) -> str:
        """``state.url`` of the ``postgres`` database (the superuser's)."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        """``state.url`` of ``database`` on this server, as the superuser."""
        return f"postgresql://{self.username}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        """A psycopg connection (autocommit) to ``database`` as the superuser."""
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.username,
            password=self.password,
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str) -> PostgresDatabase:
        """A new, empty database ``name`` (lower-case letters, digits, ``_``)."""
        if not _NAME.match(name):
            raise ServiceError(f"database names here are [a-z_][a-z0-9_]*, not {name!r}")
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return PostgresDatabase(name, self.database_url(name), self.password)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing whatever connections it still has."""
        if not _NAME.match(name):
            raise ServiceError(f"database names here are [a-z_][a-z0-9_]*, not {name!r}")
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        secret = self.data_dir.parent / "initdb.password"
        secret.write_text(self.password)
        if self._owner is not None:
            os.chown(secret, self._owner.pw_uid, self._owner.pw_gid)
        os.chmod(secret, 0o600)
        try:
            done = subprocess.run(
                [
                    *self._as,
                    str(self.bindir / "initdb"),
                    f"--pgdata={self.data_dir}",
                    f"--username={self.username}",
                    f"--pwfile={secret}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            secret.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceError(
                f"initdb failed in {self.data_dir} (exit {done.returncode}): "
                f"{(done.stderr or done.stdout)[-1500:]}"
            )

    def _command(self) -> tuple[list[str], dict[str, str]]:
        self._initdb()
        argv = [
            *self._as,
            str(self.bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ]
        return argv, {}

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ready = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServiceError(f"postgres exited with {self._proc.returncode}")
            try:
                if subprocess.run(ready, check=False).returncode == 0:
                    return
            except OSError as exc:
                raise ServiceError(f"cannot run {ready[0]}: {exc}") from exc
            if time.monotonic() > deadline:
                raise ServiceError(f"postgres did not accept connections within {timeout}s")
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: sessions are ended, everything written is kept; the
        SIGTERM of other services would wait for every client to leave), escalating to
        :meth:`kill` after ``timeout``."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
            self._proc = None
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Crash it: SIGKILL to the server and to every process it started (each
        backend is its own process group, so the group's signal would miss them), as
        when its machine dies; a restart on the same data then recovers from the WAL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        children = _children(proc.pid)
        proc.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()

    def remove(self) -> None:
        """Stop it and delete its cluster (and the folder made for it outside workdir)."""
        self.stop()
        data = self.data_dir
        shutil.rmtree(data.parent if self._owner is not None else data, ignore_errors=True)
        (self.workdir / "data.path").unlink(missing_ok=True)

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
