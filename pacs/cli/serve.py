"""`pacs serve`: one server process, or a supervisor of `--workers N` of them.

Room: cli/. The composition root: the one module of ours that imports the protocol faces
(dimse/server, web/server) to start them; no face imports cli/.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

from pacs.cli.workers import Supervisor
from pacs.config import ConfigError, Settings
from pacs.dimse.server import serve_until, start_server
from pacs.services.context import open_services
from pacs.services.operations import recover_deletes
from pacs.web.server import RunningWeb, start_web

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
    try:
        supervisor = Supervisor(argv, settings.host, settings.port, arguments.workers,
                                http=(settings.http_listen_host, settings.http_port))
    except OSError as exc:
        raise ConfigError(
            f"setting 'port': cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
    try:
        supervisor.start()
        log.info("%d workers listening on %s:%d", arguments.workers, supervisor.host,
                 supervisor.port)
        if arguments.ready_file:
            http = f" http={supervisor.http_port}" if supervisor.http_port else ""
            arguments.ready_file.write_text(f"{supervisor.host} {supervisor.port}{http}\n")
        supervisor.watch(stop_requested)
    finally:
        code = supervisor.stop()
    log.info("stopped")
    return code


def _ready_line(address: tuple[str, int], tls: tuple[str, int] | None,
                web: RunningWeb | None) -> str:
    """`HOST PORT [TLS_PORT] [http=PORT]`: what tests and the supervisor wait for."""
    line = f"{address[0]} {address[1]}" + (f" {tls[1]}" if tls else "")
    return line + (f" http={web.address[1]}" if web else "") + "\n"


def run_serve(settings: Settings, arguments: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    services = open_services(settings)
    # A delete a crash interrupted is finished (or undone) before anything else sees it.
    if recovered := recover_deletes(services.archive, services.index):
        log.warning("finished %d delete(s) interrupted by a crash", recovered)
    stop_requested = _stop_on_signals()
    try:
        running = start_server(services, receive_into_archive=True,
                               reuse_port=arguments.reuse_port)
    except OSError as exc:
        raise ConfigError(
            f"setting 'port': cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
    try:
        web = start_web(services, reuse_port=arguments.reuse_port)
    except OSError as exc:
        running.stop(grace=0)
        raise ConfigError(f"setting 'http_port': cannot listen on {settings.http_listen_host}:"
                          f"{settings.http_port}: {exc.strerror}") from None
    if arguments.ready_file:
        arguments.ready_file.write_text(_ready_line(running.address, running.tls_address, web))
    serve_until(stop_requested, running)
    if web is not None:
        web.stop()
    services.close()
    log.info("stopped")
    return 0
