"""Operator tools: verify (and --repair), reindex, and a delete that survives a crash."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from pacs.archive.files import trash_root
from pacs.index.database import Index
from pacs.index.schema import Patient
from pacs.services import operations
from pacs.services.context import Services
from pacs.services.operations import (
    CHECKSUM_MISMATCH,
    INTERRUPTED_DELETE,
    MISSING_FILE,
    ORPHAN_FILE,
    TEMP_FILE,
    OperationError,
    Problem,
    delete,
    recover_deletes,
    select_for_delete,
)
from pacs.services.verify import VerifyReport, reindex, verify
from tests.factory import make_dataset, write_dataset


@pytest.fixture
def services(services_factory: Callable[..., Services], database_url: str) -> Services:
    """Services on each backend: the operator tools' SQL must work on both."""
    return services_factory(database_url)


def _store(services: Services, tmp_path: Path, **kwargs: object) -> str:
    """Store one instance through the ingest pipeline; returns its SOP Instance UID."""
    path = write_dataset(make_dataset(**kwargs), tmp_path / "in")
    staged = services.archive.new_temp_path()
    staged.write_bytes(path.read_bytes())
    return services.ingestor.store(staged).sop_instance_uid


def _study(services: Services, tmp_path: Path, count: int = 3, **kwargs: object) -> list[str]:
    return [_store(services, tmp_path, instance=n, **kwargs) for n in range(count)]


def _verify(services: Services, **kwargs: object) -> tuple[VerifyReport,
                                                            list[Problem]]:
    problems: list[Problem] = []
    report = verify(services.archive, services.index, on_problem=problems.append, **kwargs)
    return report, problems


def _path(services: Services, uid: str) -> Path:
    record = services.index.get_instance(uid)
    assert record is not None
    return services.archive.absolute(record.file_path)


class _Crash(BaseException):
    """Stands for SIGKILL: no `except Exception` clean-up runs."""


# --- verify ---------------------------------------------------------------------------------


def test_verify_of_a_consistent_archive_finds_nothing(services: Services, tmp_path: Path) -> None:
    _study(services, tmp_path)
    report, problems = _verify(services)
    assert (report.rows, report.files, problems, report.remaining) == (3, 3, [], 0)


def test_verify_reports_a_row_without_its_file(services: Services, tmp_path: Path) -> None:
    uid = _study(services, tmp_path)[0]
    _path(services, uid).unlink()
    report, problems = _verify(services)
    assert [(p.kind, p.uid) for p in problems] == [(MISSING_FILE, uid)]
    assert report.remaining == 1


def test_repair_keeps_a_row_without_file_unless_told_to_forget(
    services: Services, tmp_path: Path
) -> None:
    uid = _study(services, tmp_path)[0]
    _path(services, uid).unlink()
    report, _ = _verify(services, repair=True)
    assert report.remaining == 1 and services.index.get_instance(uid) is not None
    report, problems = _verify(services, repair=True, forget_missing=True)
    assert report.remaining == 0 and problems[0].repaired
    assert services.index.get_instance(uid) is None
    assert services.index.stats().instances == 2


def test_forgetting_the_last_instance_removes_its_parents(
    services: Services, tmp_path: Path
) -> None:
    _store(services, tmp_path, patient_id="STAYS")
    uid = _store(services, tmp_path, patient_id="LONE")
    _path(services, uid).unlink()
    _verify(services, repair=True, forget_missing=True)
    stats = services.index.stats()
    assert (stats.patients, stats.studies, stats.series, stats.instances) == (1, 1, 1, 1)


def test_forget_missing_refuses_when_the_archive_looks_unmounted(
    services: Services, tmp_path: Path
) -> None:
    uid = _store(services, tmp_path)
    _path(services, uid).unlink()
    with pytest.raises(OperationError, match="mounted"):
        _verify(services, repair=True, forget_missing=True)
    assert services.index.get_instance(uid) is not None


def test_verify_reports_changed_bytes_and_repair_never_touches_them(
    services: Services, tmp_path: Path
) -> None:
    uid = _study(services, tmp_path)[0]
    path = _path(services, uid)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size: only the checksum can tell
    path.write_bytes(bytes(data))
    quick, _ = _verify(services, checksums=False)
    assert quick.remaining == 0
    report, problems = _verify(services, repair=True)
    assert [(p.kind, p.repaired) for p in problems] == [(CHECKSUM_MISMATCH, False)]
    assert path.read_bytes() == bytes(data)


