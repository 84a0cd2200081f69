"""What every handler shares: who is calling, and turning errors into status datasets."""

from __future__ import annotations

import logging
import socket
from enum import IntEnum
from typing import Any

from pydicom.dataset import Dataset

from pacs.status import DicomError

log = logging.getLogger("pacs.handlers")


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
    return status_dataset(error.status, error.error_comment, error.offending_element)


def set_no_delay(sock: socket.socket | None) -> None:
    """Disable Nagle's algorithm: small DIMSE messages otherwise wait for a delayed ACK."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
