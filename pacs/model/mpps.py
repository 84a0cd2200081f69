"""Modality Performed Procedure Step (PS3.4 F.7): the attribute rules of Table F.7.2-1 as data,
checking an N-CREATE, applying an N-SET, the final-state requirements, and what a step refers
to (the instances it lists, the worklist items it performs).

Room: model/. Imports model/ (status, value_matching) and pydicom; no database, no network.
Every rule raises `DicomError` with the status PS3.4 F.7.2 gives and a comment naming the
attribute, so a modality engineer can read what to fix from the log of the modality.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from pacs.model.status import PPS_MAY_NO_LONGER_BE_UPDATED, DicomError, ProcedureStepStatus
from pacs.model.value_matching import element_texts

MODALITY_PERFORMED_PROCEDURE_STEP = "1.2.840.10008.3.1.2.3.3"
IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
STATES = (IN_PROGRESS, COMPLETED, DISCONTINUED)
FINAL_STATES = (COMPLETED, DISCONTINUED)

# N-CREATE Type 1 (Table F.7.2-1): present with a value.
_CREATE_TYPE1 = ("ScheduledStepAttributesSequence", "PerformedStationAETitle",
                 "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
                 "PerformedProcedureStepID", "PerformedProcedureStepStatus", "Modality")
_SCHEDULED_STEP_TYPE1 = ("StudyInstanceUID",)
# Not allowed in N-SET: fixed when the step was created.
_NOT_SETTABLE = frozenset(tag_for_keyword(k) for k in (
    "ScheduledStepAttributesSequence", "PatientName", "PatientID", "IssuerOfPatientID",
    "PatientBirthDate", "PatientSex", "ReferencedPatientSequence", "PerformedProcedureStepID",
    "PerformedStationAETitle", "PerformedStationName", "PerformedLocation",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "Modality",
    "StudyID"))
# Final state (COMPLETED or DISCONTINUED): Type 1, and per Performed Series item.
_FINAL_TYPE1 = ("PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
                "PerformedSeriesSequence")
_FINAL_SERIES_TYPE1 = ("SeriesInstanceUID", "ProtocolName")
_REFERENCE_TYPE1 = ("ReferencedSOPClassUID", "ReferencedSOPInstanceUID")
_IMAGE_REFERENCES = ("ReferencedImageSequence", "ReferencedNonImageCompositeSOPInstanceSequence")


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return int(tag)


def _element(dataset: Dataset, keyword: str) -> DataElement | None:
    """The data element of an attribute, or None when absent."""
    tag = tag_for_keyword(keyword)
    return dataset[tag] if tag is not None and tag in dataset else None

def _missing(keyword: str, where: str, empty: bool) -> DicomError:
    tag = _tag(keyword)
    name = f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"
    if empty:
        return DicomError(ProcedureStepStatus.MISSING_ATTRIBUTE_VALUE,
                          f"{name} has no value{where}", tag)
    return DicomError(ProcedureStepStatus.MISSING_ATTRIBUTE, f"{name} is missing{where}", tag)


def _require(dataset: Dataset, keywords: tuple[str, ...], where: str = "") -> None:
    """Type 1: each attribute present (else 0x0120) with a value (else 0x0121)."""
    for keyword in keywords:
        element = _element(dataset, keyword)
        if element is None:
            raise _missing(keyword, where, empty=False)
        if element.VR == "SQ":
            if not element.value:
                raise _missing(keyword, where, empty=True)
        elif not element_texts(element.value):
            raise _missing(keyword, where, empty=True)


def _text(dataset: Dataset, keyword: str) -> str:
    """The value of an attribute as text ('' when absent or empty)."""
    element = _element(dataset, keyword)
    return "\\".join(element_texts(element.value)) if element is not None else ""


def state_of(dataset: Dataset) -> str:
    """The Performed Procedure Step Status of a data set ('' when absent)."""
    return _text(dataset, "PerformedProcedureStepStatus")


def _check_state(dataset: Dataset, allowed: tuple[str, ...]) -> None:
    state = state_of(dataset)
    if state not in allowed:
        raise DicomError(ProcedureStepStatus.INVALID_ATTRIBUTE_VALUE,
                         f"Performed Procedure Step Status {state!r} is not "
                         f"{' or '.join(allowed)}", _tag("PerformedProcedureStepStatus"))


def check_instance_uid(uid: str) -> str:
    """A SOP Instance UID a step may have; 0x0117 Invalid Object Instance otherwise."""
    if not uid or not UID(uid).is_valid:
        raise DicomError(ProcedureStepStatus.INVALID_OBJECT_INSTANCE,
                         f"{uid[:40]!r} is not a valid SOP Instance UID")
    return uid


def check_create(dataset: Dataset) -> None:
    """F.7.2.1: the N-CREATE Type 1 attributes, and a status of IN PROGRESS (else 0x0106)."""
    _require(dataset, _CREATE_TYPE1)
    for number, item in enumerate(dataset.ScheduledStepAttributesSequence, 1):
        _require(item, _SCHEDULED_STEP_TYPE1, f" in Scheduled Step Attributes item {number}")
    _check_state(dataset, (IN_PROGRESS,))


def _same(first: object, second: object) -> bool:
    return json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def apply_set(stored: Dataset, modification: Dataset) -> Dataset:
    """F.7.2.2: the step after an N-SET, checked.

    A step in a final state is never changed (0x0110 with Error ID 0xA710). An attribute Table
    F.7.2-1 does not allow in N-SET may be resent unchanged (it is ignored) but not changed
    (0x0106). A COMPLETED or DISCONTINUED result must meet the final-state requirements.
    """
    if state_of(stored) in FINAL_STATES:
        raise DicomError(ProcedureStepStatus.PROCESSING_FAILURE,
                         f"Performed Procedure Step may no longer be updated: "
                         f"{state_of(stored)}", error_id=PPS_MAY_NO_LONGER_BE_UPDATED)
    updated = copy.deepcopy(stored)
    for element in modification:
        if element.tag.group < 0x0008 or element.tag == 0x00080005:
            continue  # command and charset elements are no attributes of the step
        if element.tag in _NOT_SETTABLE:
            before = stored.get(element.tag)
            if before is None or not _same(before.to_json_dict(None, None),
                                           element.to_json_dict(None, None)):
                name = keyword_for_tag(element.tag) or str(element.tag)
                raise DicomError(ProcedureStepStatus.INVALID_ATTRIBUTE_VALUE,
                                 f"{name} may not be changed by N-SET", element.tag)
            continue
        updated[element.tag] = copy.deepcopy(element)
    _check_state(updated, STATES)
    if state_of(updated) in FINAL_STATES:
        check_final(updated)
    return updated


def check_final(dataset: Dataset) -> None:
    """The final-state requirements of Table F.7.2-1 (Type 1 when COMPLETED or DISCONTINUED):
    end date and time, and at least one Performed Series item with its Series Instance UID and
    Protocol Name, each referenced instance naming its SOP Class and Instance."""
    where = f" to be {state_of(dataset)}"
    _require(dataset, _FINAL_TYPE1, where)
    for number, series in enumerate(dataset.PerformedSeriesSequence, 1):
        _require(series, _FINAL_SERIES_TYPE1, f" in Performed Series item {number}{where}")
        for keyword in _IMAGE_REFERENCES:
            for reference in series.get(keyword, None) or []:
                _require(reference, _REFERENCE_TYPE1, f" in {keyword}{where}")


@dataclass(frozen=True)
class ListedInstance:
    """An instance a step lists in its Performed Series Sequence."""

    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str


def listed_instances(dataset: Dataset) -> Iterator[ListedInstance]:
    """Every image and non-image instance the step's Performed Series Sequence lists."""
    for series in dataset.get("PerformedSeriesSequence", None) or []:
        series_uid = _text(series, "SeriesInstanceUID")
        for keyword in _IMAGE_REFERENCES:
            for reference in series.get(keyword, None) or []:
                texts = [_text(reference, k) for k in _REFERENCE_TYPE1]
                if texts[1]:
                    yield ListedInstance(series_uid, texts[0], texts[1])


def scheduled_step_keys(dataset: Dataset) -> list[str]:
    """The worklist items the step performs, as Study Instance UID / Requested Procedure ID /
    Scheduled Procedure Step ID; items without an SPS ID (unscheduled work) name none."""
    keys = []
    for item in dataset.get("ScheduledStepAttributesSequence", None) or []:
        parts = [_text(item, k) for k in ("StudyInstanceUID", "RequestedProcedureID",
                                          "ScheduledProcedureStepID")]
        if parts[0] and parts[2]:
            keys.append("/".join(part.strip() for part in parts))
    return keys
