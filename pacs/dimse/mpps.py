"""N-CREATE and N-SET of the Modality Performed Procedure Step SOP Class (PS3.4 F.7.2):
permission, then services/mpps, then the status (and the created UID) back to the modality.

Room: dimse/. Imports services/ (mpps, context), model/ (mpps, status) and dimse/events.
A `DicomError` becomes its status with Error Comment and Error ID; anything else 0x0110.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydicom.dataset import Dataset

from pacs.dimse.events import (
    calling_ae,
    normalized_error_dataset,
    peer,
    record_operation,
    require_permission,
    status_dataset,
)
from pacs.model.status import DicomError, ProcedureStepStatus
from pacs.services.context import Services
from pacs.services.mpps import create_step, set_step

log = logging.getLogger("pacs.mpps")


def _decoded(event: Any, name: str) -> Dataset:
    """The request's Attribute List (N-CREATE) or Modification List (N-SET), decoded."""
    try:
        dataset = getattr(event, name)
    except Exception as exc:  # pydicom raises many types for undecodable bytes
        raise DicomError(ProcedureStepStatus.PROCESSING_FAILURE,
                         f"{name.replace('_', ' ')} cannot be decoded: {exc}") from None
    return dataset if dataset is not None else Dataset()


def handle_n_create(event: Any, services: Services) -> tuple[Dataset, Dataset | None]:
    """EVT_N_CREATE: create a step; Success carries its SOP Instance UID when we assigned it."""
    started = time.monotonic()
    requested = event.request.AffectedSOPInstanceUID
    uid = str(requested) if requested is not None else None
    try:
        require_permission(event, services, "mpps", ProcedureStepStatus.NOT_AUTHORIZED)
        outcome = create_step(services.index, uid, _decoded(event, "attribute_list"),
                              calling_ae(event))
    except DicomError as error:
        record_operation(event, services, "N-CREATE", error.status, started,
                         sop_instance_uid=(uid or "")[:64], error=error.comment)
        return normalized_error_dataset(error), None
    except Exception:  # the one broad catch: nothing may escape to pynetdicom
        log.exception("N-CREATE from %s failed", peer(event))
        record_operation(event, services, "N-CREATE", ProcedureStepStatus.PROCESSING_FAILURE,
                         started, sop_instance_uid=(uid or "")[:64], error="internal error")
        return status_dataset(ProcedureStepStatus.PROCESSING_FAILURE,
                              "internal error while creating the step"), None
    record_operation(event, services, "N-CREATE", ProcedureStepStatus.SUCCESS, started,
                     sop_instance_uid=outcome.sop_instance_uid, state=outcome.state)
    reply = None
    if uid is None:  # PS3.7 10.1.5.1.4: the response names the instance we created
        reply = Dataset()
        reply.AffectedSOPInstanceUID = outcome.sop_instance_uid
    return status_dataset(ProcedureStepStatus.SUCCESS), reply


def handle_n_set(event: Any, services: Services) -> tuple[Dataset, Dataset | None]:
    """EVT_N_SET: apply the modification list to a step."""
    started = time.monotonic()
    uid = str(event.request.RequestedSOPInstanceUID or "")
    try:
        require_permission(event, services, "mpps", ProcedureStepStatus.NOT_AUTHORIZED)
        outcome = set_step(services.index, uid, _decoded(event, "modification_list"))
    except DicomError as error:
        record_operation(event, services, "N-SET", error.status, started,
                         sop_instance_uid=uid[:64], error=error.comment)
        return normalized_error_dataset(error), None
    except Exception:  # the one broad catch: nothing may escape to pynetdicom
        log.exception("N-SET from %s failed", peer(event))
        record_operation(event, services, "N-SET", ProcedureStepStatus.PROCESSING_FAILURE,
                         started, sop_instance_uid=uid[:64], error="internal error")
        return status_dataset(ProcedureStepStatus.PROCESSING_FAILURE,
                              "internal error while setting the step"), None
    record_operation(event, services, "N-SET", ProcedureStepStatus.SUCCESS, started,
                     sop_instance_uid=uid, state=outcome.state)
    return status_dataset(ProcedureStepStatus.SUCCESS), None
