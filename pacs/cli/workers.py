"""`pacs serve --workers N`: one supervisor accepts, N server processes serve, by load.

Room: cli/. Standard library only; no pynetdicom. The supervisor listens on the port (and the
TLS port), accepts every connection and passes its socket (SCM_RIGHTS over a UNIX socket pair)
to the worker holding the fewest open connections; each worker writes one byte back when a
connection ends. The port hash of SO_REUSEPORT spread four connections 4/0 or 3/1 over two
workers more often than 2/2; counting connections spreads them 2/2. HTTP (web/) is not
handed over: the supervisor only reserves the HTTP port with SO_REUSEPORT (bound, never
listening) so that every worker serves HTTP on that one port. The supervisor also
restarts any worker that dies and stops them all on request; each worker is a plain
`pacs serve` (dimse/handover.py takes the sockets) that opens its own index connection.
Imports only the standard library and config: the supervisor stays small in memory (no
pydicom, pynetdicom or peewee), and worker 0 starts alone first, so it creates the schema of a
new index before the others open it.
"""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pacs.config import ConfigError, Settings

log = logging.getLogger("pacs.workers")
_RESTART_PAUSE = 1.0
_BACKLOG = 512
HANDED, ENDED = b"c", b"e"  # the messages of dimse/handover.py


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (logged), for the serving loops to stop on."""
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        logging.getLogger("pacs").info("received %s", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop_requested


def run_workers(settings: Settings, arguments: argparse.Namespace, argv: Sequence[str]) -> int:
    """Supervise `--workers N` server processes on one port until SIGINT or SIGTERM."""
    if arguments.workers < 1:
        raise ConfigError(f"setting 'workers' (from --workers): {arguments.workers} must be ≥ 1")
    stop_requested = stop_on_signals()
    listeners = open_listeners(settings)
    try:
        http = reserve_http_port(settings)
    except ConfigError:
        for listener in listeners:
            listener.socket.close()
        raise
    supervisor = Supervisor(argv, listeners, arguments.workers, http=http)
    try:
        failed = supervisor.start()
        if failed:
            return failed
        log.info("%d workers listening on %s:%d", arguments.workers, supervisor.host,
                 supervisor.port)
        if arguments.ready_file:
            tls = [lst.address[1] for lst in listeners[1:]]
            web = f" http={supervisor.http_port}" if supervisor.http_port else ""
            arguments.ready_file.write_text(
                f"{supervisor.host} {supervisor.port}" + "".join(f" {p}" for p in tls)
                + web + "\n")
        supervisor.watch(stop_requested)
    finally:
        code = supervisor.stop()
    logging.getLogger("pacs").info("stopped")
    return code


def open_listeners(settings: Settings) -> list[Listener]:
    """The supervisor's sockets: the DICOM port first (unless TLS only), then the TLS port."""
    wanted = [] if settings.tls_only and settings.tls_port is not None else [
        ("dicom", settings.port, "port")]
    if settings.tls_port is not None:
        wanted.append(("tls", settings.tls_port, "tls.port"))
    listeners: list[Listener] = []
    for kind, port, name in wanted:
        try:
            listeners.append(open_listener(kind, settings.host, port))
        except OSError as exc:
            for opened in listeners:
                opened.socket.close()
            raise ConfigError(f"setting '{name}': cannot listen on {settings.host}:{port}: "
                              f"{exc.strerror}") from None
    return listeners


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket, to learn and hold the port workers will share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((host, port))
    except OSError:
        holder.close()
        raise
    return holder


def reserve_http_port(settings: Settings) -> socket.socket | None:
    """The held HTTP port every worker serves on (SO_REUSEPORT); None when HTTP is off."""
    if not settings.http_port:
        return None
    port = max(settings.http_port, 0)  # negative (auto): any free port, learnt once
    try:
        return reserve_port(settings.http_listen_host, port)
    except OSError as exc:
        raise ConfigError(f"setting 'http_port': cannot listen on {settings.http_listen_host}:"
                          f"{port}: {exc.strerror}") from None


