"""The DICOM application entity: presentation contexts, limits, timeouts, handler binding.

Room: dimse/. Imports pynetdicom's public API, config, services/context and the handler
modules of dimse/ (dimse/contexts: the table of accepted presentation contexts); pynetdicom's
internals only through dimse/pynetdicom_internals. The only
module that imports `pynetdicom.evt`; handlers are bound here with the shared `Services` as
their argument.
"""

from __future__ import annotations

import logging
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from pacs.dimse.commitment import handle_n_action, start_commitment_reports
from pacs.dimse.contexts import SUPPORTED_CONTEXTS
from pacs.dimse.destination import abort_releases
from pacs.dimse.events import set_no_delay
from pacs.dimse.find import handle_sop_extended
from pacs.dimse.handover import Handover, listen_handed_over
from pacs.dimse.mpps import handle_n_create, handle_n_set
from pacs.dimse.pynetdicom_internals import (
    DeferredHandshakeServer,
    SharedContexts,
    awaiting_request,
    close_transport,
    describe,
    raw_socket,
    register_server,
    serve_directly,
    start_reading_early,
)
from pacs.dimse.retrieve import handle_get, handle_move
from pacs.dimse.searches import serve_find
from pacs.dimse.store import handle_echo, handle_store, serve_store
from pacs.dimse.tls import tls_server_context
from pacs.dimse.worklist import handle_c_find
from pacs.services.context import Services

log = logging.getLogger("pacs.server")

def _on_connection_open(event: Any) -> None:
    set_no_delay(raw_socket(event.assoc))
    start_reading_early(event.assoc)


def _on_association_end(event: Any, services: Services) -> None:
    # Runs in the association's own thread, whose index connection this returns. (A partial
    # data set is removed by the connection's DUL thread as it ends: pynetdicom_internals.)
    services.index.release_connection()


def build_ae(services: Services) -> AE:
    """The AE accepting exactly the contexts of dimse/contexts.py, with the settings' limits."""
    settings = services.settings
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = settings.max_pdu
    ae.maximum_associations = settings.max_associations
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.require_called_aet = settings.require_called_ae
    if services.access.rejects_unknown_callers:
        # PS3.8 9.3.4: A-ASSOCIATE-RJ, reason "calling AE title not recognized".
        ae.require_calling_aet = services.access.known_titles()
    for context in SUPPORTED_CONTEXTS:
        # scp_role/scu_role True: accept the SCP/SCU role selection a C-GET SCU proposes.
        role = True if context.role_selection else None
        ae.add_supported_context(context.sop_class_uid, list(context.transfer_syntaxes),
                                 scu_role=role, scp_role=role)
    # C-FIND without pynetdicom's service class (TLS and odd requests still take it).
    serve_directly(ae, "C-FIND", lambda event: serve_find(event, services, handle_c_find))
    serve_directly(ae, "C-STORE", lambda event: serve_store(event, services))
    return ae


def event_handlers(services: Services) -> list[Any]:
    """The (event, handler, args) bindings of the server."""
    return [
        (evt.EVT_CONN_OPEN, _on_connection_open),
        (evt.EVT_RELEASED, _on_association_end, [services]),
        (evt.EVT_ABORTED, _on_association_end, [services]),
        (evt.EVT_C_ECHO, handle_echo, [services]),
        (evt.EVT_C_STORE, handle_store, [services]),
        (evt.EVT_C_FIND, handle_c_find, [services]),
        (evt.EVT_SOP_EXTENDED, handle_sop_extended, [services]),
        (evt.EVT_C_MOVE, handle_move, [services]),
        (evt.EVT_C_GET, handle_get, [services]),
        (evt.EVT_N_CREATE, handle_n_create, [services]),
        (evt.EVT_N_SET, handle_n_set, [services]),
        (evt.EVT_N_ACTION, handle_n_action, [services]),
    ]


class ListeningServer(DeferredHandshakeServer):
    """The association server: a listen backlog sized for bursts of connections."""

    # socketserver's default of 5 pending connections: a burst of health-check probes or of
    # modalities (measured: 1,000 connect-and-close probes) overflowed it while the accepting
    # thread waited for the GIL, and each overflow cost the peer a 1 s SYN retransmission.
    request_queue_size = socket.SOMAXCONN

    def process_request(self, request: Any, client_address: Any) -> None:
        """Create the association in the accepting thread; a TLS connection gets a thread.

        socketserver starts a thread per connection, and pynetdicom's handler in it only
        creates the association and starts the association's own thread: one more thread and
        hand-off per association (~0.2 ms of a findscu run). A TLS connection keeps it, for its
        handshake must not hold up the accepting thread.
        """
        if isinstance(request, ssl.SSLSocket):
            super().process_request(request, client_address)
        else:
            self.process_request_thread(request, client_address)


