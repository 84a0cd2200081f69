"""PostgreSQL for the benchmark: a throwaway cluster (initdb + pg_ctl in a temp folder), or
fresh databases on a server the user names with a postgresql:// URL.

Layer: tool (pacs.bench); standard library and psycopg2. initdb refuses to run as root, so as
root the cluster is made and run by the `postgres` user (runuser), on folders it owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from pacs.bench.procs import free_port


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (Debian keeps them off PATH), or None."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _connect(url: str):  # noqa: ANN202 - psycopg2 connection, imported lazily
    import psycopg2

    parsed = urlparse(url)
    connection = psycopg2.connect(
        host=parsed.hostname or "127.0.0.1", port=parsed.port or 5432,
        user=parsed.username or "postgres", password=parsed.password,
        dbname=(parsed.path or "/postgres").lstrip("/") or "postgres",
    )
    connection.autocommit = True
    return connection


class Databases:
    """Creates empty databases next to the one `base_url` names, and drops them at the end."""

    def __init__(self, base_url: str):
        self.base_url = base_url.replace("postgres://", "postgresql://", 1)
        self.created: list[str] = []

    def new(self) -> str:
        """A URL to a new, empty database."""
        name = f"bench_{os.getpid()}_{len(self.created)}_{int(time.time()) % 100000}"
        connection = _connect(self.base_url)
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        self.created.append(name)
        parsed = urlparse(self.base_url)
        return urlunparse(parsed._replace(path=f"/{name}"))

    @staticmethod
    def size(url: str) -> int:
        """Bytes the database occupies (pg_database_size)."""
        connection = _connect(url)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            (size,) = cursor.fetchone()
        connection.close()
        return int(size)

    @staticmethod
    def version(url: str) -> str:
        """The server's version string (short form)."""
        connection = _connect(url)
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            (version,) = cursor.fetchone()
        connection.close()
        return str(version)

    def drop_all(self) -> None:
        """Drop every database this object created (best effort)."""
        try:
            connection = _connect(self.base_url)
        except Exception:  # noqa: BLE001 - the server may already be gone
            return
        with connection.cursor() as cursor:
            for name in self.created:
                try:
                    cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except Exception:  # noqa: BLE001
                    pass
        connection.close()
        self.created.clear()


class TemporaryCluster:
    """A PostgreSQL cluster in a temp folder on 127.0.0.1 and a free port; `stop` removes it.

    `durable` keeps the server defaults (fsync on), as a deployment would run and as the
    benchmark measures; the test suite turns it off for speed.
    """

    def __init__(self, durable: bool = True) -> None:
        binaries = server_binaries()
        if binaries is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed "
                               "(apt-get install postgresql)")
        self.binaries = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="minipacs-bench-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C.UTF-8", *([] if durable else ["--no-sync"]))
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.folder} -c max_connections=300")
        if not durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w",
                  "-t", "60", "-o", options, "start")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.binaries / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}{result.stderr}")

    def postmaster_pid(self) -> int | None:
        """The server's main process (its backends are its children), or None."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
