"""The Modality Worklist Information Model – FIND (PS3.4 K.6.1): its keys as data, what makes a
worklist item servable, validating a request identifier, its predicates, and one response.

Room: model/. Imports model/ (dictionary, levels, identifier, matching, predicates, status,
value_matching) and pydicom; no database. Matching is C-FIND's (model/matching.py) with the
worklist's own unknown-value rule: an item whose attribute is zero length fails to match a
non-empty matching key (K.2.2.1.1.1), where Query/Retrieve lets it match (C.2.2.1.2).
A worklist item is one Scheduled Procedure Step: its Scheduled Procedure Step Sequence holds
exactly one item, whose keys the index keeps in columns beside the top-level ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace

from pydicom.datadict import dictionary_VM, dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag

from pacs.model.dictionary import StoredAttribute, column_name
from pacs.model.identifier import _check_values, _has_non_ascii, _has_values, _read
from pacs.model.levels import OPTIONAL, REQUIRED, Key
from pacs.model.matching import key_match
from pacs.model.predicates import MatchOptions, Pred, QueryValue
from pacs.model.status import DicomError, WorklistStatus
from pacs.model.value_matching import element_texts

WORKLIST = "WORKLIST"  # the index table of worklist items, as predicates name it
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
SPS_SEQUENCE = 0x00400100  # Scheduled Procedure Step Sequence
SPECIFIC_CHARACTER_SET = 0x00080005
_NOT_RETURNED = {SPECIFIC_CHARACTER_SET, 0x00080052}  # charset is ours; no Q/R Level here

# Keys matched in the index (Table K.6-1, plus the optional keys DCMTK's wlmscpfs matches):
# (keyword, inside the Scheduled Procedure Step item, Required matching key).
_MATCHING_KEYS: tuple[tuple[str, bool, bool], ...] = (
    ("ScheduledStationAETitle", True, True),
    ("ScheduledProcedureStepStartDate", True, True),
    ("ScheduledProcedureStepStartTime", True, True),
    ("Modality", True, True),
    ("ScheduledPerformingPhysicianName", True, True),
    ("ScheduledStationName", True, False),
    ("ScheduledProcedureStepLocation", True, False),
    ("ScheduledProcedureStepID", True, False),
    ("PatientName", False, True),
    ("PatientID", False, True),
    ("IssuerOfPatientID", False, False),
    ("PatientBirthDate", False, False),
    ("PatientSex", False, False),
    ("AccessionNumber", False, False),
    ("RequestedProcedureID", False, False),
    ("RequestedProcedurePriority", False, False),
    ("ReferringPhysicianName", False, False),
    ("RequestingPhysician", False, False),
    ("AdmissionID", False, False),
    ("StudyInstanceUID", False, False),
)


def _key(keyword: str, required: bool) -> Key:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return Key(keyword, tag, dictionary_VR(tag).split(" or ")[0], dictionary_VM(tag) != "1",
               WORKLIST, REQUIRED if required else OPTIONAL, WORKLIST, column_name(keyword))


TOP_KEYS: Mapping[int, Key] = {
    key.tag: key for key in (_key(k, r) for k, in_sps, r in _MATCHING_KEYS if not in_sps)}
SPS_KEYS: Mapping[int, Key] = {
    key.tag: key for key in (_key(k, r) for k, in_sps, r in _MATCHING_KEYS if in_sps)}
# The index columns of every matching key (with PN folded and TM normalized forms).
WORKLIST_ATTRIBUTES: tuple[StoredAttribute, ...] = tuple(
    StoredAttribute(key.keyword, WORKLIST, key.vr, key.column or "", key.tag)
    for key in (*TOP_KEYS.values(), *SPS_KEYS.values()))
TOP_ATTRIBUTES = tuple(a for a in WORKLIST_ATTRIBUTES if a.tag in TOP_KEYS)
SPS_ATTRIBUTES = tuple(a for a in WORKLIST_ATTRIBUTES if a.tag in SPS_KEYS)

# Return Key Type 1 of Table K.6-1: an item without a value for one of these cannot be served.
_TYPE1_SPS = ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
              "ScheduledProcedureStepStartTime", "Modality", "ScheduledProcedureStepID")
_TYPE1_TOP = ("RequestedProcedureID", "StudyInstanceUID", "PatientName", "PatientID")
# 1C pairs: a description, or a code sequence whose every item has a value and a scheme.
_DESCRIBED_SPS = ("ScheduledProcedureStepDescription", "ScheduledProtocolCodeSequence")
_DESCRIBED_TOP = ("RequestedProcedureDescription", "RequestedProcedureCodeSequence")


def _element(dataset: Dataset, keyword: str) -> DataElement | None:
    """The data element of an attribute, or None when absent."""
    tag = tag_for_keyword(keyword)
    return dataset[tag] if tag is not None and tag in dataset else None

class InvalidWorklistItem(ValueError):
    """A data set that cannot be served as a worklist item; the message says why."""


def _has_value(dataset: Dataset, keyword: str) -> bool:
    element = _element(dataset, keyword)
    if element is None or element.value is None:
        return False
    if element.VR == "SQ":
        return len(element.value) > 0
    return bool(element_texts(element.value))


def _described(dataset: Dataset, description: str, codes: str) -> bool:
    if _has_value(dataset, description):
        return True
    items = list(dataset.get(codes) or [])
    return bool(items) and all(_has_value(item, "CodeValue")
                               and _has_value(item, "CodingSchemeDesignator") for item in items)


def scheduled_step(item: Dataset) -> Dataset:
    """The one item of the Scheduled Procedure Step Sequence of a checked worklist item."""
    return item.ScheduledProcedureStepSequence[0]


def check_item(item: Dataset) -> None:
    """Raise InvalidWorklistItem unless `item` holds one Scheduled Procedure Step with every
    Return Key of Type 1 (and one of each 1C pair) of PS3.4 Table K.6-1."""
    steps = _element(item, "ScheduledProcedureStepSequence")
    if steps is None or steps.VR != "SQ" or len(steps.value or []) != 1:
        raise InvalidWorklistItem("needs a Scheduled Procedure Step Sequence of exactly one item")
    step = steps.value[0]
    for where, dataset, keywords in (("Scheduled Procedure Step", step, _TYPE1_SPS),
                                     ("item", item, _TYPE1_TOP)):
        for keyword in keywords:
            if not _has_value(dataset, keyword):
                raise InvalidWorklistItem(f"{where} has no {keyword}")
    if not _described(step, *_DESCRIBED_SPS):
        raise InvalidWorklistItem("Scheduled Procedure Step has neither a description nor a "
                                  "complete Scheduled Protocol Code Sequence")
    if not _described(item, *_DESCRIBED_TOP):
        raise InvalidWorklistItem("item has neither a Requested Procedure Description nor a "
                                  "complete Requested Procedure Code Sequence")


def step_key(item: Dataset) -> str:
    """The identity of a checked item: Study Instance UID, Requested Procedure ID and
    Scheduled Procedure Step ID (a step within its requested procedure)."""
    parts = (item.StudyInstanceUID, item.RequestedProcedureID,
             scheduled_step(item).ScheduledProcedureStepID)
    return "/".join(str(part).strip() for part in parts)


# --- requests --------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorklistRequest:
    """A validated worklist C-FIND identifier: the keys to match and the shape to return."""

    identifier: Dataset  # a decoded copy of the request: what each response holds
    values: tuple[QueryValue, ...]  # matching keys with a value
    unmatched: bool = False  # a value on a key we do not match on: ignored (K.2.2.1.1.2)

    @property
    def pending_status(self) -> WorklistStatus:
        """0xFF01 when some key with a value was not matched on, else 0xFF00."""
        return WorklistStatus.PENDING_OPTIONAL_KEYS_UNSUPPORTED if self.unmatched \
            else WorklistStatus.PENDING


def _refuse(tag: int, comment: str) -> DicomError:
    return DicomError(WorklistStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, comment, tag)


def _keys_of(dataset: Dataset, keys: Mapping[int, Key],
             values: list[QueryValue]) -> bool:
    """Collect the matching keys of one level (the identifier or the step item) into `values`;
    True when some other attribute carries a value (matching on it is not supported)."""
    unmatched = False
    for raw in list(dataset.elements()):
        tag = Tag(raw.tag)
        if tag.element == 0 or tag.group < 0x0008 or tag in _NOT_RETURNED:
            continue
        try:
            vr, texts, items = _read(dataset, tag)
        except (ValueError, TypeError, LookupError, OverflowError) as exc:
            raise _refuse(tag, f"({tag.group:04X},{tag.element:04X}) cannot be decoded: "
                               f"{exc}") from None
        key = keys.get(tag)
        if key is None:
            if tag.is_private:
                unmatched = True  # ignored and not returned (C.4.1.1.3.2 note 4, as C-FIND)
                del dataset[tag]
            elif tag != SPS_SEQUENCE:
                unmatched = unmatched or bool(texts) or any(_has_values(i) for i in items or [])
            continue
        try:
            _check_values(key, texts)
        except ValueError as exc:
            raise _refuse(tag, f"{key.keyword} {exc}") from None
        if texts:
            values.append(QueryValue(key, texts))
    return unmatched


def parse_worklist_request(identifier: Dataset) -> WorklistRequest:
    """Validate a Modality Worklist identifier (PS3.4 K.6.1.2).

    Raises DicomError 0xA900 with Offending Element for a value a key cannot hold (a malformed
    date or time, several values on a single-valued key, a wildcard in a UID) or a Scheduled
    Procedure Step Sequence that is not a sequence of at most one item.
    """
    request = copy.deepcopy(identifier)  # never touch the caller's identifier
    values: list[QueryValue] = []
    unmatched = _keys_of(request, TOP_KEYS, values)
    if SPS_SEQUENCE in request:
        steps = request[SPS_SEQUENCE]
        if steps.VR != "SQ":
            raise _refuse(SPS_SEQUENCE, "Scheduled Procedure Step Sequence is not a sequence")
        items = list(steps.value or [])
        if len(items) > 1:
            raise _refuse(SPS_SEQUENCE, "Scheduled Procedure Step Sequence: one item at most")
        if items:
            unmatched = _keys_of(items[0], SPS_KEYS, values) or unmatched
    return WorklistRequest(request, tuple(values), unmatched)


def worklist_constraints(request: WorklistRequest, options: MatchOptions) -> list[Pred]:
    """The predicates of the request's matching keys, with the worklist's unknown-value rule
    (C-FIND's matching types otherwise: single value, UID list, wildcards, ranges)."""
    options = replace(options, unknown_matches=False, fuzzy_names=False,
                      combined_datetime=False, timezone="")
    return [p for value in request.values if (p := key_match(value, options)) is not None]


# --- responses -------------------------------------------------------------------------------

def _project(query: Dataset, stored: Dataset) -> Dataset:
    """The attributes `query` names, with their values in `stored` (zero length when absent);
    a sequence key returns each stored item projected onto its request item, or the whole
    sequence when that item is empty (K.2.2.1.2 note 4)."""
    answer = Dataset()
    for element in query:
        if element.tag in _NOT_RETURNED or element.tag.element == 0:
            continue
        found = stored.get(element.tag)
        if element.VR == "SQ":
            items = list(found.value or []) if found is not None and found.VR == "SQ" else []
            wanted = element.value[0] if element.value else None
            if wanted is not None and len(wanted):
                items = [_project(wanted, item) for item in items]
            else:
                items = [copy.deepcopy(item) for item in items]
            answer.add_new(element.tag, "SQ", DicomSequence(items))
        elif found is not None:
            answer.add(copy.deepcopy(found))
        else:
            answer.add_new(element.tag, element.VR, None)
    return answer


def build_worklist_response(request: WorklistRequest, item: Dataset) -> Dataset:
    """The response identifier for one matching item: every key of the request with this
    item's value (K.2.2.1.2), in ISO_IR 192 when any value is not ASCII."""
    answer = _project(request.identifier, item)
    if _has_non_ascii(answer):
        answer.SpecificCharacterSet = "ISO_IR 192"
    return answer