def test_quick_verify_notices_a_truncated_file(services: Services, tmp_path: Path) -> None:
    path = _path(services, _study(services, tmp_path)[0])
    path.write_bytes(path.read_bytes()[:-10])
    _, problems = _verify(services, checksums=False)
    assert [p.kind for p in problems] == [CHECKSUM_MISMATCH]


def test_repair_reindexes_a_file_without_row_keeping_its_bytes(
    services: Services, tmp_path: Path
) -> None:
    uid = _store(services, tmp_path, patient_name="Orphan^Olga")
    path = _path(services, uid)
    before = path.read_bytes()
    services.index.remove_instance(uid)
    report, problems = _verify(services)
    assert [p.kind for p in problems] == [ORPHAN_FILE] and report.remaining == 1
    report, problems = _verify(services, repair=True)
    assert problems[0].repaired and report.remaining == 0
    record = services.index.get_instance(uid)
    assert record is not None and services.archive.absolute(record.file_path) == path
    assert path.read_bytes() == before
    assert Patient.get().patient_name == "Orphan^Olga"
    assert _verify(services)[0].found == {}


def test_repair_moves_a_misplaced_file_to_its_uid_path(services: Services, tmp_path: Path) -> None:
    dataset = make_dataset(instance=5)
    source = write_dataset(dataset, tmp_path / "in")
    misplaced = services.archive.root / "elsewhere" / "x.dcm"
    misplaced.parent.mkdir()
    misplaced.write_bytes(source.read_bytes())
    _verify(services, repair=True)
    record = services.index.get_instance(str(dataset.SOPInstanceUID))
    assert record is not None
    assert record.file_path == services.archive.relative_path_for(
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID)
    assert not misplaced.exists()
    assert services.archive.absolute(record.file_path).read_bytes() == source.read_bytes()


def test_repair_removes_a_byte_identical_second_copy(services: Services, tmp_path: Path) -> None:
    path = _path(services, _store(services, tmp_path))
    copy = services.archive.root / "copy.dcm"
    copy.write_bytes(path.read_bytes())
    report, problems = _verify(services, repair=True)
    assert problems[0].kind == ORPHAN_FILE and problems[0].repaired
    assert not copy.exists() and path.exists()


def test_repair_leaves_a_differing_second_copy_for_the_operator(
    services: Services, tmp_path: Path
) -> None:
    _store(services, tmp_path)
    other = write_dataset(make_dataset(patient_name="Other^Name"), tmp_path / "other")
    copy = services.archive.root / "copy.dcm"
    copy.write_bytes(other.read_bytes())
    report, problems = _verify(services, repair=True)
    assert "differs" in problems[0].detail and not problems[0].repaired
    assert copy.exists() and report.remaining == 1


def test_repair_leaves_a_file_that_is_not_dicom(services: Services, tmp_path: Path) -> None:
    junk = services.archive.root / "ab" / "junk.dcm"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"not a DICOM file at all")
    report, problems = _verify(services, repair=True)
    assert problems[0].kind == ORPHAN_FILE and "not indexable" in problems[0].detail
    assert junk.exists() and report.remaining == 1


def test_repair_restores_a_missing_file_from_an_orphan_copy(
    services: Services, tmp_path: Path
) -> None:
    uid = _store(services, tmp_path)
    path = _path(services, uid)
    moved = services.archive.root / "moved.dcm"
    path.rename(moved)
    report, _ = _verify(services, repair=True)
    assert report.remaining == 0
    assert path.exists() and not moved.exists()
    assert _verify(services)[0].found == {}


def test_old_temp_files_are_problems_and_repair_removes_them(
    services: Services, tmp_path: Path
) -> None:
    old = services.archive.new_temp_path()
    young = services.archive.new_temp_path()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    report, problems = _verify(services, repair=True)
    assert [(p.kind, p.repaired) for p in problems] == [(TEMP_FILE, True)]
    assert not old.exists() and young.exists()  # a young one may be a store in flight


# --- delete -------------------------------------------------------------------------------------


def _delete(services: Services, level: str, key: str, issuer: str | None = None) -> None:
    records = select_for_delete(services.index, level, key, issuer)
    delete(services.archive, services.index, records)


def test_delete_of_an_instance_removes_its_file_and_row_only(
    services: Services, tmp_path: Path
) -> None:
    uids = _study(services, tmp_path)
    path = _path(services, uids[0])
    _delete(services, "instance", uids[0])
    assert services.index.get_instance(uids[0]) is None and not path.exists()
    assert services.index.stats().instances == 2
    assert not any(trash_root(services.archive).iterdir())
    assert _verify(services)[0].found == {}


