"""identifier.py: request validation (PS3.4 C.4.1.2.1) and response building (C.4.1.1.3.2)."""

from __future__ import annotations

import copy
from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pynetdicom.dsutils import decode

from pacs.model.identifier import parse_request
from pacs.model.levels import PATIENT_ROOT, STUDY_ROOT
from pacs.model.responses import build_response, response_keys, select_items
from pacs.model.status import DicomError, FindStatus


def wire(dataset: Dataset) -> Dataset:
    """`dataset` as a C-FIND SCP receives it: encoded, then lazily decoded."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, dataset)
    return decode(BytesIO(buffer.getvalue()), False, True)


def request(**keys: object) -> Dataset:
    dataset = Dataset()
    for keyword, value in keys.items():
        setattr(dataset, keyword, value)
    return dataset


def refused_tag(identifier: Dataset, model=STUDY_ROOT, relational: bool = False,  # noqa: ANN001
                strict: bool = False) -> int:
    with pytest.raises(DicomError) as caught:
        parse_request(identifier, model, relational, strict=strict)
    assert caught.value.status == FindStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
    assert caught.value.error_comment
    assert caught.value.offending_element is not None
    return caught.value.offending_element


# DESIGN rule 5: the incoming identifier is never modified (its raw elements stay raw).
def test_request_identifier_is_never_modified() -> None:
    identifier = wire(request(QueryRetrieveLevel="STUDY", SpecificCharacterSet="ISO_IR 100",
                              PatientName="Müller*", StudyDate="20240101-"))
    before = [(element.tag, type(element).__name__, element.value)
              for element in identifier.elements()]
    parse_request(identifier, STUDY_ROOT)
    after = [(element.tag, type(element).__name__, element.value)
             for element in identifier.elements()]
    assert after == before
    assert all(kind == "RawDataElement" for _, kind, _ in after)


# PS3.4 C.2.2.2: values are decoded with the request's own Specific Character Set.
def test_values_decoded_with_request_character_set() -> None:
    identifier = wire(request(QueryRetrieveLevel="STUDY", SpecificCharacterSet="ISO_IR 100",
                              PatientName="Müller*"))
    parsed = parse_request(identifier, STUDY_ROOT)
    assert [value.values for value in parsed.values] == [("Müller*",)]


# PS3.4 C.4.1.1.3.1: Query/Retrieve Level missing.
def test_missing_level_refused() -> None:
    assert refused_tag(request(PatientName="")) == 0x00080052


# PS3.4 C.4.1.2.1: a strict hierarchy refuses a Required key above without relational queries.
def test_key_above_level_needs_relational_when_strict() -> None:
    identifier = request(QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2",
                         PatientName="Doe*")
    assert refused_tag(identifier, strict=True) == 0x00100010
    parsed = parse_request(identifier, STUDY_ROOT, relational=True, strict=True)
    assert {value.key.keyword for value in parsed.values} == {"StudyInstanceUID",
                                                              "PatientName"}


# PS3.4 C.4.1.3.2.1: relational queries may leave out the unique keys above.
def test_relational_allows_missing_unique_keys_above() -> None:
    identifier = request(QueryRetrieveLevel="IMAGE", SOPInstanceUID="")
    assert refused_tag(identifier, PATIENT_ROOT, strict=True) == 0x00100020
    assert parse_request(identifier, PATIENT_ROOT, relational=True,
                         strict=True).level == "IMAGE"


# PS3.4 C.4.1.2.1: a strict hierarchy refuses a key below the level, relational or not.
def test_key_below_level_refused_when_strict() -> None:
    identifier = request(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2",
                         SeriesInstanceUID="1.2.3")
    assert refused_tag(identifier, strict=True) == 0x0020000E
    assert refused_tag(identifier, relational=True, strict=True) == 0x0020000E


# Issue #11 (Orthanc's SERIES query): without a strict hierarchy a key of a level above is
# read as a relational query reads it (C.4.1.3.2): matched on its value, returned.
def test_lenient_key_above_is_matched_and_returned() -> None:
    identifier = request(QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2",
                         AccessionNumber="A1", PatientID="", SeriesInstanceUID="")
    parsed = parse_request(identifier, STUDY_ROOT)
    assert {(v.key.keyword, v.values) for v in parsed.values} == {
        ("StudyInstanceUID", ("1.2",)), ("AccessionNumber", ("A1",)), ("PatientID", ()),
        ("SeriesInstanceUID", ())}
    assert parsed.lenient == ("AccessionNumber", "PatientID")
    assert parsed.pending_status == FindStatus.PENDING
    answer = build_response(parsed, {"StudyInstanceUID": "1.2", "AccessionNumber": "A1",
                                     "PatientID": "P1", "SeriesInstanceUID": "1.2.3"}, "AE")
    assert (answer.AccessionNumber, answer.PatientID) == ("A1", "P1")


# Issue #11: a Unique Key above that is absent, empty or a list of UIDs is answered without a
# strict hierarchy, as relational queries answer it (C.4.1.3.2, C.2.2.2.2).
@pytest.mark.parametrize("study_uid", [None, "", ["1.2", "1.3"]], ids=["absent", "empty", "list"])
def test_lenient_unique_key_above_absent_empty_or_list(study_uid: object) -> None:
    identifier = request(QueryRetrieveLevel="SERIES", Modality="CT")
    if study_uid is not None:
        identifier.StudyInstanceUID = study_uid
    parsed = parse_request(identifier, STUDY_ROOT)
    assert parsed.lenient == ("StudyInstanceUID",)
    assert refused_tag(identifier, strict=True) == 0x0020000D


# Issue #11 (odil's get): a key below the level is validated, kept apart for matching the
# entity's descendants, and returned zero length with 0xFF01 (C.4.1.1.4).
def test_lenient_key_below_is_matched_on_descendants_and_returned_empty() -> None:
    identifier = request(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2",
                         SeriesInstanceUID="1.2.3", SOPClassesInStudy="", InstanceNumber="")
    parsed = parse_request(identifier, STUDY_ROOT)
    assert [v.key.keyword for v in parsed.values] == ["SOPClassesInStudy", "StudyInstanceUID"]
    assert [(v.key.keyword, v.values) for v in parsed.below] == [
        ("SeriesInstanceUID", ("1.2.3",))]
    assert parsed.lenient == ("SeriesInstanceUID", "InstanceNumber")
    assert parsed.pending_status == FindStatus.PENDING_OPTIONAL_KEYS_UNSUPPORTED
    answer = build_response(parsed, {"StudyInstanceUID": "1.2",
                                     "SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.2"}, "AE")
    assert answer["SeriesInstanceUID"].is_empty and answer["InstanceNumber"].is_empty
    assert "SeriesInstanceUID" not in [key.keyword for key in response_keys(parsed)]


# PS3.4 C.2.2.2.5.1: a key below is still validated: a malformed value is refused either way.
def test_lenient_key_below_with_malformed_value_is_refused() -> None:
    identifier = request(QueryRetrieveLevel="STUDY", SeriesDate="yesterday")
    assert refused_tag(identifier) == 0x00080021


# PS3.4 C.4.1.1.4: unsupported keys make the Pending status 0xFF01.
def test_unsupported_key_sets_ff01() -> None:
    parsed = parse_request(request(QueryRetrieveLevel="STUDY", PatientMotherBirthName=""),
                           STUDY_ROOT)
    assert parsed.pending_status == FindStatus.PENDING_OPTIONAL_KEYS_UNSUPPORTED
    assert parse_request(request(QueryRetrieveLevel="STUDY", PatientName=""),
                         STUDY_ROOT).pending_status == FindStatus.PENDING


# PS3.4 C.4.1.3.1.1: responses need the unique keys above even when not requested.
def test_response_keys_include_unique_keys_above() -> None:
    parsed = parse_request(request(QueryRetrieveLevel="IMAGE", InstanceNumber=""),
                           PATIENT_ROOT, relational=True)
    assert [key.keyword for key in response_keys(parsed)] == [
        "InstanceNumber", "PatientID", "StudyInstanceUID", "SeriesInstanceUID"]


# PS3.4 C.4.1.1.3.2: the response holds the requested keys, with the entity's values.
def test_build_response_requested_keys_only() -> None:
    parsed = parse_request(request(QueryRetrieveLevel="STUDY", PatientName="D*",
                                   ModalitiesInStudy="", StudyDate=""), STUDY_ROOT)
    answer = build_response(parsed, {"PatientName": "Doe^John", "ModalitiesInStudy": "CT\\MR",
                                     "StudyDate": "20240102", "StudyTime": "1015"}, "AE")
    assert {element.keyword for element in answer} == {
        "QueryRetrieveLevel", "RetrieveAETitle", "PatientName", "ModalitiesInStudy",
        "StudyDate"}
    assert list(answer.ModalitiesInStudy) == ["CT", "MR"]
    assert "SpecificCharacterSet" not in answer


# PS3.4 C.4.1.1.3.2: a non-ASCII value brings Specific Character Set ISO_IR 192.
def test_build_response_non_ascii_sets_character_set() -> None:
    parsed = parse_request(request(QueryRetrieveLevel="STUDY", StudyDescription=""),
                           STUDY_ROOT)
    answer = build_response(parsed, {"StudyDescription": "Schädel"}, "AE")
    assert answer.SpecificCharacterSet == "ISO_IR 192"


# PS3.4 C.2.2.2.6: matching items only, with only the requested attributes.
def test_select_items_trims_to_requested_attributes() -> None:
    wanted = Dataset()
    wanted.CodeValue = "A*"
    wanted.CodeMeaning = ""
    stored = []
    for code in ("A1", "B1"):
        item = Dataset()
        item.CodeValue, item.CodeMeaning, item.CodingSchemeDesignator = code, f"m{code}", "99"
        stored.append(item)
    selected = select_items(wanted, copy.deepcopy(stored), True)
    assert [(i.CodeValue, i.CodeMeaning, "CodingSchemeDesignator" in i) for i in selected] == [
        ("A1", "mA1", False)]
    assert select_items(None, stored, True) == stored
    assert select_items(Dataset(), stored, True) == stored


# PS3.4 C.2.2.2.6: a sequence key holds one item at most.
def test_sequence_with_two_items_refused() -> None:
    identifier = request(QueryRetrieveLevel="STUDY",
                         ProcedureCodeSequence=Sequence([Dataset(), Dataset()]))
    assert refused_tag(identifier) == 0x00081032
