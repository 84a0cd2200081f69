"""services/find: the match cap (`query.max_results`, PS3.4 C.4.1.1.4 Out of Resources) read
from the statement that streams the matches, on both index backends."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydicom.dataset import Dataset

from pacs.index.records import IndexEntry
from pacs.model.levels import STUDY_ROOT
from pacs.model.status import DicomError, FindStatus
from pacs.services.context import Services
from pacs.services.find import READ_AHEAD, FindFeatures, start_search

ROOT = "1.2.826.0.1.3680043.10.1071.12"
STUDIES = READ_AHEAD + 20  # past the read-ahead: the cap is then counted


def _entries(studies: int) -> list[IndexEntry]:
    return [IndexEntry(
        patient={"patient_id": "P1", "patient_name": "Cap^Test"},
        study={"study_instance_uid": f"{ROOT}.{n}", "study_date": "20240101"},
        series={"series_instance_uid": f"{ROOT}.{n}.1", "modality": "CT"},
        instance={"sop_instance_uid": f"{ROOT}.{n}.1.1",
                  "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2"},
        transfer_syntax_uid="1.2.840.10008.1.2.1", file_path="none", file_size=0,
        file_sha256="") for n in range(studies)]


def _studies() -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientID = "P1"
    identifier.StudyInstanceUID = identifier.NumberOfStudyRelatedInstances = ""
    return identifier


def _found(services: Services) -> int:
    try:
        return sum(1 for _ in start_search(services, STUDY_ROOT, _studies(),
                                           FindFeatures()).responses())
    finally:
        services.index.end_operation()


@pytest.fixture
def loaded(services_factory: Callable[..., Services], database_url: str
           ) -> Callable[..., Services]:
    """Services on an index of STUDIES studies of one patient, with the cap given."""
    first = services_factory(database_url)
    first.index.add_instances_bulk(_entries(STUDIES))
    return lambda cap: services_factory(database_url, max_find_results=cap)


# PS3.4 C.4.1.1.4: as many matches as the cap are answered, all of them.
@pytest.mark.parametrize("cap", [10, STUDIES], ids=["read-ahead", "counted"])
def test_matches_up_to_the_cap_are_answered(loaded: Callable[..., Services], cap: int) -> None:
    services = loaded(cap)
    identifier = _studies()
    identifier.StudyInstanceUID = [f"{ROOT}.{n}" for n in range(min(cap, STUDIES))]
    search = start_search(services, STUDY_ROOT, identifier, FindFeatures())
    assert sum(1 for _ in search.responses()) == min(cap, STUDIES)
    services.index.end_operation()
    if cap == STUDIES:
        assert _found(services) == STUDIES


# PS3.4 C.4.1.1.4: one match more than the cap is refused with Out of Resources (0xA700),
# whether the excess shows in the rows read ahead or only in a count beyond them.
@pytest.mark.parametrize("cap", [10, READ_AHEAD, STUDIES - 1],
                         ids=["read-ahead", "at-read-ahead", "counted"])
def test_one_match_over_the_cap_is_refused(loaded: Callable[..., Services], cap: int) -> None:
    services = loaded(cap)
    with pytest.raises(DicomError) as refused:
        _found(services)
    assert refused.value.status == FindStatus.OUT_OF_RESOURCES


# The index answers a C-FIND within the read-ahead with one statement: the rows it streams
# are the ones that showed the cap holds (statements traced on SQLite's own connection).
def test_search_within_the_read_ahead_runs_one_select(
        services_factory: Callable[..., Services], sqlite_url: str) -> None:
    services = services_factory(sqlite_url)
    services.index.add_instances_bulk(_entries(3))
    statements: list[str] = []
    services.index.database.connection().set_trace_callback(statements.append)
    assert _found(services) == 3
    assert [s for s in statements if s.lstrip().upper().startswith("SELECT")] == [
        s for s in statements if "study_instance_uid" in s.lower()]
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
