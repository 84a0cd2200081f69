"""The store pipeline: check -> write -> index, and nothing left behind on failure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacs.index.schema import Instance, Patient, Study
from pacs.model.status import DicomError, StoreStatus
from pacs.services.context import Services
from tests.factory import make_dataset, uid, write_dataset


def _stage(services: Services, dataset: Dataset, tmp_path: Path) -> Path:
    """A file in the archive's temp folder, as C-STORE's streamed receive leaves it."""
    path = write_dataset(dataset, tmp_path / "in")
    staged = services.archive.new_temp_path()
    staged.write_bytes(path.read_bytes())
    return staged


def _store(services: Services, dataset: Dataset, tmp_path: Path, **kwargs: str):  # noqa: ANN202
    return services.ingestor.store(_stage(services, dataset, tmp_path), **kwargs)


def _archive_files(services: Services) -> list[str]:
    return list(services.archive.iter_files())


def test_store_indexes_every_level(services: Services, tmp_path: Path) -> None:
    result = _store(services, make_dataset(), tmp_path)
    assert result.outcome == "stored"
    assert services.index.stats().instances == 1
    assert _archive_files(services) == [result.file_path]


def test_store_keeps_names_as_unicode_from_iso_ir_100(services: Services, tmp_path: Path) -> None:
    # PS3.5 6.1: values are decoded with the data set's Specific Character Set.
    dataset = make_dataset(patient_name="Gérard^Ångström", SpecificCharacterSet="ISO_IR 100")
    _store(services, dataset, tmp_path)
    patient = Patient.get()
    assert patient.patient_name == "Gérard^Ångström"
    assert patient.patient_name_folded == "gérard^ångström"


def test_store_keeps_names_as_unicode_from_iso_ir_192(services: Services, tmp_path: Path) -> None:
    _store(services, make_dataset(patient_name="山田^太郎=やまだ^たろう"), tmp_path)
    assert Patient.get().patient_name == "山田^太郎=やまだ^たろう"


def test_store_normalizes_study_time_for_range_matching(
    services: Services, tmp_path: Path
) -> None:
    _store(services, make_dataset(StudyTime="0930"), tmp_path)
    study = Study.get()
    assert (study.study_time, study.study_time_norm) == ("0930", "093000.000000")


def test_command_instance_uid_differing_from_data_set_is_a900(
    services: Services, tmp_path: Path
) -> None:
    # PS3.4 B.2.3: 0xA900 Data Set does not match SOP Class; nothing is kept.
    with pytest.raises(DicomError) as caught:
        _store(services, make_dataset(), tmp_path, expected_sop_instance_uid=uid("other"))
    assert caught.value.status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert _archive_files(services) == [] and services.index.stats().instances == 0


def test_command_class_uid_differing_from_data_set_is_a900(
    services: Services, tmp_path: Path
) -> None:
    with pytest.raises(DicomError) as caught:
        _store(services, make_dataset(), tmp_path,
               expected_sop_class_uid="1.2.840.10008.5.1.4.1.1.4")
    assert caught.value.status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("StudyInstanceUID", None),
        ("SeriesInstanceUID", None),
        ("StudyInstanceUID", "1.2.abc"),
        ("SeriesInstanceUID", "1.2.3.04"),
        ("SOPInstanceUID", "1." + "9" * 70),
    ],
)
def test_missing_or_invalid_uid_is_c000_and_leaves_nothing(
    services: Services, tmp_path: Path, keyword: str, value: str | None
) -> None:
    # PS3.4 B.2.3: 0xC000 Cannot understand; PS3.5 9.1: UID syntax.
    with pytest.raises(DicomError) as caught:
        _store(services, make_dataset(**{keyword: value}), tmp_path)
    assert caught.value.status == StoreStatus.CANNOT_UNDERSTAND
    assert keyword in caught.value.comment
    assert _archive_files(services) == [] and services.index.stats().instances == 0


def test_truncated_data_set_is_c000(services: Services, tmp_path: Path) -> None:
    staged = _stage(services, make_dataset(), tmp_path)
    staged.write_bytes(staged.read_bytes()[:-7])
    with pytest.raises(DicomError) as caught:
        services.ingestor.store(staged)
    assert caught.value.status == StoreStatus.CANNOT_UNDERSTAND
    assert _archive_files(services) == []


def test_duplicate_keep_answers_success_and_keeps_first_copy(
    services: Services, tmp_path: Path
) -> None:
    first = _store(services, make_dataset(StudyDescription="first"), tmp_path)
    second = _store(services, make_dataset(StudyDescription="second"), tmp_path)
    assert second.outcome == "duplicate"
    assert Instance.select().count() == 1
    stored = services.archive.absolute(first.file_path).read_bytes()
    assert b"first" in stored and b"second" not in stored


def test_duplicate_replace_swaps_file_and_row(
    services_factory: Callable[..., Services], sqlite_url: str, tmp_path: Path
) -> None:
    services = services_factory(sqlite_url, duplicates="replace")
    _store(services, make_dataset(StudyDescription="first"), tmp_path)
    second = _store(services, make_dataset(StudyDescription="second", Rows=4), tmp_path)
    assert second.outcome == "replaced"
    assert Instance.select().count() == 1
    assert Instance.get().rows == "4"
    assert b"second" in services.archive.absolute(second.file_path).read_bytes()
    assert len(_archive_files(services)) == 1


def test_duplicate_reject_is_0111(
    services_factory: Callable[..., Services], sqlite_url: str, tmp_path: Path
) -> None:
    services = services_factory(sqlite_url, duplicates="reject")
    _store(services, make_dataset(), tmp_path)
    with pytest.raises(DicomError) as caught:
        _store(services, make_dataset(), tmp_path)
    assert caught.value.status == StoreStatus.DUPLICATE_SOP_INSTANCE
    assert Instance.select().count() == 1


def test_index_failure_removes_the_file_and_is_a700(services: Services, tmp_path: Path) -> None:
    # DESIGN rule 2: if indexing fails, remove the file and answer a failure, never Success.
    _store(services, make_dataset(instance=1), tmp_path)
    services.index.database.execute_sql("DROP TABLE instance")
    with pytest.raises(DicomError) as caught:
        _store(services, make_dataset(instance=2), tmp_path)
    assert caught.value.status == StoreStatus.OUT_OF_RESOURCES
    assert len(_archive_files(services)) == 1
