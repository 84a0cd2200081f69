"""What every DIMSE handler shares: who is calling, permission, one operation record, and
turning a `DicomError` into a status data set.

Room: dimse/. Imports model/status, pydicom and dimse/pynetdicom_internals; handlers receive
the `Services` container.
"""

from __future__ import annotations

import logging
import socket
import time
from enum import IntEnum
from typing import Any

from pydicom.dataset import Dataset

from pacs.dimse.pynetdicom_internals import outgoing_pending
from pacs.model.status import DicomError

log = logging.getLogger("pacs.handlers")
operations_log = logging.getLogger("pacs.operations")


def calling_ae(event: Any) -> str:
    """The calling AE title of the event's association."""
    return str(event.assoc.requestor.ae_title).strip()


def peer(event: Any) -> str:
    """'AE@address:port' of the peer, for log lines."""
    requestor = event.assoc.requestor
    return f"{str(requestor.ae_title).strip()}@{requestor.address}:{requestor.port}"


def require_permission(event: Any, services: Any, service: str, refused: IntEnum) -> None:
    """Raise DicomError(`refused`) unless the caller may use `service` (PS3.7 C.5.4 0x0124)."""
    requestor = event.assoc.requestor
    if not services.access.allows(str(requestor.ae_title), str(requestor.address), service):
        raise DicomError(refused, f"{calling_ae(event)} may not use {service} here")


def record_operation(
    event: Any, services: Any, operation: str, status: int, started: float, **fields: Any
) -> None:
    """One log line per DIMSE operation (with structured fields for --log-format json),
    and its metrics: peer AE and address, operation, status, duration, then `fields`."""
    seconds = time.monotonic() - started
    requestor = event.assoc.requestor
    entry = {
        "peer_ae": str(requestor.ae_title).strip(),
        "peer_address": f"{requestor.address}:{requestor.port}",
        "operation": operation,
        "status": f"0x{int(status):04X}",
        "duration_ms": round(seconds * 1000, 2),
        **fields,
    }
    text = " ".join(f"{key}={value}" for key, value in entry.items() if value not in ("", None))
    level = logging.INFO if int(status) in (0x0000, 0xFF00, 0xFF01) else logging.WARNING
    operations_log.log(level, text, extra={"fields": entry})
    services.metrics.observe(operation, int(status), seconds)
    services.index.end_operation()


def status_dataset(status: int | IntEnum, comment: str = "",
                   offending_element: int | None = None) -> Dataset:
    """A status Dataset with Error Comment and Offending Element where given."""
    result = Dataset()
    result.Status = int(status)
    if comment:
        result.ErrorComment = comment[:64]
    if offending_element is not None:
        result.OffendingElement = [offending_element]
    return result


def error_dataset(error: DicomError) -> Dataset:
    """The status Dataset of a DicomError."""
    result = status_dataset(error.status, error.error_comment, error.offending_element)
    if error.error_id is not None:
        result.ErrorID = error.error_id
    return result


def normalized_error_dataset(error: DicomError) -> Dataset:
    """The status Dataset of a DicomError for a DIMSE-N response: Error Comment and Error ID
    (these responses have no Offending Element; the comment names the attribute)."""
    result = status_dataset(error.status, error.error_comment)
    if error.error_id is not None:
        result.ErrorID = error.error_id
    return result


def set_no_delay(sock: socket.socket | None) -> None:
    """Disable Nagle's algorithm: small DIMSE messages otherwise wait for a delayed ACK."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def wait_until_sent(event: Any, timeout: float = 10.0) -> None:
    """Wait until our earlier responses have left, so a C-CANCEL can be read between them.

    pynetdicom's DUL thread sends queued messages before it reads the socket: while a handler
    keeps its queue full, a C-CANCEL sits unread until every response is out.
    """
    deadline = time.monotonic() + timeout
    while outgoing_pending(event.assoc) and time.monotonic() < deadline:
        time.sleep(0.0001)
