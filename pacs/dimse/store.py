"""C-ECHO and C-STORE handlers: permission, the size limit, then services/store.

Room: dimse/. Imports services/, model/status and dimse (events, pynetdicom_internals).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydicom.dataset import Dataset

from pacs.dimse.events import (
    calling_ae,
    error_dataset,
    record_operation,
    require_permission,
    status_dataset,
)
from pacs.dimse.pynetdicom_internals import answer_store, received_digest
from pacs.model.status import DicomError, EchoStatus, StoreStatus
from pacs.services.context import Services

log = logging.getLogger("pacs.store")


def handle_echo(event: Any, services: Services) -> Dataset:
    """C-ECHO: Success, unless the allow-list denies echo to this caller."""
    started = time.monotonic()
    try:
        require_permission(event, services, "echo", EchoStatus.NOT_AUTHORIZED)
    except DicomError as error:
        record_operation(event, services, "C-ECHO", error.status, started, error=error.comment)
        return error_dataset(error)
    record_operation(event, services, "C-ECHO", EchoStatus.SUCCESS, started)
    return status_dataset(EchoStatus.SUCCESS)


def _check_size(event: Any, services: Services, received: tuple[str, int, bytes] | None) -> int:
    # The receive fast path counted what it wrote; only a file it did not see whole is stat'ed.
    size = received[1] if received else event.dataset_path.stat().st_size
    limit = services.settings.max_dataset_size
    if limit and size > limit:
        raise DicomError(StoreStatus.OUT_OF_RESOURCES,
                         f"data set of {size} bytes is over the limit of {limit}")
    return size


def handle_store(event: Any, services: Services) -> Dataset | int:
    """C-STORE: the received file goes through the ingest pipeline; its outcome is the status
    (Success as a bare status: pynetdicom takes it without walking a data set)."""
    started = time.monotonic()
    request = event.request
    command_class = str(request.AffectedSOPClassUID)
    command_instance = str(request.AffectedSOPInstanceUID)
    received = received_digest(event.assoc, event.dataset_path)  # taken first: no leftovers
    try:
        require_permission(event, services, "store", StoreStatus.NOT_AUTHORIZED)
        size = _check_size(event, services, received)
        services.metrics.add_bytes("received", size)
        result = services.ingestor.store(
            event.dataset_path,
            expected_sop_class_uid=command_class,
            expected_sop_instance_uid=command_instance,
            source_ae=calling_ae(event),
            received=received,
        )
    except DicomError as error:
        record_operation(event, services, "C-STORE", error.status, started,
                         sop_instance_uid=command_instance[:64], error=error.comment)
        return error_dataset(error)
    except Exception:  # the one broad catch: nothing may escape to pynetdicom's 0xC211
        log.exception("C-STORE from %s of %s failed", calling_ae(event), command_instance[:64])
        record_operation(event, services, "C-STORE", StoreStatus.OUT_OF_RESOURCES, started,
                         sop_instance_uid=command_instance[:64], error="internal error")
        return status_dataset(StoreStatus.OUT_OF_RESOURCES, "internal error while storing")
    record_operation(event, services, "C-STORE", StoreStatus.SUCCESS, started,
                     outcome=result.outcome, sop_instance_uid=result.sop_instance_uid,
                     study_instance_uid=result.study_instance_uid, bytes=result.file_size)
    return int(StoreStatus.SUCCESS)


def serve_store(event: Any, services: Services) -> None:
    """C-STORE served without pynetdicom's Storage service class (pynetdicom_internals.direct,
    on a plain socket): `handle_store`, then its response."""
    answer_store(event, handle_store(event, services))