@pytest.mark.parametrize("level", ["patient", "study", "series"])
def test_delete_of_a_level_removes_everything_under_it(
    services: Services, tmp_path: Path, level: str
) -> None:
    kept = _study(services, tmp_path, patient_id="KEEP")
    _study(services, tmp_path, patient_id="GONE")
    dataset = make_dataset(patient_id="GONE")
    key = {"patient": "GONE", "study": dataset.StudyInstanceUID,
           "series": dataset.SeriesInstanceUID}[level]
    _delete(services, level, str(key))
    stats = services.index.stats()
    assert (stats.patients, stats.studies, stats.series, stats.instances) == (1, 1, 1, 3)
    assert sorted(services.archive.iter_files()) == sorted(
        services.index.get_instance(u).file_path for u in kept)  # type: ignore[union-attr]


def test_delete_of_an_unknown_study_is_refused(services: Services) -> None:
    with pytest.raises(OperationError, match="no study"):
        select_for_delete(services.index, "study", "1.2.3")


def test_delete_of_a_patient_id_under_two_issuers_needs_the_issuer(
    services: Services, tmp_path: Path
) -> None:
    _store(services, tmp_path, patient_id="P", study="A", IssuerOfPatientID="HOSP_A")
    _store(services, tmp_path, patient_id="P", study="B", IssuerOfPatientID="HOSP_B")
    with pytest.raises(OperationError, match="several issuers"):
        select_for_delete(services.index, "patient", "P")
    _delete(services, "patient", "P", issuer="HOSP_A")
    assert [i for i in services.index.patient_issuers("P")] == ["HOSP_B"]


