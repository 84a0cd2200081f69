"""responses.py: C-FIND response identifiers (PS3.4 C.4.1.1.3.2) encoded as pydicom encodes
them, in the transfer syntax the request came in (PS3.5 7.1, 6.2)."""

from __future__ import annotations

from io import BytesIO

import pydicom.config
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom.dsutils import decode, encode

from pacs.dimse.pynetdicom_internals.commands import encode_raw_dataset
from pacs.model.identifier import parse_request
from pacs.model.levels import STUDY_ROOT
from pacs.model.responses import ResponseBuilder, build_response

# Keys of one STUDY request, one per way a value is written: default repertoire (UI, DA, TM,
# CS, AE), the character set (PN, LO, SH), number strings (IS), computed values.
KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "ModalitiesInStudy", "PatientName",
        "PatientID", "StudyDescription", "AccessionNumber", "StudyID",
        "NumberOfStudyRelatedInstances", "ReferringPhysicianName", "PatientBirthDate")
SYNTAXES = ((True, True), (False, True), (False, False))  # implicit LE, explicit LE, BE
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_texts = st.one_of(_text, st.sampled_from(["", "7", "007", "1.0", "x", "CT\\MR", "Doe^J",
                                           "Müller^Jürgen", "山田^太郎", "20240101-",
                                           "1.2.840.3"]))


@pytest.fixture(autouse=True)
def lenient_pydicom() -> None:
    """As `pacs serve` configures pydicom (cli/main.configure_pydicom)."""
    modes = (pydicom.config.settings.reading_validation_mode,
             pydicom.config.settings.writing_validation_mode)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    yield
    (pydicom.config.settings.reading_validation_mode,
     pydicom.config.settings.writing_validation_mode) = modes


def received(implicit: bool, little: bool) -> Dataset:
    """A STUDY request as the C-FIND SCP decodes it from the wire in that transfer syntax."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for keyword in KEYS:
        setattr(identifier, keyword, "")
    identifier.PatientMotherBirthName = ""  # not supported: returned zero length
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, little
    write_dataset(buffer, identifier)
    return decode(BytesIO(buffer.getvalue()), implicit, little)


def pydicom_response(row: dict[str, str]) -> Dataset:
    """What pydicom builds from the same values through its own elements."""
    answer = Dataset()
    request = parse_request(received(False, True), STUDY_ROOT)
    for value in request.values:
        text = row.get(value.key.keyword, "")
        parts = text.split("\\") if text else []
        try:
            answer.add_new(value.key.tag, value.key.vr,
                           None if not parts else parts[0] if len(parts) == 1 else parts)
        except (ValueError, TypeError, OverflowError):
            answer.add_new(value.key.tag, value.key.vr, None)
    answer.PatientMotherBirthName = None
    answer.QueryRetrieveLevel = "STUDY"
    answer.RetrieveAETitle = "MINIPACS"
    if not all(text.isascii() for text in row.values()):
        answer.SpecificCharacterSet = "ISO_IR 192"
    return answer


# PS3.4 C.4.1.1.3.2 and PS3.5 6.2: each value is encoded as pydicom encodes it, in every
# transfer syntax (an element pydicom cannot encode fails the same way: no bytes).
@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({keyword: _texts for keyword in KEYS}))
@example({**dict.fromkeys(KEYS, ""), "StudyInstanceUID": "\r"})  # pydicom strips around UIDs
@example({**dict.fromkeys(KEYS, ""), "StudyInstanceUID": "1.2\\ 3"})
def test_response_bytes_are_pydicom_encoding_of_the_values(row: dict[str, str]) -> None:
    expected = pydicom_response(row)
    for implicit, little in SYNTAXES:
        request = parse_request(received(implicit, little), STUDY_ROOT)
        answer = ResponseBuilder(request, "MINIPACS").build(row)
        assert encode(answer, implicit, little) == encode(expected, implicit, little)


# PS3.5 7.1.2, 7.1.3: the send fast path writes a response of raw elements itself, in Implicit
# and Explicit VR Little Endian; the bytes are those pydicom writes (or it leaves it to pydicom).
@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({keyword: _texts for keyword in KEYS}))
def test_response_written_by_the_fast_path_is_pydicom_encoding(row: dict[str, str]) -> None:
    for implicit in (True, False):
        request = parse_request(received(implicit, True), STUDY_ROOT)
        answer = ResponseBuilder(request, "MINIPACS").build(row)
        written = encode_raw_dataset(answer, implicit)
        assert written is None or written == encode(answer, implicit, True)


# PS3.5 7.1.2, 7.1.3: an ASCII response is written by the fast path, not handed to pydicom.
@pytest.mark.parametrize("implicit", [True, False])
def test_ascii_response_is_written_by_the_fast_path(implicit: bool) -> None:
    request = parse_request(received(implicit, True), STUDY_ROOT)
    row = {"PatientName": "DOE^J", "NumberOfStudyRelatedInstances": "12",
           "ModalitiesInStudy": "CT\\MR", "StudyInstanceUID": "1.2.3", "StudyDate": "20240101"}
    answer = ResponseBuilder(request, "MINIPACS").build(row)
    assert encode_raw_dataset(answer, implicit) == encode(answer, implicit, True)


# PS3.5 7.1: the response goes back in the transfer syntax of the request; an identifier
# built here (QIDO-RS) reads back the same values whatever it is encoded in.
@pytest.mark.parametrize(("implicit", "little"), SYNTAXES)
def test_response_reads_back_in_every_transfer_syntax(implicit: bool, little: bool) -> None:
    request = parse_request(received(True, True), STUDY_ROOT)
    row = {"PatientName": "Müller^Jürgen", "NumberOfStudyRelatedInstances": "12",
           "ModalitiesInStudy": "CT\\MR", "StudyInstanceUID": "1.2.3"}
    decoded = decode(BytesIO(encode(build_response(request, row, "AE"), implicit, little)),
                     implicit, little)
    assert decoded.SpecificCharacterSet == "ISO_IR 192"
    assert str(decoded.PatientName) == "Müller^Jürgen"
    assert decoded.NumberOfStudyRelatedInstances == 12
    assert list(decoded.ModalitiesInStudy) == ["CT", "MR"]
    assert decoded.StudyInstanceUID == "1.2.3"


# PS3.4 C.4.1.1.3.2: a stored value its VR cannot hold is answered zero length.
def test_unreadable_number_string_answered_zero_length() -> None:
    request = parse_request(received(False, True), STUDY_ROOT)
    answer = build_response(request, {"NumberOfStudyRelatedInstances": "many"}, "AE")
    assert answer["NumberOfStudyRelatedInstances"].is_empty


# C.4.1.1.3.2: one response's elements are its own; building the next one changes nothing.
def test_responses_of_one_request_are_independent() -> None:
    builder = ResponseBuilder(parse_request(received(False, True), STUDY_ROOT), "AE")
    first = builder.build({"PatientName": "A^B"})
    first.PatientMotherBirthName = "X"
    second = builder.build({"PatientName": "C^D"})
    assert str(first.PatientName) == "A^B"
    assert second["PatientMotherBirthName"].is_empty
