"""`pacs serve`: one server process (alone, or a worker of cli/workers.py's supervisor).

Room: cli/. The composition root: the one module of ours that imports the protocol faces
(dimse/server, web/server) to start them; no face imports cli/.
"""

from __future__ import annotations

import argparse
import gc
import logging
import socket
import threading

from pacs.cli.workers import stop_on_signals
from pacs.config import ConfigError, Settings
from pacs.dimse.handover import Handover
from pacs.dimse.server import serve_until, start_server
from pacs.services.context import open_services
from pacs.services.operations import recover_deletes
from pacs.web.server import RunningWeb, start_web

log = logging.getLogger("pacs")


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
    stop_requested = stop_on_signals()
    handover = (_handover(settings, arguments.handover, stop_requested)
                if arguments.handover else None)
    try:
        running = start_server(services, receive_into_archive=True,
                               reuse_port=arguments.reuse_port, handover=handover)
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
    # What start-up made lives as long as the process: full collections need not walk it.
    gc.freeze()
    # A young-generation collection every 700 net allocations (the default) came every few
    # associations, ~0.1 ms each on a C-FIND's path; at 20,000 one comes every few hundred.
    # What an association leaves in cycles is freed by the collector a little later instead.
    gc.set_threshold(20_000, 10, 10)
    serve_until(stop_requested, running)
    if web is not None:
        web.stop()
    services.close()
    log.info("stopped")
    return 0
