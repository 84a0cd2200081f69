"""`pacs serve`: one server process, or a supervisor of `--workers N` of them.

Room: cli/. The composition root: the one module of ours that imports a protocol face
(dimse/server) to start it; no face imports cli/.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from collections.abc import Sequence
from typing import Any

from pacs.cli.workers import Listener, Supervisor, open_listener
from pacs.config import ConfigError, Settings
from pacs.dimse.handover import Handover
from pacs.dimse.server import serve_until, start_server
from pacs.services.context import open_services
from pacs.services.operations import recover_deletes

log = logging.getLogger("pacs")


def _stop_on_signals() -> threading.Event:
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop_requested


def run_workers(settings: Settings, arguments: argparse.Namespace, argv: Sequence[str]) -> int:
    """Supervise `--workers N` server processes on one port until SIGINT or SIGTERM."""
    if arguments.workers < 1:
        raise ConfigError(f"setting 'workers' (from --workers): {arguments.workers} must be ≥ 1")
    open_services(settings).close()  # create the schema once, before workers race to
    stop_requested = _stop_on_signals()
    listeners = _open_listeners(settings)
    supervisor = Supervisor(argv, listeners, arguments.workers)
    try:
        supervisor.start()
        log.info("%d workers listening on %s:%d", arguments.workers, supervisor.host,
                 supervisor.port)
        if arguments.ready_file:
            tls = [lst.address[1] for lst in listeners if lst.kind == "tls" and lst is not
                   listeners[0]]
            arguments.ready_file.write_text(
                f"{supervisor.host} {supervisor.port}" + "".join(f" {p}" for p in tls) + "\n")
        supervisor.watch(stop_requested)
    finally:
        code = supervisor.stop()
    log.info("stopped")
    return code


def _open_listeners(settings: Settings) -> list[Listener]:
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


def _handover(settings: Settings, value: str, stop_requested: threading.Event) -> Handover:
    """The worker's side of `--handover dicom:FD:PORT[,tls:FD:PORT]` (from cli/workers.py)."""
    handover = Handover((settings.host, settings.port), on_closed=stop_requested.set)
    for part in value.split(","):
        kind, descriptor, port = part.split(":")
        channel = socket.socket(fileno=int(descriptor))
        if kind == "tls":
            handover.tls_channel, handover.tls_address = channel, (settings.host, int(port))
        else:
            handover.channel, handover.address = channel, (settings.host, int(port))
    return handover


def run_serve(settings: Settings, arguments: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    services = open_services(settings)
    # A delete a crash interrupted is finished (or undone) before anything else sees it.
    if recovered := recover_deletes(services.archive, services.index):
        log.warning("finished %d delete(s) interrupted by a crash", recovered)
    stop_requested = _stop_on_signals()
    handover = (_handover(settings, arguments.handover, stop_requested)
                if arguments.handover else None)
    try:
        running = start_server(services, receive_into_archive=True, handover=handover)
    except OSError as exc:
        raise ConfigError(
            f"setting 'port': cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
    if arguments.ready_file:
        host, port = running.address
        tls = running.tls_address
        arguments.ready_file.write_text(f"{host} {port}" + (f" {tls[1]}" if tls else "") + "\n")
    serve_until(stop_requested, running)
    services.close()
    log.info("stopped")
    return 0
