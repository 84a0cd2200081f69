"""The servers that accept associations: pynetdicom's threaded server with the TLS handshake
moved into the connection's own thread, and its accept loop without forced collections.

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included), the
standard library and pynetdicom_internals.connection (for its log line's wording); nothing
else of ours.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from pynetdicom.transport import AssociationServer, RequestHandler, ThreadedAssociationServer

from pacs.dimse.pynetdicom_internals.connection import exception_text

log = logging.getLogger("pacs.server")


class _HandshakeFirst(RequestHandler):
    """pynetdicom's request handler, doing a deferred TLS handshake first (bounded like a
    wait for the A-ASSOCIATE-RQ, by the ACSE timeout)."""

    def handle(self) -> None:
        """Complete the TLS handshake, then create and start the association."""
        connection = self.request
        if isinstance(connection, ssl.SSLSocket):
            try:
                connection.settimeout(self.ae.acse_timeout or self.ae.network_timeout)
                connection.do_handshake()
            except (OSError, ValueError) as exc:
                log.warning("%s:%s (no association): TLS handshake failed: %s; closed",
                            *self.client_address[:2], exception_text(exc))
                self.server.shutdown_request(connection)
                return
        super().handle()


class DeferredHandshakeServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, except that a TLS handshake happens in the connection's
    own thread: in the accepting thread (pynetdicom's way) one client that connects and stays
    silent stops every other TLS client from being accepted."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("request_handler", _HandshakeFirst)
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[Any, Any]:
        """Accept a connection; with TLS, wrap it without handshaking yet."""
        client, address = self.socket.accept()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True,
                                                  do_handshake_on_connect=False)
        return client, address


def _no_forced_collection(self: AssociationServer) -> None:
    """AssociationServer.service_actions without its `gc.collect()` every 59 turns of the
    accept loop: a full collection holds the GIL for tens of milliseconds (a few per cent of
    a busy store's CPU, and most of an idle server's), and Python's own collector already
    frees the cycles an ended association leaves."""


def install_server_hooks() -> tuple[str, ...]:
    """Put the accept-loop hook in place; what it replaces, for the record."""
    AssociationServer.service_actions = _no_forced_collection  # type: ignore[method-assign]
    return ("AssociationServer.service_actions",)
