"""Shared fixtures: backends (SQLite file, real PostgreSQL), servers in-process and as processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE, _config

from pacs.cli.main import configure_pydicom
from pacs.config import Settings
from pacs.dimse.server import RunningServer, start_server
from pacs.services.context import Services, open_services
from tests.dcmtk import StorescuProgress, dcmtk_env, require_tool
from tests.postgres import PostgresServer

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("sqlite", "postgresql")

configure_pydicom()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session; each test gets its own database."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty index database on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/index.sqlite"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An empty SQLite index, for tests about behaviour that does not depend on the backend."""
    return f"sqlite:///{tmp_path}/index.sqlite"


def test_settings(storage: Path, database: str, **overrides: Any) -> Settings:
    """Settings for a test server: loopback, a free port, short timeouts."""
    base = Settings(host="127.0.0.1", port=0, storage=storage, database=database,
                    acse_timeout=10, dimse_timeout=30, network_timeout=30,
                    association_close_delay=0)  # tests of reuse ask for it
    return replace(base, **overrides)


@pytest.fixture
def services_factory(tmp_path: Path) -> Iterator[Callable[..., Services]]:
    """Opens Services on a database URL with settings overrides; closes them afterwards."""
    opened: list[Services] = []

    def open_with(database: str, **overrides: Any) -> Services:
        services = open_services(test_settings(tmp_path / "archive", database, **overrides))
        opened.append(services)
        return services

    yield open_with
    for services in opened:
        services.close()


@pytest.fixture
def services(services_factory: Callable[..., Services], sqlite_url: str) -> Services:
    """Services on SQLite (no network), for pipeline-level tests."""
    return services_factory(sqlite_url)


@pytest.fixture
def server_factory(
    services_factory: Callable[..., Services], database_url: str
) -> Iterator[Callable[..., RunningServer]]:
    """Starts in-process servers on the parametrized backend; stops them afterwards."""
    started: list[RunningServer] = []

    def start(**overrides: Any) -> RunningServer:
        running = start_server(services_factory(database_url, **overrides))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop(grace=2)


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """A server on 127.0.0.1, a free port, on each backend."""
    return server_factory()


@pytest.fixture
def incoming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder data sets are received into (as the CLI's server receives into the archive)."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def chunked_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom SCUs send files verbatim (command UIDs from the file meta, bytes as stored)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def scu(*contexts: str, ae_title: str = "TESTSCU",
        transfer_syntaxes: Sequence[str] | None = None) -> AE:
    """A pynetdicom SCU AE proposing `contexts`.

    With `transfer_syntaxes`, one presentation context per (SOP class, transfer syntax), so
    the peer cannot pick a syntax other than the one a file is in.
    """
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for context in contexts:
        if transfer_syntaxes is None:
            ae.add_requested_context(context)
        else:
            for syntax in transfer_syntaxes:
                ae.add_requested_context(context, [syntax])
    return ae


class ServerProcess:
    """`python -m pacs serve` in a child process, for kill -9, signal and CLI tests."""

    def __init__(self, folder: Path, database: str, *extra: str, storage: Path | None = None):
        self.folder = folder
        self.database = database
        self.storage = storage or folder / "archive"
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = folder / "server.log"

    def start(self, timeout: float = 30) -> ServerProcess:
        """Start and wait until it listens (its ready file names the port)."""
        ready = self.folder / "ready"
        ready.unlink(missing_ok=True)
        empty_config = self.folder / "empty.toml"
        empty_config.write_text("")
        command = [sys.executable, "-m", "pacs", "serve", "--config", str(empty_config),
                   "--host", "127.0.0.1", "--port", str(self.port),
                   "--storage", str(self.storage), "--database", self.database,
                   "--ready-file", str(ready), *self.extra]
        if "--http-port" not in self.extra:
            # HTTP off unless a test asks for it: the default port 8080 is shared machine-wide.
            command += ["--http-port", "0"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, cwd=REPO)
        deadline = time.monotonic() + timeout
        while not ready.exists() or not ready.read_text().strip():
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n"
                                   + self.log.read_text())
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start:\n" + self.log.read_text())
            time.sleep(0.05)
        self.port = int(ready.read_text().split()[1])
        return self

    def kill_while_storing(self, files: Sequence[Path], after: int, delay: float = 0.0,
                           timeout: float = 120) -> list[Path]:
        """storescu `files` to this server; SIGKILL it `delay` s after `after` Successes.

        Returns the files storescu saw answered with Success (it names each file it sends).
        """
        command = [require_tool("storescu"), "-v", "-aec", "MINIPACS", "127.0.0.1",
                   str(self.port), *map(str, files)]
        client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, env=dcmtk_env())
        assert client.stdout is not None
        progress = StorescuProgress()
        deadline = time.monotonic() + timeout
        killed = False
        for line in client.stdout:
            progress.feed(line)
            if not killed and (len(progress.acknowledged) >= after
                               or time.monotonic() > deadline):
                time.sleep(delay)
                self.kill()
                killed = True
        client.wait(timeout=60)
        self.kill()
        return [Path(sent) for sent in progress.acknowledged]

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def server_process(tmp_path: Path, database_url: str) -> Iterator[Callable[..., ServerProcess]]:
    """Factory of server processes on the parametrized backend; all are killed afterwards."""
    processes: list[ServerProcess] = []

    def make(*extra: str, folder: Path | None = None) -> ServerProcess:
        process = ServerProcess(folder or tmp_path, database_url, *extra)
        processes.append(process)
        return process.start()

    yield make
    for process in processes:
        process.kill()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's PACS_* variables must not change what tests run against.
    for name in list(os.environ):
        if name.startswith("PACS_"):
            monkeypatch.delenv(name)
