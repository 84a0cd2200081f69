"""Validating a C-MOVE / C-GET request identifier (PS3.4 C.4.2.2.1, C.4.3.2.1, C.2.2.2.2).

Room: model/, beside identifier.py (C-FIND). Imports model/levels, model/status and pydicom
only. Produces a `RetrieveRequest` of plain strings; never touches the index.

Rules applied:
- Query/Retrieve Level present and a level of the information model; else 0xA900.
- The unique key of the retrieve level present and not empty. At STUDY, SERIES and IMAGE it
  may be a list of UIDs (C.2.2.2.2), each valid; Patient ID is a single value.
- Unique keys of the levels above, when present with a value, narrow the set; each UID valid,
  Patient ID a single value. With `strict`, a list of UIDs there is refused too.
- Unique keys of the levels below: with `strict` they carry no value; otherwise a value is
  ignored (the level says what is retrieved, as dcmqrscp and Orthanc retrieve it) and named
  in `ignored` for the log. Keys other than unique keys are never used (C.4.2.2.1).
Any violation is `DicomError(IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)` with the Offending Element.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from pacs.model.levels import InformationModel, unique_keyword
from pacs.model.status import DicomError, RetrieveStatus

QUERY_RETRIEVE_LEVEL_TAG = 0x00080052
_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass(frozen=True)
class RetrieveRequest:
    """What a valid retrieve identifier asks for: a level and unique key values per level."""

    level: str
    patient_ids: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    sop_instance_uids: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # keys below the level whose values were not used

    def describe(self) -> str:
        """A short form for log lines: level and the keys given."""
        parts = [self.level]
        for name, values in (("patient", self.patient_ids), ("study", self.study_uids),
                             ("series", self.series_uids), ("image", self.sop_instance_uids)):
            if values:
                shown = ",".join(values[:3]) + (f",+{len(values) - 3}" if len(values) > 3 else "")
                parts.append(f"{name}={shown}")
        if self.ignored:
            parts.append(f"ignored={','.join(self.ignored)}")
        return " ".join(parts)


_FIELD_BY_KEYWORD = {
    "PatientID": "patient_ids",
    "StudyInstanceUID": "study_uids",
    "SeriesInstanceUID": "series_uids",
    "SOPInstanceUID": "sop_instance_uids",
}


def _refuse(comment: str, keyword: str) -> DicomError:
    return DicomError(RetrieveStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, comment,
                      offending_element=tag_for_keyword(keyword))


def _values(identifier: Dataset, keyword: str) -> list[str]:
    """The non-empty values of an attribute, [] when absent or zero-length."""
    try:
        element = identifier.get(keyword)
    except (ValueError, TypeError, KeyError) as exc:
        raise _refuse(f"{keyword} cannot be decoded: {exc}", keyword) from None
    if element is None:
        return []
    items = list(element) if isinstance(element, MultiValue) else [element]
    return [text for text in (str(item).strip() for item in items if item is not None) if text]


def _check_uids(values: list[str], keyword: str) -> None:
    for value in values:
        if len(value) > 64 or not UID(value).is_valid:
            raise _refuse(f"{keyword} {value[:40]!r} is not a valid UID", keyword)


def parse_retrieve_identifier(identifier: Dataset, model: InformationModel,
                              strict: bool = False) -> RetrieveRequest:
    """Validate a C-MOVE/C-GET identifier against `model`; the request it describes.

    `strict` (query.strict_hierarchy) refuses lists above and values below the level."""
    levels = _values(identifier, "QueryRetrieveLevel")
    if not levels:
        raise _refuse("QueryRetrieveLevel is missing", "QueryRetrieveLevel")
    level = levels[0].upper()
    if len(levels) > 1 or not model.has_level(level):
        raise _refuse(f"QueryRetrieveLevel {'/'.join(levels)[:20]!r} is not a level of "
                      f"{model.name}", "QueryRetrieveLevel")
    found: dict[str, tuple[str, ...]] = {}
    for above in model.levels_above(level):
        keyword = unique_keyword(above)
        values = _values(identifier, keyword)
        if len(values) > 1 and (strict or keyword not in _UID_KEYWORDS):
            raise _refuse(f"{keyword} above the retrieve level must be a single value", keyword)
        if keyword in _UID_KEYWORDS:
            _check_uids(values, keyword)
        found[keyword] = tuple(dict.fromkeys(values))
    keyword = unique_keyword(level)
    values = _values(identifier, keyword)
    if not values:
        raise _refuse(f"{keyword} is required at the {level} level", keyword)
    if keyword in _UID_KEYWORDS:
        _check_uids(values, keyword)
    elif len(values) > 1:
        raise _refuse(f"{keyword} must be a single value", keyword)
    found[keyword] = tuple(dict.fromkeys(values))
    ignored = []
    for below in model.levels_below(level):
        below_keyword = unique_keyword(below)
        if _values(identifier, below_keyword):
            if strict:
                raise _refuse(f"{below_keyword} is below the {level} retrieve level",
                              below_keyword)
            ignored.append(below_keyword)
    fields = {_FIELD_BY_KEYWORD[name]: value for name, value in found.items()}
    return RetrieveRequest(level=level, ignored=tuple(ignored), **fields)