@dataclass
class Listener:
    """One port the supervisor accepts on: 'dicom' or 'tls', and its bound socket."""

    kind: str
    socket: socket.socket

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound."""
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)


def open_listener(kind: str, host: str, port: int) -> Listener:
    """Bind and listen on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(_BACKLOG)
    except OSError:
        listening.close()
        raise
    listening.setblocking(False)
    return Listener(kind, listening)


def worker_arguments(argv: Sequence[str], handover: Sequence[tuple[str, int, int]],
                     ready_file: Path, http_port: int | None = None) -> list[str]:
    """The `pacs serve` arguments of one worker: ours, minus supervisor-only flags, plus
    `--handover KIND:FD:PORT` per listener and the shared HTTP port (0: HTTP off)."""
    dropped_with_value = {"--workers", "--ready-file", "--http-port"}
    kept: list[str] = []
    skip = False
    for argument in argv:
        if skip:
            skip = False
            continue
        name = argument.split("=", 1)[0]
        if name in dropped_with_value:
            skip = "=" not in argument
            continue
        kept.append(argument)
    channels = [f"{kind}:{descriptor}:{port}" for kind, descriptor, port in handover]
    # HTTP is not handed over: every worker listens on the reserved port (SO_REUSEPORT).
    http = ["--http-port", str(http_port), "--reuse-port"] if http_port else ["--http-port", "0"]
    return [*kept, *http, "--ready-file", str(ready_file), "--handover", ",".join(channels)]


@dataclass
class Worker:
    """One worker process, its ends of the hand-over pairs, and its open connections."""

    number: int
    process: subprocess.Popen[bytes] | None = None
    channels: dict[str, socket.socket] = field(default_factory=dict)
    connections: int = 0
    restart_at: float | None = None

    def close_channels(self) -> None:
        """Close our ends of its pairs (it is gone, or being replaced)."""
        for channel in self.channels.values():
            channel.close()
        self.channels.clear()


