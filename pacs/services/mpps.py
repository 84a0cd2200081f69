"""The Modality Performed Procedure Step use cases (PS3.4 F.7): a modality says it started a
procedure step (N-CREATE) and later what it did (N-SET, then COMPLETED or DISCONTINUED).

Room: services/. Imports model/ (mpps rules, statuses), index/ (performed steps) and pydicom;
no protocol. A step is stored durably before its answer; a completed step links the instances
it lists and marks the worklist items it performs, in the same transaction.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pacs.index.database import Index
from pacs.index.mpps import PerformedSteps, StepRecord, StepWrite
from pacs.index.records import IndexUnavailable
from pacs.model.mpps import (
    IN_PROGRESS,
    apply_set,
    check_create,
    check_instance_uid,
    listed_instances,
    scheduled_step_keys,
    state_of,
)
from pacs.model.status import DicomError, ProcedureStepStatus

log = logging.getLogger("pacs.mpps")

# Root of the SOP Instance UIDs we assign when an N-CREATE names none (PS3.7 10.1.5).
UID_PREFIX = "1.2.826.0.1.3680043.10.1071.14."
_RETRIES = 5  # concurrent N-SETs of one step: re-read and re-apply this often


@dataclass(frozen=True)
class StepOutcome:
    """A step after an operation: its SOP Instance UID and state."""

    sop_instance_uid: str
    state: str


def _to_json(dataset: Dataset) -> str:
    return json.dumps(dataset.to_json_dict(None, None), sort_keys=True)


def load_dataset(record: StepRecord) -> Dataset:
    """The attributes of a stored step."""
    return Dataset.from_json(record.dataset)


def _write(dataset: Dataset) -> StepWrite:
    state = state_of(dataset)
    listed = [(i.series_instance_uid, i.sop_class_uid, i.sop_instance_uid)
              for i in listed_instances(dataset)]
    return StepWrite(state, _to_json(dataset), listed, scheduled_step_keys(dataset), state)


def _unavailable(exc: IndexUnavailable) -> DicomError:
    log.error("MPPS: %s", exc)
    return DicomError(ProcedureStepStatus.RESOURCE_LIMITATION, "index unavailable")


def create_step(index: Index, sop_instance_uid: str | None, attributes: Dataset,
                calling_ae: str) -> StepOutcome:
    """N-CREATE (F.7.2.1): check the attributes, store the step IN PROGRESS, mark the worklist
    items it performs. Raises DicomError: 0x0120/0x0121 for a missing Type 1 attribute, 0x0106
    for a status other than IN PROGRESS, 0x0117 for an invalid UID, 0x0111 for a UID in use."""
    uid = check_instance_uid(sop_instance_uid) if sop_instance_uid is not None \
        else generate_uid(prefix=UID_PREFIX)
    check_create(attributes)
    try:
        created = PerformedSteps(index).create(uid, calling_ae, _write(attributes))
    except IndexUnavailable as exc:
        raise _unavailable(exc) from exc
    if not created:
        raise DicomError(ProcedureStepStatus.DUPLICATE_SOP_INSTANCE,
                         f"Performed Procedure Step {uid} exists already")
    return StepOutcome(uid, IN_PROGRESS)


def set_step(index: Index, sop_instance_uid: str, modification: Dataset) -> StepOutcome:
    """N-SET (F.7.2.2): apply the modification to the stored step and store the result.
    Raises DicomError: 0x0112 for an unknown step, 0x0110 (Error ID 0xA710) for a step in a
    final state, 0x0106 for a change N-SET may not make, 0x0120/0x0121 for a final state whose
    requirements are not met."""
    steps = PerformedSteps(index)
    try:
        for _ in range(_RETRIES):
            current = steps.get(sop_instance_uid)
            if current is None:
                raise DicomError(ProcedureStepStatus.NO_SUCH_SOP_INSTANCE,
                                 f"no Performed Procedure Step {sop_instance_uid[:40]}")
            updated = apply_set(load_dataset(current), modification)
            if steps.update(current, _write(updated)):
                return StepOutcome(sop_instance_uid, state_of(updated))
    except IndexUnavailable as exc:
        raise _unavailable(exc) from exc
    raise DicomError(ProcedureStepStatus.PROCESSING_FAILURE,
                     "the step kept changing while being set; send the N-SET again")


# --- what the operator sees (`pacs mpps list`, `pacs mpps show`) -----------------------------

@dataclass(frozen=True)
class StepView:
    """A stored step with its attributes and the instances it lists (held in the archive or
    not yet)."""

    record: StepRecord
    dataset: Dataset
    listed: list[tuple[str, str, str, bool]]  # (series, SOP class, SOP instance, held)

    @property
    def held(self) -> int:
        """How many of the listed instances the archive holds."""
        return sum(1 for *_, held in self.listed if held)


def list_steps(index: Index, states: tuple[str, ...] = ()) -> list[StepView]:
    """Every stored step (or those in `states`), oldest first."""
    steps = PerformedSteps(index)
    return [StepView(record, load_dataset(record), steps.listed_instances(record.sop_instance_uid))
            for record in steps.list(states)]


def show_step(index: Index, sop_instance_uid: str) -> StepView | None:
    """One stored step, or None."""
    steps = PerformedSteps(index)
    record = steps.get(sop_instance_uid)
    if record is None:
        return None
    return StepView(record, load_dataset(record), steps.listed_instances(sop_instance_uid))
