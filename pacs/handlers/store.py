"""C-ECHO and C-STORE handlers."""

from __future__ import annotations

import logging
import time
from typing import Any

from pydicom.dataset import Dataset

from pacs.handlers.common import (
    calling_ae,
    error_dataset,
    peer,
    require_permission,
    status_dataset,
)
from pacs.services import Services
from pacs.status import DicomError, EchoStatus, StoreStatus

log = logging.getLogger("pacs.store")


def handle_echo(event: Any, services: Services) -> Dataset:
    """C-ECHO: Success, unless the allow-list denies echo to this caller."""
    try:
        require_permission(event, services, "echo", StoreStatus.NOT_AUTHORIZED)
    except DicomError as error:
        log.warning("C-ECHO from %s refused: %s", peer(event), error)
        return error_dataset(error)
    log.info("C-ECHO from %s", peer(event))
    return status_dataset(EchoStatus.SUCCESS)


def handle_store(event: Any, services: Services) -> Dataset:
    """C-STORE: the received file goes through the ingest pipeline; its outcome is the status."""
    started = time.monotonic()
    request = event.request
    command_class = str(request.AffectedSOPClassUID)
    command_instance = str(request.AffectedSOPInstanceUID)
    try:
        require_permission(event, services, "store", StoreStatus.NOT_AUTHORIZED)
        if (size := event.dataset_path.stat().st_size) > services.settings.max_dataset_size > 0:
            raise DicomError(
                StoreStatus.OUT_OF_RESOURCES,
                f"data set of {size} bytes is over the limit of "
                f"{services.settings.max_dataset_size}",
            )
        result = services.ingestor.store(
            event.dataset_path,
            expected_sop_class_uid=command_class,
            expected_sop_instance_uid=command_instance,
            source_ae=calling_ae(event),
        )
    except DicomError as error:
        log.warning("C-STORE from %s of %s refused: %s", peer(event), command_instance[:64], error)
        return error_dataset(error)
    except Exception:  # the one broad catch: nothing may escape to pynetdicom's 0xC211
        log.exception("C-STORE from %s of %s failed", peer(event), command_instance[:64])
        return status_dataset(StoreStatus.OUT_OF_RESOURCES, "internal error while storing")
    log.info(
        "C-STORE from %s: %s %s (study %s, %d bytes, %.1f ms)",
        peer(event), result.outcome, result.sop_instance_uid, result.study_instance_uid,
        result.file_size, (time.monotonic() - started) * 1000,
    )
    return status_dataset(StoreStatus.SUCCESS)
