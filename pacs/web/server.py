"""Serving the HTTP face: uvicorn in a background thread, on a socket we bind ourselves
(SO_REUSEPORT for `--workers`), HTTPS with the [tls] certificate.

Room: web/. Imports uvicorn, config and web/app. `pacs/cli/serve.py` starts and stops it next
to the DIMSE server.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import uvicorn
from starlette.routing import BaseRoute

from pacs.config import HTTP_ANY_PORT
from pacs.services.context import Services
from pacs.web.app import create_app

log = logging.getLogger("pacs.web")


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; port 0 (or HTTP_ANY_PORT) takes any free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=TCP: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP;
    # without it a keep-alive response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited where supported
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, max(port, 0)))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass
class RunningWeb:
    """A listening HTTP(S) server in its thread."""

    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket
    scheme: str

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound."""
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """The base URL on loopback-friendly terms (for logs and tests)."""
        host, port = self.address
        host = "127.0.0.1" if host == "0.0.0.0" else host
        return f"{self.scheme}://{host}:{port}"

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let running requests finish for `grace` seconds, then close."""
        self.server.should_exit = True
        self.thread.join(grace + 5)
        self.sock.close()


def start_web(services: Services, reuse_port: bool = False,
              extra_routes: Sequence[BaseRoute] = ()) -> RunningWeb | None:
    """Serve the HTTP face on the configured host and port; None when http.port is 0."""
    settings = services.settings
    if settings.http_port == 0:
        return None
    port = 0 if settings.http_port == HTTP_ANY_PORT else settings.http_port
    sock = bind_socket(settings.http_listen_host, port, reuse_port)
    tls = {"ssl_certfile": str(settings.tls_certificate), "ssl_keyfile": str(settings.tls_key)} \
        if settings.https else {}
    config = uvicorn.Config(
        create_app(services, extra_routes), log_config=None, access_log=False, lifespan="off",
        timeout_graceful_shutdown=10, server_header=False, **tls)  # type: ignore[arg-type]
    # Run outside the main thread, uvicorn leaves signal handling to `pacs serve`.
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="http",
                              daemon=True)
    thread.start()
    running = RunningWeb(server, thread, sock, "https" if settings.https else "http")
    log.info("DICOMweb listening on %s%s (%s)", running.url, "/dicom-web",
             "HTTPS" if settings.https else "plain HTTP")
    if not settings.http_users:
        log.warning("no HTTP users configured: anyone who can reach port %d may read and "
                    "store (set [[http_user]] entries for production)", running.address[1])
    return running

