"""The DICOM application entity: presentation contexts, limits, timeouts, handler binding.

Room: dimse/. Imports pynetdicom, config, services/context and the handler modules of dimse/
(dimse/contexts: the table of accepted presentation contexts).
The only module that imports `pynetdicom.evt` and tunes pynetdicom; handlers are bound here
with the shared `Services` as their argument.
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
from pathlib import Path
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom import association as _association_module
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer

from pacs.dimse.commitment import handle_n_action, start_commitment_reports
from pacs.dimse.contexts import SUPPORTED_CONTEXTS
from pacs.dimse.events import set_no_delay
from pacs.dimse.find import handle_sop_extended
from pacs.dimse.handover import Handover, listen_handed_over
from pacs.dimse.mpps import handle_n_create, handle_n_set
from pacs.dimse.retrieve import handle_get, handle_move
from pacs.dimse.store import handle_echo, handle_store
from pacs.dimse.tls import tls_server_context
from pacs.dimse.worklist import handle_c_find
from pacs.services.context import Services

log = logging.getLogger("pacs.server")

# Received data sets stream to a temp file instead of memory (handlers use dataset_path).
_config.STORE_RECV_CHUNKED_DATASET = True
# Log the association's identity, not every PDU.
_config.LOG_HANDLER_LEVEL = "none"

# pynetdicom's two threads per association poll: the DUL sleeps 1 ms whenever it finds
# nothing to do, the association's reactor 1 ms on every loop, and every DIMSE message waits
# for each once. Measured with storescu and a do-nothing handler: 277 -> 450 instances/s at
# 0.1 ms. 0.2 ms keeps an idle association's wake-ups (and CPU) modest.
POLL_DELAY = 0.0002


class _ShortPolls:
    """Stands in for `time` in pynetdicom.association, shortening its 1 ms reactor poll."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(POLL_DELAY if seconds == 0.001 else seconds)


_association_module.time = _ShortPolls()  # type: ignore[assignment]

# The largest PDU a peer may send us. pynetdicom trusts the length field and keeps reading
# as long as the peer sends, so an absurd length would grow memory without bound.
PDU_LENGTH_LIMIT = 64 * 2**20


def _bounded_recv(self: AssociationSocket, nr_bytes: int) -> bytearray:
    """AssociationSocket.recv: refuse absurd lengths, and read into one buffer, not 4 KiB."""
    if nr_bytes > PDU_LENGTH_LIMIT:
        # pynetdicom turns this into "connection closed" (Evt17): the association is aborted.
        raise OSError(f"peer announced a {nr_bytes}-byte PDU, over the {PDU_LENGTH_LIMIT} limit")
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    received = 0
    sock = self.socket
    assert sock is not None
    while received < nr_bytes:
        count = sock.recv_into(view[received:], nr_bytes - received)
        if not count:
            return buffer[:received]
        received += count
    return buffer


AssociationSocket.recv = _bounded_recv  # type: ignore[method-assign]


class PeerErrorsOnOneLine(logging.Filter):
    """What a peer's bad bytes cause is one log line, not a traceback (pynetdicom logs both)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = record.getMessage()
            record.msg = f"{message + ': ' if message else ''}{type(error).__name__}: {error}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


for _name in ("pynetdicom.dul", "pynetdicom.transport", "pynetdicom.acse"):
    logging.getLogger(_name).addFilter(PeerErrorsOnOneLine())


def _on_connection_open(event: Any) -> None:
    transport = getattr(event.assoc.dul, "socket", None)
    set_no_delay(getattr(transport, "socket", None))
    event.assoc.dul._run_loop_delay = POLL_DELAY


def _on_association_end(event: Any, services: Services) -> None:
    # Runs in the association's own thread, whose index connection this returns.
    services.index.release_connection()
    _discard_partial_data_set(event)


def _discard_partial_data_set(event: Any) -> None:
    """Remove the temp file of a data set whose transfer the abort cut short."""
    message = getattr(getattr(event.assoc, "dimse", None), "message", None)
    partial = getattr(message, "_data_set_file", None)
    if partial is not None:
        partial.close()
        Path(partial.name).unlink(missing_ok=True)
        log.warning("association with %s ended mid-transfer: partial data set discarded",
                    str(event.assoc.requestor.ae_title).strip())


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


class ReusePortAssociationServer(ThreadedAssociationServer):
    """An association server whose socket shares its port with other processes (workers)."""

    def server_bind(self) -> None:
        """Set SO_REUSEPORT before binding, so N worker processes accept on one port."""
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class SharedContexts(list):  # type: ignore[type-arg]
    """The server's supported contexts, shared read-only by every association.

    pynetdicom deep-copies them for each association (170 storage classes x 45 transfer
    syntaxes): 44 ms of a 50 ms association set-up, measured. Negotiation only reads them.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedContexts:
        return self


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
    server.contexts = SharedContexts(server.contexts)
    set_no_delay(server.socket)
    # A short poll interval: shutdown waits for serve_forever to notice (0.5 s by default).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05},
        name=f"acceptor-{address[1]}", daemon=True,
    )
    thread.start()
    # ae.shutdown() stops every server in this list.
    ae._servers.append(server)
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
        """Stop accepting, let running associations finish for `grace` seconds, abort the rest."""
        self.server.shutdown()
        deadline = time.monotonic() + grace
        while self.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for association in self.ae.active_associations:
            log.warning("aborting association with %s at shutdown",
                        association.requestor.ae_title)
            association.abort()
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