class ReusePortAssociationServer(ListeningServer):
    """An association server whose socket shares its port with other processes (workers)."""

    def server_bind(self) -> None:
        """Set SO_REUSEPORT before binding, so N worker processes accept on one port."""
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def listen(
    ae: AE,
    address: tuple[str, int],
    handlers: list[Any],
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> ThreadedAssociationServer:
    """Start accepting associations on `address` in a background thread."""
    server_class = ReusePortAssociationServer if reuse_port else ListeningServer
    server = ae.make_server(
        address, ssl_context=ssl_context, evt_handlers=handlers, server_class=server_class
    )
    server.contexts = SharedContexts(server.contexts)
    set_no_delay(server.socket)
    # A short poll interval: shutdown waits for serve_forever to notice (0.5 s by default).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05},
        name=f"acceptor-{address[1]}", daemon=True,
    )
    thread.start()
    register_server(ae, server)
    return server


def _listen(ae: AE, address: tuple[str, int], handlers: list[Any],
            ssl_context: ssl.SSLContext | None, reuse_port: bool,
            channel: socket.socket | None, on_closed: Callable[[], None] | None,
            ) -> ThreadedAssociationServer:
    """`listen` on a port of our own, or take connections a supervisor hands over."""
    if channel is None:
        return listen(ae, address, handlers, ssl_context=ssl_context, reuse_port=reuse_port)

    def share_contexts(server: ThreadedAssociationServer) -> None:
        server.contexts = SharedContexts(server.contexts)

    return listen_handed_over(ae, channel, address, handlers, ssl_context=ssl_context,
                              on_closed=on_closed, prepare=share_contexts)


@dataclass
class RunningServer:
    """A listening server: its AE, socket servers (plain and/or TLS) and bound addresses."""

    ae: AE
    server: ThreadedAssociationServer
    services: Services
    tls_server: ThreadedAssociationServer | None = None
    reporter: Any = None  # the storage commitment report sender, stopped with the server

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound; the port is real even when 0 was asked for."""
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    @property
    def tls_address(self) -> tuple[str, int] | None:
        """(host, port) of the TLS listener, if any."""
        if self.tls_server is None:
            return None
        host, port = self.tls_server.server_address[:2]
        return str(host), int(port)

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, close connections that have no association yet, let running
        associations finish for `grace` seconds, abort the rest."""
        for server in {id(s): s for s in (self.server, self.tls_server) if s}.values():
            server.shutdown()
        for association in self.ae.active_associations:
            if awaiting_request(association):
                close_transport(association)
        deadline = time.monotonic() + grace
        while self.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for association in self.ae.active_associations:
            if awaiting_request(association):
                close_transport(association)
                continue
            log.warning("aborting association with %s at shutdown", describe(association))
            association.abort()
        abort_releases()
        if self.reporter is not None:
            self.reporter.stop()
        self.ae.shutdown()


def start_server(
    services: Services, receive_into_archive: bool = False, reuse_port: bool = False,
    handover: Handover | None = None,
) -> RunningServer:
    """Start listening on the configured host and port, in background threads.

    `receive_into_archive` makes incoming data sets land in the archive's temp folder, so
    storing is a rename rather than a copy; it sets a process-wide default (the CLI's server).
    `reuse_port` lets several worker processes listen on the same port; with `handover`, a
    worker serves the connections its supervisor accepted instead of listening itself.
    """
    settings = services.settings
    if receive_into_archive:
        tempfile.tempdir = str(services.archive.temp_dir)
    ae = build_ae(services)
    handlers = event_handlers(services)
    given = handover or Handover((settings.host, settings.port))
    tls_server = None
    if settings.tls_port is not None:
        tls_server = _listen(ae, given.tls_address or (settings.host, settings.tls_port),
                             handlers, tls_server_context(settings), reuse_port,
                             given.tls_channel, given.on_closed)
    if settings.tls_only and tls_server is not None:
        server = tls_server
    else:
        server = _listen(ae, given.address, handlers, None, reuse_port, given.channel,
                         given.on_closed)
    running = RunningServer(ae, server, services, tls_server)
    if not settings.tls_only:
        host, port = running.address
        log.info("%s listening on %s:%d (archive %s, index %s)", settings.ae_title, host, port,
                 services.archive.root, settings.database)
    if running.tls_address:
        log.info("%s listening with TLS on %s:%d", settings.ae_title, *running.tls_address)
    if settings.metrics_port:
        services.metrics.start(settings.metrics_host, settings.metrics_port)
    if services.access.is_open:
        log.warning("no allow-list configured: any calling AE may use every service "
                    "(set [[peer]] entries or --allow-calling-ae for production)")
    # Storage commitment reports still owed (a restart included) go out from now on.
    running.reporter = start_commitment_reports(services)
    return running


def serve_until(stop_requested: threading.Event, running: RunningServer) -> None:
    """Block until `stop_requested` is set, then stop the server cleanly."""
    while not stop_requested.wait(0.5):
        pass
    log.info("stopping: waiting for running associations")
    running.stop()
