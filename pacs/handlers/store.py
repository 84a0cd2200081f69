"""C-ECHO and C-STORE handlers."""

from __future__ import annotations

import logging
import time
from typing import Any

from pydicom.dataset import Dataset

from pacs.handlers.common import calling_ae, error_dataset, peer, status_dataset
from pacs.services import Services
from pacs.status import DicomError, EchoStatus, StoreStatus

log = logging.getLogger("pacs.store")


def handle_echo(event: Any, services: Services) -> int:
    """C-ECHO: always Success (PS3.7 9.1.5)."""
    log.info("C-ECHO from %s", peer(event))
    return int(EchoStatus.SUCCESS)


def handle_store(event: Any, services: Services) -> Dataset:
    """C-STORE: the received file goes through the ingest pipeline; its outcome is the status."""
    started = time.monotonic()
    request = event.request
    command_class = str(request.AffectedSOPClassUID)
    command_instance = str(request.AffectedSOPInstanceUID)
    try:
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
