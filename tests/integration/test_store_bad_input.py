"""Bad C-STORE input over a real association: the precise status, and nothing else changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from pacs.dimse.server import RunningServer
from pacs.model.status import StoreStatus
from tests.conftest import scu
from tests.factory import CT_IMAGE_STORAGE, make_dataset, uid, write_dataset


def _send(server: RunningServer, path: Path) -> Dataset:
    """Send a file verbatim (command UIDs from its file meta) and return the response."""
    ae = scu(CT_IMAGE_STORAGE, transfer_syntaxes=[ExplicitVRLittleEndian])
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
