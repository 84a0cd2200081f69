"""Operation counts, durations and bytes, exposed for Prometheus when `metrics.port` is set.

Room: services/. Standard library (prometheus_client when on); no protocol. Off by default:
then every call is a no-op and prometheus_client is not imported. Each server has its own
registry.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("pacs.metrics")


class Metrics:
    """Counters and histograms of DIMSE operations; a no-op unless started."""

    def __init__(self) -> None:
        self._operations: Any = None
        self._durations: Any = None
        self._bytes: Any = None
        self._http: Any = None
        self.port: int | None = None

    def start(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0: any free port); returns the bound port."""
        from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

        registry = CollectorRegistry()
        self._operations = Counter(
            "minipacs_operations", "DIMSE operations answered", ["operation", "status"],
            registry=registry,
        )
        self._durations = Histogram(
            "minipacs_operation_seconds", "Time to answer a DIMSE operation", ["operation"],
            registry=registry,
        )
        self._bytes = Counter(
            "minipacs_bytes", "Data set bytes received or sent", ["direction"],
            registry=registry,
        )
        self._http, _thread = start_http_server(port, addr=host, registry=registry)
        self.port = int(self._http.server_port)
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def observe(self, operation: str, status: int, seconds: float) -> None:
        """Count one operation with its final status and duration."""
        if self._operations is not None:
            self._operations.labels(operation, f"0x{status:04X}").inc()
            self._durations.labels(operation).observe(seconds)

    def add_bytes(self, direction: str, count: int) -> None:
        """Count data set bytes 'received' (C-STORE) or 'sent' (C-MOVE/C-GET)."""
        if self._bytes is not None and count:
            self._bytes.labels(direction).inc(count)

    def stop(self) -> None:
        """Stop the HTTP endpoint."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
