"""The DICOM application entity: presentation contexts, limits, timeouts, handler binding.

Layer: protocol (top). The only module that imports `pynetdicom.evt` and tunes pynetdicom;
handlers are bound here with the shared `Services` as their argument.
"""

from __future__ import annotations

import logging
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    _config,
    evt,
)
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from pacs.handlers.common import set_no_delay
from pacs.handlers.find import handle_find, handle_sop_extended
from pacs.handlers.retrieve import handle_get, handle_move
from pacs.handlers.store import handle_echo, handle_store
from pacs.services import Services

log = logging.getLogger("pacs.server")

QUERY_RETRIEVE_CLASSES = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
)

# Received data sets stream to a temp file instead of memory (handlers use dataset_path).
_config.STORE_RECV_CHUNKED_DATASET = True
# Log the association's identity, not every PDU.
_config.LOG_HANDLER_LEVEL = "none"


def _on_connection_open(event: Any) -> None:
    transport = getattr(event.assoc.dul, "socket", None)
    set_no_delay(getattr(transport, "socket", None))


def _on_association_end(event: Any, services: Services) -> None:
    # Runs in the association's own thread, whose index connection this returns.
    services.index.release_connection()


def build_ae(services: Services) -> AE:
    """The AE with every Storage SOP Class in every transfer syntax, Q/R and Verification."""
    settings = services.settings
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = settings.max_pdu
    ae.maximum_associations = settings.max_associations
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.require_called_aet = settings.require_called_ae
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    for context in AllStoragePresentationContexts:
        # scp_role/scu_role: accept the SCP/SCU role selection a C-GET SCU proposes.
        ae.add_supported_context(
            context.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True
        )
    for sop_class in QUERY_RETRIEVE_CLASSES:
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    return ae


def event_handlers(services: Services) -> list[Any]:
    """The (event, handler, args) bindings of the server."""
    return [
        (evt.EVT_CONN_OPEN, _on_connection_open),
        (evt.EVT_RELEASED, _on_association_end, [services]),
        (evt.EVT_ABORTED, _on_association_end, [services]),
        (evt.EVT_C_ECHO, handle_echo, [services]),
        (evt.EVT_C_STORE, handle_store, [services]),
        (evt.EVT_C_FIND, handle_find, [services]),
        (evt.EVT_SOP_EXTENDED, handle_sop_extended, [services]),
        (evt.EVT_C_MOVE, handle_move, [services]),
        (evt.EVT_C_GET, handle_get, [services]),
    ]


class ReusePortAssociationServer(ThreadedAssociationServer):
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
    server_class = ReusePortAssociationServer if reuse_port else ThreadedAssociationServer
    server = ae.make_server(
        address, ssl_context=ssl_context, evt_handlers=handlers, server_class=server_class
    )
    set_no_delay(server.socket)
    thread = threading.Thread(
        target=server.serve_forever, name=f"acceptor-{address[1]}", daemon=True
    )
    thread.start()
    # ae.shutdown() stops every server in this list.
    ae._servers.append(server)
    return server


@dataclass
class RunningServer:
    """A listening server: its AE, socket server and bound address."""

    ae: AE
    server: ThreadedAssociationServer
    services: Services

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound; the port is real even when 0 was asked for."""
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let running associations finish for `grace` seconds, abort the rest."""
        self.server.shutdown()
        deadline = time.monotonic() + grace
        while self.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for association in self.ae.active_associations:
            log.warning("aborting association with %s at shutdown",
                        association.requestor.ae_title)
            association.abort()
        self.ae.shutdown()


def start_server(
    services: Services, receive_into_archive: bool = False, reuse_port: bool = False
) -> RunningServer:
    """Start listening on the configured host and port, in background threads.

    `receive_into_archive` makes incoming data sets land in the archive's temp folder, so
    storing is a rename rather than a copy; it sets a process-wide default (the CLI's server).
    `reuse_port` lets several worker processes listen on the same port.
    """
    settings = services.settings
    if receive_into_archive:
        tempfile.tempdir = str(services.archive.temp_dir)
    ae = build_ae(services)
    server = listen(ae, (settings.host, settings.port), event_handlers(services),
                    reuse_port=reuse_port)
    running = RunningServer(ae, server, services)
    host, port = running.address
    log.info("%s listening on %s:%d (archive %s, index %s)", settings.ae_title, host, port,
             services.archive.root, settings.database)
    return running


def serve_until(stop_requested: threading.Event, running: RunningServer) -> None:
    """Block until `stop_requested` is set, then stop the server cleanly."""
    while not stop_requested.wait(0.5):
        pass
    log.info("stopping: waiting for running associations")
    running.stop()
