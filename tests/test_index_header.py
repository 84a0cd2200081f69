"""What ingest indexes from raw element bytes equals what pydicom's decoding gives.

Ingest reads the attributes the index keeps from the bytes its structural walk passes
(services/columns.py, `IndexHeader.from_raw`) instead of decoding them with pydicom; these
tests hold it to pydicom's text, column by column, for real files and for the awkward values
PS3.5 6.2 allows (padding, multiple values, empty values, person name component groups,
numbers in every form, other character sets).
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import pytest
from pydicom.data import get_charset_files, get_testdata_files
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacs.archive.encoding import (
    MalformedDataset,
    check_structure,
    has_part10_prefix,
    read_header,
    read_layout,
)
from pacs.model.dictionary import IMAGE, PATIENT, SERIES, STORED_ATTRIBUTES, STUDY
from pacs.services.columns import INDEX_TAGS, IndexHeader, read_index_header
from tests.factory import make_dataset, write_dataset

LEVELS = (PATIENT, STUDY, SERIES, IMAGE)
# Writing the test files under ISO 2022 makes pydicom warn about the factory's UTF-8 names.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom.*")


def _both(path: Path) -> tuple[IndexHeader, IndexHeader]:
    """The header as ingest reads it, and as pydicom decodes it."""
    with open(path, "rb") as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own complaints about odd test files
        _, fast = read_index_header(handle)
        decoded = IndexHeader.from_dataset(read_header(handle, INDEX_TAGS))
    return fast, decoded


def _assert_same(fast: IndexHeader, decoded: IndexHeader) -> None:
    from pacs.model.dictionary import stored_attributes

    for level in LEVELS:
        assert fast.columns(stored_attributes(level)) == decoded.columns(stored_attributes(level))
    assert fast.uids == decoded.uids
    assert fast.timezone == decoded.timezone


def _readable(paths: list[str]) -> list[Path]:
    files = []
    for name in paths:
        path = Path(name)
        if path.is_file() and has_part10_prefix(path):
            files.append(path)
    return files


@pytest.mark.parametrize(
    "path", _readable(get_testdata_files() + get_charset_files()), ids=lambda p: p.name)
def test_pydicom_test_files_index_as_pydicom_decodes_them(path: Path) -> None:
    try:
        fast, decoded = _both(path)
    except MalformedDataset:
        # A deliberately broken file: the store pipeline's own check refuses it too, so it
        # is never indexed (PS3.5 7.1) and there is nothing to compare.
        with open(path, "rb") as handle, pytest.raises(MalformedDataset):
            check_structure(handle, read_layout(handle))
        return
    _assert_same(fast, decoded)


ENCODINGS = {
    "explicit-le": (ExplicitVRLittleEndian, "<", True),
    "implicit-le": (ImplicitVRLittleEndian, "<", False),
    "explicit-be": (ExplicitVRBigEndian, ">", True),
}
# Values PS3.5 6.2 allows or that real modalities send anyway; every VR gets every one.
AWKWARD = [
    b"", b" ", b"\x00", b"A", b"A ", b" A", b"A\x00", b"A\\B", b"A \\B ", b"A\\", b"\\A",
    b"A\\\\B", b"DOE^JOHN", b"DOE^JOHN=", b"DOE^JOHN==", b"=DOE", b"DOE ^JOHN =X= ",
    b"A=\\B==", b"12", b"+12", b"-3", b"007", b" 12", b"12 ", b"1\\2\\3", b"1.5", b"-1.50",
    b".5", b"1.", b"1e3", b"1E+02", b"1.2345678901234567", b"12345678901234567",
    b"1.5\\ 2", b"nan", b"abc", b"20240102", b"101500.123", b"+0100", b"+0100\\-0200",
    b"1.2.840.10008.5.1.4.1.1.2", b"1.2.3\x00", b"caf\xc3\xa9", b"Gr\xfc\xdf",
    b"\x1b$B;3ED\x1b(B", b"\x01\x02", b"\x00\x01\x00\x02", b"\x05\x00",
]
VR_ATTRIBUTE = {}
for _attribute in STORED_ATTRIBUTES.values():
    if _attribute.vr != "SQ":
        VR_ATTRIBUTE.setdefault(_attribute.vr, _attribute)
VR_ATTRIBUTE["TZ"] = STORED_ATTRIBUTES["TimezoneOffsetFromUTC"]


def _with_element(tmp_path: Path, syntax_name: str, charset: str, tag: int, vr: str,
                  value: bytes) -> Path:
    """A Part 10 file whose data set ends with one element of exactly these value bytes."""
    syntax, order, explicit = ENCODINGS[syntax_name]
    dataset = make_dataset(transfer_syntax=syntax)
    del dataset.PixelData
    dataset.SpecificCharacterSet = charset
    if tag in dataset:
        del dataset[tag]
    path = write_dataset(dataset, tmp_path / "file.dcm")
    head = struct.pack(order + "HH", tag >> 16, tag & 0xFFFF)
    if explicit:
        element = head + vr.encode() + struct.pack(order + "H", len(value)) + value
    else:
        element = head + struct.pack(order + "I", len(value)) + value
    with open(path, "ab") as handle:
        handle.write(element)
    return path


@pytest.mark.parametrize("charset", ["", "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87"])
@pytest.mark.parametrize("syntax_name", list(ENCODINGS))
@pytest.mark.parametrize("vr", sorted(VR_ATTRIBUTE))
def test_awkward_values_index_as_pydicom_decodes_them(
    tmp_path: Path, vr: str, syntax_name: str, charset: str
) -> None:
    attribute = VR_ATTRIBUTE[vr]
    for value in AWKWARD:
        path = _with_element(tmp_path, syntax_name, charset, attribute.tag, attribute.vr, value)
        try:
            with open(path, "rb") as handle:
                read_header(handle, INDEX_TAGS)[attribute.tag].value  # noqa: B018
        except Exception:  # noqa: BLE001 - what pydicom cannot decode is no reference
            continue  # (an odd-length US; an empty first PN group under ISO 2022)
        fast, decoded = _both(path)
        assert fast.texts.get(attribute.tag) == decoded.texts.get(attribute.tag), value
        _assert_same(fast, decoded)


def test_a_value_read_in_the_walk_needs_no_decoder(tmp_path: Path) -> None:
    # The common case takes no pydicom decoding: the texts are those of the raw bytes.
    path = write_dataset(make_dataset(PatientName="DOE^JANE", StudyDescription="CHEST "),
                         tmp_path / "file.dcm")
    fast, decoded = _both(path)
    assert fast.texts[STORED_ATTRIBUTES["PatientName"].tag] == "DOE^JANE"
    assert fast.texts[STORED_ATTRIBUTES["StudyDescription"].tag] == "CHEST"
    _assert_same(fast, decoded)


def _from_head(path: Path, head_length: int) -> tuple[object, IndexHeader | str]:
    """(layout, header) read with the file's first `head_length` bytes in hand, as the receive
    fast path hands them; the MalformedDataset text instead of the header when refused."""
    with open(path, "rb") as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        head = handle.read(head_length)
        try:
            return read_index_header(handle, head)
        except MalformedDataset as exc:
            return None, str(exc)


def _from_file(path: Path) -> tuple[object, IndexHeader | str]:
    return _from_head(path, 0)


@pytest.mark.parametrize("head_length", [64 * 1024, 300, 131])
@pytest.mark.parametrize(
    "path", _readable(get_testdata_files() + get_charset_files()), ids=lambda p: p.name)
def test_header_read_from_the_received_first_bytes_is_the_files(path: Path,
                                                                head_length: int) -> None:
    # Whatever part of the file the receiver kept (all of it, a cut inside the File Meta, an
    # element, or a value), the index reads what the whole file holds (PS3.10 7.1, PS3.5 7.1),
    # and refuses a broken file with the same words.
    layout, header = _from_head(path, head_length)
    file_layout, file_header = _from_file(path)
    assert layout == file_layout
    if isinstance(header, str):
        assert header == file_header
    else:
        assert isinstance(file_header, IndexHeader)
        _assert_same(header, file_header)
