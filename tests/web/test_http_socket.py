"""The HTTP face's sockets: Nagle's algorithm off on every connection it accepts, as DESIGN.md
asks of every socket we accept ("Measured pitfalls"). With Nagle on, each response on a
keep-alive connection waited for the client's delayed ACK (~40 ms) between its header and
body writes.
"""

from __future__ import annotations

import socket

from pacs.web.server import bind_socket


# RFC 896 / RFC 1122 4.2.3.4: a connection accepted on the HTTP port has TCP_NODELAY set.
def test_accepted_http_connections_turn_nagle_off() -> None:
    listener = bind_socket("127.0.0.1", 0)
    try:
        # asyncio turns Nagle off on accepted sockets only when the listener says TCP.
        assert listener.proto == socket.IPPROTO_TCP
        listener.setblocking(True)
        with socket.create_connection(listener.getsockname()[:2], timeout=10):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
