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

from pacs.model.identifier import build_response, parse_request, response_keys, select_items
from pacs.model.levels import PATIENT_ROOT, STUDY_ROOT
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


def refused_tag(identifier: Dataset, model=STUDY_ROOT, relational: bool = False) -> int:  # noqa: ANN001
    with pytest.raises(DicomError) as caught:
        parse_request(identifier, model, relational)
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


# PS3.4 C.4.1.2.1: a Required key above the level is refused without relational queries.
def test_key_above_level_needs_relational() -> None:
    identifier = request(QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2",
                         PatientName="Doe*")
    assert refused_tag(identifier) == 0x00100010
    parsed = parse_request(identifier, STUDY_ROOT, relational=True)
    assert {value.key.keyword for value in parsed.values} == {"StudyInstanceUID",
                                                              "PatientName"}


# PS3.4 C.4.1.3.2.1: relational queries may leave out the unique keys above.
def test_relational_allows_missing_unique_keys_above() -> None:
    identifier = request(QueryRetrieveLevel="IMAGE", SOPInstanceUID="")
    assert refused_tag(identifier, PATIENT_ROOT) == 0x00100020
    assert parse_request(identifier, PATIENT_ROOT, relational=True).level == "IMAGE"


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
