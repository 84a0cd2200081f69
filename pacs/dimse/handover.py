"""Serving connections another process accepted: a worker of `pacs serve --workers N`.

Room: dimse/. Imports pynetdicom's server classes and the standard library. The supervisor
(cli/workers.py) accepts each connection and passes its socket over a UNIX socket pair
(SCM_RIGHTS) to the least busy worker; here a worker takes such sockets as if it had accepted
them, and writes one byte back on the pair when each connection has ended, so the supervisor
always knows how many connections every worker holds.

Messages on the pair (SOCK_SEQPACKET, so one message is one record): supervisor -> worker, one
byte b"c" carrying one descriptor; worker -> supervisor, one byte b"e" per ended connection.
pynetdicom internal used: `RequestHandler._create_association` (to wait for the association
the handler starts), checked below at import.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from pacs.dimse.pynetdicom_internals import register_server

log = logging.getLogger("pacs.server")

HANDED = b"c"
ENDED = b"e"

if not callable(getattr(RequestHandler, "_create_association", None)):  # pragma: no cover
    raise ImportError("pynetdicom.transport.RequestHandler._create_association has moved")


@dataclass
class Handover:
    """A worker's hand-over channels: sockets from the supervisor, per listener it accepts on
    (cli/workers.py); `on_closed` runs when the supervisor goes away."""

    address: tuple[str, int]
    channel: socket.socket | None = None
    tls_address: tuple[str, int] | None = None
    tls_channel: socket.socket | None = None
    on_closed: Callable[[], None] | None = None


class _WaitingRequestHandler(RequestHandler):
    """Starts the association as pynetdicom does, then waits for it to end."""

    association: Any = None

    def _create_association(self) -> Any:
        self.association = super()._create_association()
        return self.association

    def handle(self) -> None:
        """Run the association to its end (in this connection's own thread)."""
        super().handle()
        if self.association is not None:
            self.association.join()


class HandoverServer(ThreadedAssociationServer):
    """An association server whose connections arrive over a UNIX socket, not by accept().

    `serve_forever` waits on the pair instead of a listening socket; everything after the
    accept (TLS, the association, its handlers) is pynetdicom's as usual.
    """

    channel: socket.socket
    on_closed: Callable[[], None] | None = None
    # Connection threads wait for their association: never join them at shutdown (the
    # server's own grace period and aborts end associations), and never keep the process up.
    daemon_threads = True
    block_on_close = False

    def server_bind(self) -> None:
        """No socket of our own: the pair from the supervisor stands in for it."""
        self.socket.close()
        self.socket = self.channel

    def server_activate(self) -> None:
        """Nothing to listen on."""

    def get_request(self) -> tuple[socket.socket, Any]:
        """The next connection the supervisor handed over (TLS-wrapped when configured)."""
        message, descriptors, _flags, _address = socket.recv_fds(self.channel, 16, 4)
        if not message:
            # The supervisor is gone: nobody hands us connections any more. socketserver's own
            # flag ends serve_forever after this call (shutdown() would wait for this thread).
            self._BaseServer__shutdown_request = True
            if self.on_closed is not None:
                self.on_closed()
            raise OSError("the supervisor closed the hand-over channel")
        connection = socket.socket(fileno=descriptors[0])
        for extra in descriptors[1:]:
            socket.close(extra)
        try:
            address = connection.getpeername()
            if self.ssl_context:
                connection = self.ssl_context.wrap_socket(connection, server_side=True)
        except (OSError, ssl.SSLError):
            connection.close()
            self.connection_ended()
            raise
        return connection, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection to its end, then tell the supervisor it ended."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connection_ended()

    def connection_ended(self) -> None:
        """One byte back to the supervisor: this worker holds one connection fewer."""
        try:
            self.channel.send(ENDED)
        except OSError:
            pass  # the supervisor is gone; get_request notices


def listen_handed_over(
    ae: AE,
    channel: socket.socket,
    address: tuple[str, int],
    handlers: list[Any],
    ssl_context: ssl.SSLContext | None = None,
    on_closed: Callable[[], None] | None = None,
    prepare: Callable[[ThreadedAssociationServer], None] | None = None,
) -> ThreadedAssociationServer:
    """Serve the connections arriving on `channel` (accepted by the supervisor on `address`)
    in a background thread, like `listen` does for a port of our own.

    `on_closed` runs when the supervisor closes the channel; `prepare` gets the server before
    its thread starts (to share contexts, as `listen` does).
    """
    server_class = type("HandoverServer", (HandoverServer,),
                        {"channel": channel, "on_closed": staticmethod(on_closed)
                         if on_closed else None})
    server = ae.make_server(address, ssl_context=ssl_context, evt_handlers=handlers,
                            server_class=server_class, request_handler=_WaitingRequestHandler)
    if prepare is not None:
        prepare(server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"handover-{address[1]}", daemon=True)
    thread.start()
    register_server(ae, server)
    return server
