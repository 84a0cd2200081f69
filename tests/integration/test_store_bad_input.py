"""Bad C-STORE input over a real association: the precise status, and nothing else changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import ALL_TRANSFER_SYNTAXES

from pacs.dimse.server import RunningServer
from pacs.model.status import StoreStatus
from tests.conftest import scu
from tests.factory import (
    CT_IMAGE_STORAGE,
    ENCAPSULATED_SYNTAXES,
    NATIVE_SYNTAXES,
    make_dataset,
    uid,
    write_dataset,
    write_with_pixel_data,
)

# The encapsulated syntaxes a C-STORE can use: pynetdicom 3.0.4 does not negotiate them all
# (Encapsulated Uncompressed Explicit VR Little Endian; tests/test_encoding.py covers it).
NEGOTIABLE = {family: syntax for family, syntax in ENCAPSULATED_SYNTAXES.items()
              if syntax in ALL_TRANSFER_SYNTAXES}


def _send(server: RunningServer, path: Path, syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """Send a file verbatim (command UIDs from its file meta) and return the response."""
    ae = scu(CT_IMAGE_STORAGE, transfer_syntaxes=[syntax])
    host, port = server.address
    association = ae.associate(host, port, ae_title="MINIPACS")
    assert association.is_established
    try:
        return association.send_c_store(path)
    finally:
        association.release()


def _with_meta_instance(dataset: Dataset, meta_instance: str) -> Dataset:
    dataset.file_meta.MediaStorageSOPInstanceUID = meta_instance
    return dataset


@pytest.fixture
def stored_before(server: RunningServer, tmp_path: Path, chunked_send: None) -> str:
    """One good instance stored first: bad input must leave it intact."""
    good = write_dataset(make_dataset(patient_id="GOOD"), tmp_path / "good")
    assert _send(server, good).Status == 0x0000
    return str(make_dataset(patient_id="GOOD").SOPInstanceUID)


def _assert_only(server: RunningServer, good_uid: str) -> None:
    index, archive = server.services.index, server.services.archive
    assert index.stats().instances == 1
    record = index.get_instance(good_uid)
    assert record is not None and archive.checksum(record.file_path) == record.file_sha256
    assert list(archive.iter_files()) == [record.file_path]
    assert list(archive.iter_temp_files()) == []


# PS3.4 B.2.3: 0xA900 when the data set's SOP Instance UID is not the command's.
def test_command_uid_differing_from_data_set_is_a900(
    server: RunningServer, tmp_path: Path, stored_before: str
) -> None:
    dataset = _with_meta_instance(make_dataset(patient_id="BAD"), uid("another"))
    response = _send(server, write_dataset(dataset, tmp_path / "bad", meta_as_given=True))
    assert response.Status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert "differs from the command" in response.ErrorComment
    _assert_only(server, stored_before)


@pytest.mark.parametrize(
    ("label", "bad_uid"),
    [
        ("path traversal", "1.2.3/../../../etc"),
        ("slash", "1.2.3/4"),
        ("letters", "1.2.3.abc"),
        ("leading zero", "1.2.03"),
    ],
)
def test_invalid_sop_instance_uid_is_c000_and_never_a_path(
    server: RunningServer, tmp_path: Path, stored_before: str, label: str, bad_uid: str
) -> None:
    # PS3.5 9.1 UID syntax; PS3.4 B.2.3 0xC000 Cannot understand.
    dataset = make_dataset(patient_id="BAD", SOPInstanceUID=bad_uid)
    dataset.file_meta.MediaStorageSOPInstanceUID = bad_uid
    response = _send(server, write_dataset(dataset, tmp_path / "bad", name="bad.dcm"))
    assert response.Status == StoreStatus.CANNOT_UNDERSTAND, label
    assert "SOPInstanceUID" in response.ErrorComment
    _assert_only(server, stored_before)


def test_data_set_uid_longer_than_64_characters_is_refused(
    server: RunningServer, tmp_path: Path, stored_before: str
) -> None:
    # A command cannot carry a 65-character UID; the data set can, and must not be stored.
    dataset = _with_meta_instance(
        make_dataset(patient_id="BAD", SOPInstanceUID="1.2." + "3" * 70), uid("valid")
    )
    response = _send(server, write_dataset(dataset, tmp_path / "bad", meta_as_given=True))
    assert response.Status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    _assert_only(server, stored_before)


def test_invalid_study_uid_is_c000(
    server: RunningServer, tmp_path: Path, stored_before: str
) -> None:
    dataset = make_dataset(patient_id="BAD", StudyInstanceUID="1.2.x")
    response = _send(server, write_dataset(dataset, tmp_path / "bad"))
    assert response.Status == StoreStatus.CANNOT_UNDERSTAND
    _assert_only(server, stored_before)


def test_truncated_data_set_is_c000(
    server: RunningServer, tmp_path: Path, stored_before: str
) -> None:
    path = write_dataset(make_dataset(patient_id="BAD"), tmp_path / "bad")
    path.write_bytes(path.read_bytes()[:-40])
    response = _send(server, path)
    assert response.Status == StoreStatus.CANNOT_UNDERSTAND
    assert "declares" in response.ErrorComment
    _assert_only(server, stored_before)


def test_garbage_data_set_is_c000(
    server: RunningServer, tmp_path: Path, stored_before: str
) -> None:
    path = write_dataset(make_dataset(patient_id="BAD"), tmp_path / "bad")
    header = path.read_bytes()[:132]
    meta_length = int.from_bytes(path.read_bytes()[140:144], "little")
    meta = path.read_bytes()[132 : 144 + meta_length]
    path.write_bytes(header + meta + bytes(range(256)) * 3)
    response = _send(server, path)
    assert response.Status == StoreStatus.CANNOT_UNDERSTAND
    _assert_only(server, stored_before)


def test_unknown_private_tags_are_stored(
    server: RunningServer, tmp_path: Path, stored_before: str
) -> None:
    dataset = make_dataset(patient_id="PRIV")
    block = dataset.private_block(0x0011, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "vendor value")
    block.add_new(0x02, "OB", b"\x01\x02\x03\x04")
    response = _send(server, write_dataset(dataset, tmp_path / "priv"))
    assert response.Status == 0x0000
    assert server.services.index.get_instance(str(dataset.SOPInstanceUID)) is not None


# PS3.5 A.4, PS3.4 B.2.3 0xC000: encapsulated Pixel Data on a native context (odil's `store`
# of a JPEG file over Explicit VR Little Endian) is unreadable, refused, and leaves nothing.
@pytest.mark.parametrize("syntax", NATIVE_SYNTAXES)
def test_encapsulated_pixel_data_under_a_native_syntax_is_c000(
    server: RunningServer, tmp_path: Path, stored_before: str, syntax: str
) -> None:
    dataset = make_dataset(patient_id="ENCAPSULATED")
    path = write_with_pixel_data(dataset, tmp_path / "bad", syntax, encapsulated=True)
    response = _send(server, path, syntax)
    assert response.Status == StoreStatus.CANNOT_UNDERSTAND
    assert response.ErrorComment == f"encapsulated Pixel Data, native syntax {syntax}"
    _assert_only(server, stored_before)


# PS3.5 A.4, PS3.4 B.2.3 0xC000: native Pixel Data on an encapsulated context, in every
# family of encapsulated syntaxes, is refused the same way.
@pytest.mark.parametrize("syntax", NEGOTIABLE.values(), ids=NEGOTIABLE)
def test_native_pixel_data_under_an_encapsulated_syntax_is_c000(
    server: RunningServer, tmp_path: Path, stored_before: str, syntax: str
) -> None:
    dataset = make_dataset(patient_id="NATIVE")
    path = write_with_pixel_data(dataset, tmp_path / "bad", syntax, encapsulated=False)
    response = _send(server, path, syntax)
    assert response.Status == StoreStatus.CANNOT_UNDERSTAND
    assert response.ErrorComment == f"native Pixel Data, encapsulated syntax {syntax}"
    _assert_only(server, stored_before)


# PS3.4 B.2.3: the same files with Pixel Data encoded as their syntax says are stored.
@pytest.mark.parametrize("syntax", [*NATIVE_SYNTAXES, *NEGOTIABLE.values()])
def test_pixel_data_encoded_as_its_syntax_says_is_stored(
    server: RunningServer, tmp_path: Path, chunked_send: None, syntax: str
) -> None:
    dataset = make_dataset(patient_id="MATCHING")
    encapsulated = syntax in NEGOTIABLE.values()
    response = _send(server, write_with_pixel_data(dataset, tmp_path, syntax, encapsulated),
                     syntax)
    assert response.Status == 0x0000
    record = server.services.index.get_instance(str(dataset.SOPInstanceUID))
    assert record is not None and record.transfer_syntax_uid == syntax