def test_crash_before_the_rows_go_restores_every_file(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uids = _study(services, tmp_path)
    records = select_for_delete(services.index, "series", services.index.get_instance(
        uids[0]).series_instance_uid)  # type: ignore[union-attr]

    def crash(*_: object) -> int:
        raise _Crash

    monkeypatch.setattr(Index, "delete_instances", crash)
    with pytest.raises(_Crash):
        delete(services.archive, services.index, records)
    monkeypatch.undo()
    assert not any(services.archive.iter_files())  # the files are in the trash, rows remain
    report, problems = _verify(services)
    assert INTERRUPTED_DELETE in report.found and report.remaining
    report, _ = _verify(services, repair=True)
    assert report.remaining == 0
    assert all(_path(services, uid).is_file() for uid in uids)
    assert _verify(services)[0].found == {}


def test_crash_after_the_rows_went_never_resurrects_the_files(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uids = _study(services, tmp_path)
    records = select_for_delete(services.index, "instance", uids[1])

    def crash(*_: object, **__: object) -> None:
        raise _Crash

    monkeypatch.setattr(operations.shutil, "rmtree", crash)
    with pytest.raises(_Crash):
        delete(services.archive, services.index, records)
    monkeypatch.undo()
    report, _ = _verify(services, repair=True)
    assert report.found[INTERRUPTED_DELETE] == 1 and report.remaining == 0
    assert services.index.get_instance(uids[1]) is None
    assert len(list(services.archive.iter_files())) == 2
    assert not any(trash_root(services.archive).iterdir())


def test_a_failed_row_delete_puts_the_files_back_at_once(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uids = _study(services, tmp_path)
    records = select_for_delete(services.index, "instance", uids[0])

    def fail(*_: object) -> int:
        raise RuntimeError("database went away")

    monkeypatch.setattr(Index, "delete_instances", fail)
    with pytest.raises(RuntimeError):
        delete(services.archive, services.index, records)
    assert _path(services, uids[0]).is_file()
    assert not any(trash_root(services.archive).iterdir())


def test_recovery_leaves_a_delete_in_progress_alone(services: Services, tmp_path: Path) -> None:
    uid = _store(services, tmp_path)
    relative = services.index.get_instance(uid).file_path  # type: ignore[union-attr]
    folder = trash_root(services.archive) / "inflight"
    (folder / "files" / relative).parent.mkdir(parents=True)
    (folder / "manifest").write_text(f"{uid}\t{relative}\n")
    services.archive.absolute(relative).rename(folder / "files" / relative)
    descriptor = os.open(folder.with_name("inflight.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        assert recover_deletes(services.archive, services.index) == 0
        assert folder.is_dir()
    finally:
        os.close(descriptor)
    assert recover_deletes(services.archive, services.index) == 1
    assert _path(services, uid).is_file()  # its row was still there: put back


# --- reindex ------------------------------------------------------------------------------------


def _snapshot(services: Services) -> list[tuple[str, str, str, str]]:
    return sorted((r.sop_instance_uid, r.file_path, r.file_sha256, r.study_instance_uid)
                  for r in services.index.iter_instances())


def test_reindex_rebuilds_an_empty_index_from_the_files(
    services_factory: Callable[..., Services], database_url: str, tmp_path: Path
) -> None:
    services = services_factory(database_url)
    _study(services, tmp_path, patient_id="A")
    _study(services, tmp_path, patient_id="B", count=2)
    before, stats = _snapshot(services), services.index.stats()
    for record in list(services.index.iter_instances()):
        services.index.remove_instance(record.sop_instance_uid)
    summary = reindex(services.archive, services.index)
    assert (summary.files, summary.indexed, summary.rejected) == (5, 5, [])
    assert _snapshot(services) == before and services.index.stats() == stats


def test_reindex_twice_changes_nothing(services: Services, tmp_path: Path) -> None:
    _study(services, tmp_path)
    reindex(services.archive, services.index)
    first, stats = _snapshot(services), services.index.stats()
    summary = reindex(services.archive, services.index)
    assert _snapshot(services) == first and services.index.stats() == stats
    assert (summary.moved, summary.rows_removed, summary.checksum_changed) == (0, 0, 0)


def test_reindex_drops_rows_whose_file_is_gone(services: Services, tmp_path: Path) -> None:
    uids = _study(services, tmp_path)
    lone = _store(services, tmp_path, patient_id="LONE")
    _path(services, uids[0]).unlink()
    _path(services, lone).unlink()
    summary = reindex(services.archive, services.index)
    assert summary.rows_removed == 2 and services.index.stats().patients == 1
    assert services.index.get_instance(uids[0]) is None


def test_reindex_restores_parent_attributes_from_the_files(
    services: Services, tmp_path: Path
) -> None:
    _study(services, tmp_path, patient_name="Right^Name")
    Patient.update(patient_name="Wrong^Name").execute()
    reindex(services.archive, services.index)
    assert Patient.get().patient_name == "Right^Name"


def test_reindex_takes_the_files_checksum_and_counts_it(
    services: Services, tmp_path: Path
) -> None:
    uid = _store(services, tmp_path)
    path = _path(services, uid)
    path.write_bytes(path.read_bytes()[:-2] + b"\x01\x02")
    summary = reindex(services.archive, services.index)
    assert summary.checksum_changed == 1
    assert services.index.get_instance(uid).file_sha256 == (  # type: ignore[union-attr]
        services.archive.checksum(services.index.get_instance(uid).file_path))  # type: ignore[union-attr]


def test_reindex_reports_files_it_cannot_index_and_keeps_them(
    services: Services, tmp_path: Path
) -> None:
    _store(services, tmp_path)
    truncated = services.archive.root / "truncated.dcm"
    good = write_dataset(make_dataset(instance=9), tmp_path / "t")
    truncated.write_bytes(good.read_bytes()[:-30])
    summary = reindex(services.archive, services.index)
    assert [path for path, _ in summary.rejected] == ["truncated.dcm"]
    assert truncated.exists() and services.index.stats().instances == 1


def test_reindex_refuses_to_empty_the_index_of_an_unmounted_archive(
    services: Services, tmp_path: Path
) -> None:
    uid = _store(services, tmp_path)
    _path(services, uid).unlink()
    with pytest.raises(OperationError, match="mounted"):
        reindex(services.archive, services.index)
    assert services.index.get_instance(uid) is not None


def test_reindex_follows_a_study_moved_to_another_patient(
    services: Services, tmp_path: Path
) -> None:
    uid = _store(services, tmp_path, patient_id="OLD")
    path = _path(services, uid)
    dataset = pydicom.dcmread(path)
    dataset.PatientID = "NEW"
    dataset.save_as(path)
    reindex(services.archive, services.index)
    assert [p.patient_id for p in Patient.select()] == ["NEW"]
    assert services.index.get_instance(uid).patient_id == "NEW"  # type: ignore[union-attr]


def test_paged_iteration_returns_every_row_once(services: Services, tmp_path: Path) -> None:
    uids = _study(services, tmp_path, count=7)
    paged = [r.sop_instance_uid for r in services.index.iter_instances_paged(batch_size=3)]
    assert sorted(paged) == sorted(uids)
