"""The archive: UID-hashed paths, durable placement, nothing outside the root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pacs.archive.files import Archive, ArchiveError, is_valid_uid


@pytest.mark.parametrize(
    "uid",
    ["", "../../etc/passwd", "1.2/3", "1.2.abc", "1." + "2" * 70, "1.02.3", "1..2", "1.2.",
     "1.2.3\n", ".1.2", "1.2.3 ", "\u0661.2"],
)
def test_invalid_uid_never_becomes_a_path(tmp_path: Path, uid: str) -> None:
    archive = Archive(tmp_path)
    with pytest.raises(ValueError, match="not a valid UID"):
        archive.relative_path_for("1.2.3", "1.2.4", uid)


def test_valid_uids_are_accepted() -> None:
    # PS3.5 9.1: digits and dots, a component is 0 or starts with 1-9, at most 64 characters.
    assert is_valid_uid("1.2.840.10008.5.1.4.1.1.2")
    assert is_valid_uid("0.0.0")
    assert is_valid_uid("1." + "2" * 62)
    assert not is_valid_uid("1." + "2" * 63)
    assert not is_valid_uid("1.2.840.abc")


def test_path_is_derived_from_hashes_not_uids(tmp_path: Path) -> None:
    relative = Archive(tmp_path).relative_path_for("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert "1.2.3" not in relative
    assert relative.endswith(".dcm") and relative.count("/") == 3


def test_absolute_refuses_paths_outside_root(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "root")
    with pytest.raises(ArchiveError):
        archive.absolute("../outside.dcm")
    with pytest.raises(ArchiveError):
        archive.absolute("/etc/passwd")


def test_absolute_of_a_hashed_path_is_under_the_root(tmp_path: Path) -> None:
    # DESIGN rule 6: a hashed path is taken as is (no resolve per store), and is in the root.
    archive = Archive(tmp_path / "root")
    relative = archive.relative_path_for("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert archive.absolute(relative) == (archive.root / relative).resolve()
    with pytest.raises(ArchiveError):
        archive.absolute(relative.replace(relative[:2], "..", 1))


def test_place_moves_file_and_reports_size_and_checksum(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "root")
    source = archive.new_temp_path()
    source.write_bytes(b"x" * 1000)
    stored = archive.place(source, "aa/bb/cc/dd.dcm")
    assert not source.exists()
    assert archive.absolute("aa/bb/cc/dd.dcm").read_bytes() == b"x" * 1000
    assert stored.size == 1000
    assert stored.sha256 == archive.checksum("aa/bb/cc/dd.dcm")


def test_place_remakes_a_folder_removed_since_an_earlier_store(tmp_path: Path) -> None:
    # The archive remembers folders it made; one an operator removed must not lose a store.
    archive = Archive(tmp_path / "root")
    first = archive.new_temp_path()
    first.write_bytes(b"1")
    archive.place(first, "aa/bb/cc/first.dcm")
    shutil.rmtree(archive.absolute("aa/bb"))
    second = archive.new_temp_path()
    second.write_bytes(b"22")
    stored = archive.place(second, "aa/bb/cc/second.dcm")
    assert archive.absolute("aa/bb/cc/second.dcm").read_bytes() == b"22"
    assert stored.size == 2


def test_place_copies_across_file_systems(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a file system other than the archive's")
    archive = Archive(tmp_path / "root")
    source = shm / f"minipacs-test-{os.getpid()}.dcm"
    source.write_bytes(b"y" * 10)
    try:
        stored = archive.place(source, "aa/bb/cc/copied.dcm")
        assert archive.absolute("aa/bb/cc/copied.dcm").read_bytes() == b"y" * 10
        assert stored.size == 10
        assert list(archive.iter_temp_files()) == []
    finally:
        source.unlink(missing_ok=True)


def test_iter_files_skips_temp_files(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "root")
    archive.new_temp_path().write_bytes(b"partial")
    staged = archive.new_temp_path()
    staged.write_bytes(b"whole")
    archive.place(staged, "aa/bb/cc/ee.dcm")
    assert list(archive.iter_files()) == ["aa/bb/cc/ee.dcm"]
    assert len(list(archive.iter_temp_files())) == 1