class Supervisor:
    """Accepts on the ports, hands each connection to the least busy of N workers, restarts
    any that dies, and stops them all on request."""

    def __init__(self, argv: Sequence[str], listeners: Sequence[Listener], count: int,
                 http: socket.socket | None = None):
        self.argv = list(argv)
        self.listeners = list(listeners)
        self.host, self.port = self.listeners[0].address
        # The reserved HTTP port (from reserve_http_port), held until stop; None: HTTP off.
        self.http_holder = http
        self.http_port: int | None = http.getsockname()[1] if http is not None else None
        self.folder = Path(tempfile.mkdtemp(prefix="minipacs-workers-"))
        self.workers = [Worker(number) for number in range(count)]
        self.selector = selectors.DefaultSelector()
        for listener in self.listeners:
            self.selector.register(listener.socket, selectors.EVENT_READ, listener)
        self._next = 0  # ties go round the workers

    # --- workers -----------------------------------------------------------------------------

    def _spawn(self, worker: Worker) -> None:
        ready = self.folder / f"ready-{worker.number}"
        ready.unlink(missing_ok=True)
        handover, theirs = [], []
        for listener in self.listeners:
            ours, their_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            worker.channels[listener.kind] = ours
            self.selector.register(ours, selectors.EVENT_READ, worker)
            handover.append((listener.kind, their_end.fileno(), listener.address[1]))
            theirs.append(their_end)
        command = [sys.executable, "-m", "pacs",
                   *worker_arguments(self.argv, handover, ready, self.http_port)]
        try:
            worker.process = subprocess.Popen(command, pass_fds=[t.fileno() for t in theirs])
        finally:
            for their_end in theirs:
                their_end.close()
        worker.connections = 0
        worker.restart_at = None
        log.info("worker %d started (pid %d)", worker.number, worker.process.pid)

    def _retire(self, worker: Worker) -> None:
        for channel in worker.channels.values():
            self.selector.unregister(channel)
        worker.close_channels()
        worker.connections = 0

    def start(self, timeout: float = 60) -> int:
        """Start worker 0, then the others once it serves (it creates a new index's schema
        alone), and wait until each serves. 0, or the exit code of a worker that failed."""
        deadline = time.monotonic() + timeout
        for group in (self.workers[:1], self.workers[1:]):
            for worker in group:
                self._spawn(worker)
            for worker in group:
                ready = self.folder / f"ready-{worker.number}"
                while not (ready.exists() and ready.read_text().strip()):
                    if worker.process is not None and worker.process.poll() is not None:
                        log.error("worker %d exited with %s while starting", worker.number,
                                  worker.process.returncode)
                        return abs(worker.process.returncode) or 1
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"worker {worker.number} did not start")
                    time.sleep(0.05)
        return 0

    # --- the loop ------------------------------------------------------------------------------

    def watch(self, stop_requested: threading.Event) -> None:
        """Hand connections over and restart workers that die, until a stop is requested."""
        while not stop_requested.is_set():
            for key, _events in self.selector.select(timeout=0.5):
                if isinstance(key.data, Listener):
                    self._accept(key.data)
                else:
                    self._read_channel(key.data, key.fileobj)  # type: ignore[arg-type]
            self._check_workers()

    def _accept(self, listener: Listener) -> None:
        try:
            connection, address = listener.socket.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. out of descriptors: the peer sees a closed connection
            log.error("cannot accept on port %d: %s", listener.address[1], exc)
            return
        try:
            self._hand_over(listener, connection, address)
        finally:
            connection.close()  # the worker holds its own copy now

    def _hand_over(self, listener: Listener, connection: socket.socket,
                   address: tuple[str, int]) -> None:
        alive = [w for w in self.workers if listener.kind in w.channels]
        if not alive:
            log.error("no worker to take the connection from %s:%d", *address[:2])
            return
        count = len(self.workers)
        order = sorted(alive, key=lambda w: (w.connections, (w.number - self._next) % count))
        for worker in order:
            try:
                socket.send_fds(worker.channels[listener.kind], [HANDED], [connection.fileno()])
            except OSError as exc:
                log.warning("worker %d did not take a connection: %s", worker.number, exc)
                continue
            worker.connections += 1
            self._next = (worker.number + 1) % count
            log.debug("connection from %s:%d to worker %d (pid %d), %d open there",
                      address[0], address[1], worker.number,
                      worker.process.pid if worker.process else 0, worker.connections)
            return
        log.error("no worker took the connection from %s:%d", *address[:2])

    def _read_channel(self, worker: Worker, channel: socket.socket) -> None:
        try:
            message = channel.recv(16)
        except OSError:
            message = b""
        if message == ENDED:
            worker.connections = max(0, worker.connections - 1)
        elif not message:  # the worker is gone (or going): stop handing it connections
            self._retire(worker)

    def _check_workers(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            process = worker.process
            if process is None or process.poll() is None:
                continue
            if worker.restart_at is None:
                log.error("worker %d (pid %d) exited with %s; restarting", worker.number,
                          process.pid, process.returncode)
                if worker.channels:
                    self._retire(worker)
                worker.restart_at = now + _RESTART_PAUSE
            elif now >= worker.restart_at:
                self._spawn(worker)

    # --- stopping ------------------------------------------------------------------------------

    def stop(self, timeout: float = 30) -> int:
        """Stop accepting, SIGTERM every worker (each drains its associations) and wait; the
        worst exit code."""
        for listener in self.listeners:
            self.selector.unregister(listener.socket)
            listener.socket.close()
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        worst = 0
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                code = worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                code = worker.process.wait()
            worst = max(worst, abs(code))
            if worker.channels:
                self._retire(worker)
        self.selector.close()
        if self.http_holder is not None:
            self.http_holder.close()
        for leftover in self.folder.iterdir():
            leftover.unlink(missing_ok=True)
        os.rmdir(self.folder)
        return worst
