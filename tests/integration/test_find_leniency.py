"""C-FIND identifiers outside the hierarchy, as real clients send them (issue #11), answered
without `query.strict_hierarchy` the way dcmqrscp and Orthanc answer them, or better.

- Orthanc 1.10 as a SCU (DicomControlUserConnection::Find) adds Patient ID, Study Instance
  UID, Accession Number (and Series Instance UID at IMAGE) to every query, empty unless the
  user gave them, and keeps the user's Patient and Study module keys at SERIES level.
- odil's `get` first sends a STUDY-level query for SOP Classes in Study with every key of its
  retrieve identifier, Series Instance UID included.
Both are reproduced here key for key, with DCMTK's findscu and pynetdicom.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pacs.dimse.server import RunningServer
from tests.integration.find_support import (
    BASIC_TEXT_SR,
    find,
    findscu,
    module_server,
    populate_core,
    query,
    series_uid,
    strict_hierarchy,
    study_uid,
)

find_server = module_server(populate_core)
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DOE1, DOE2 = study_uid("PAT-DOE", "DOE1"), study_uid("PAT-DOE", "DOE2")
DOE1_CT = series_uid("PAT-DOE", "DOE1", "DOE1-CT")
# What Orthanc adds to a SERIES query of its REST API (`/modalities/{id}/query`).
ORTHANC_SERIES = ("QueryRetrieveLevel=SERIES", "SpecificCharacterSet=ISO_IR 100",
                  "SeriesInstanceUID", "AccessionNumber", "PatientID")


# PS3.4 C.4.1.3.2 (read as a relational query): Orthanc's SERIES query with the study's
# Patient and Study keys gets each series with its study's and patient's values.
def test_orthanc_series_query_returns_the_study_keys_with_the_studys_values(
    find_server: RunningServer, tmp_path: Path
) -> None:
    result = findscu(find_server, tmp_path, "S", *ORTHANC_SERIES, f"StudyInstanceUID={DOE1}",
                     "PatientName", "StudyDescription", "Modality", "SeriesDescription")
    assert result.final == "Success"
    assert result.values("SeriesDescription") == ["DOE1-CT", "DOE1-SR"]
    for identifier in result.identifiers:
        assert (identifier.AccessionNumber, identifier.PatientID, str(identifier.PatientName),
                identifier.StudyDescription) == ("ACC-DOE1", "PAT-DOE", "Doe^John", "CT Chest")


# PS3.4 C.4.1.3.2: a value on a key of a level above is matched, as Orthanc matches it: the
# series of the study with this Accession Number, with Study Instance UID left empty.
def test_orthanc_series_query_by_accession_number_matches_the_study(
    find_server: RunningServer, tmp_path: Path
) -> None:
    result = findscu(find_server, tmp_path, "S", *ORTHANC_SERIES, "StudyInstanceUID",
                     "AccessionNumber=ACC-DOE2", "SeriesDescription")
    assert result.final == "Success"
    assert result.values("SeriesDescription") == ["DOE2-MR"]
    assert [i.StudyInstanceUID for i in result.identifiers] == [DOE2]


# PS3.4 C.4.1.3.2: an Accession Number of another study under the given study matches
# nothing (dcmqrscp would list the study's series with a contradicting value).
def test_key_above_with_another_studys_value_matches_nothing(
    find_server: RunningServer, tmp_path: Path
) -> None:
    result = findscu(find_server, tmp_path, "S", *ORTHANC_SERIES, f"StudyInstanceUID={DOE1}",
                     "AccessionNumber=ACC-DOE2", "SeriesDescription")
    assert (result.final, result.identifiers) == ("Success", [])


# PS3.4 C.4.1.3.2: Orthanc's IMAGE query (its "Series Instance UID", "Accession Number",
# "Patient ID" added) lists the series' instances.
def test_orthanc_image_query_lists_the_series_instances(
    find_server: RunningServer, tmp_path: Path
) -> None:
    result = findscu(find_server, tmp_path, "S", "QueryRetrieveLevel=IMAGE",
                     "SpecificCharacterSet=ISO_IR 100", "SOPInstanceUID",
                     f"SeriesInstanceUID={DOE1_CT}", "AccessionNumber", f"StudyInstanceUID={DOE1}",
                     "PatientID", "InstanceNumber")
    assert result.final == "Success"
    assert result.values("InstanceNumber") == ["1", "2"]
    assert {(i.AccessionNumber, i.PatientID) for i in result.identifiers} == {
        ("ACC-DOE1", "PAT-DOE")}


# PS3.4 C.4.1.1.4, C.4.1.1.3.2: odil's STUDY query for SOP Classes in Study, carrying the
# Series Instance UID it retrieves: the study, that key zero length, 0xFF01.
def test_odil_study_query_with_series_uid_answers_the_study(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=DOE1,
                                     SeriesInstanceUID=DOE1_CT, SOPClassesInStudy=""))
    assert result.status == 0x0000
    [(status, identifier)] = result.pending
    assert status == 0xFF01
    assert identifier.StudyInstanceUID == DOE1
    assert sorted(identifier.SOPClassesInStudy) == sorted([CT_IMAGE, BASIC_TEXT_SR])
    assert identifier["SeriesInstanceUID"].is_empty


# Issue #11: a key below with a value selects the entities that have such a descendant, so
# odil's query finds the study even without its Study Instance UID (dcmqrscp lists them all).
def test_series_uid_alone_at_study_level_finds_its_study(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyInstanceUID="",
                                     SeriesInstanceUID=DOE1_CT, SOPClassesInStudy=""))
    assert [i.StudyInstanceUID for i in result.identifiers] == [DOE1]


# Issue #11: Modality at STUDY level (a SERIES key) finds the studies with such a series;
# Orthanc finds none and dcmqrscp lists every study with a Modality of one of its series.
def test_modality_at_study_level_finds_studies_with_such_a_series(
    find_server: RunningServer,
) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", Modality="CT", StudyID=""))
    assert result.values("StudyID") == ["DOE1", "INJ1", "MUE1"]
    assert all(i["Modality"].is_empty for i in result.identifiers)
    assert {status for status, _ in result.pending} == {0xFF01}


# Issue #11: keys two levels below nest: a series of this modality holding this instance.
def test_keys_two_levels_below_match_one_series_and_its_instance(
    find_server: RunningServer,
) -> None:
    def studies(modality: str) -> list[str]:
        return find(find_server, query(QueryRetrieveLevel="STUDY", Modality=modality,
                                       InstanceNumber="2", StudyID="")).values("StudyID")

    assert studies("CT") == ["DOE1"]  # only DOE1-CT holds an instance number 2
    assert studies("SR") == []


# Issue #11 in Patient Root: a STUDY key at PATIENT level finds the patients with such a study.
def test_study_key_at_patient_level_finds_patients_with_such_a_study(
    find_server: RunningServer,
) -> None:
    result = find(find_server, query(QueryRetrieveLevel="PATIENT", PatientID="",
                                     StudyDate="20240102"), model="P")
    assert result.values("PatientID") == ["PAT-DOE", "PAT-MUE"]


# PS3.4 C.4.1.1.3.2: with only a key below, each response holds the level and that key empty.
def test_only_a_key_below_answers_one_response_per_matching_entity(
    find_server: RunningServer,
) -> None:
    result = find(find_server, query(QueryRetrieveLevel="PATIENT", StudyDate="20240102"),
                  model="P")
    assert result.status == 0x0000 and len(result.identifiers) == 2  # PAT-DOE, PAT-MUE
    for identifier in result.identifiers:
        assert {e.keyword for e in identifier} == {"QueryRetrieveLevel", "RetrieveAETitle",
                                                   "StudyDate"}


# PS3.4 C.4.1.3.2, Patient Root: Orthanc-like empty Patient ID above is Universal Matching.
def test_empty_patient_id_above_matches_every_patient(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", PatientID="",
                                     AccessionNumber="ACC-DOE*", StudyID=""), model="P")
    assert result.values("StudyID") == ["DOE1", "DOE2"]
    assert {i.PatientID for i in result.identifiers} == {"PAT-DOE"}


# Issue #11: the same identifiers, refused (0xA900) with query.strict_hierarchy = true.
@pytest.mark.parametrize("identifier, offending", [
    (query(QueryRetrieveLevel="SERIES", StudyInstanceUID=DOE1, AccessionNumber="",
           SeriesInstanceUID=""), 0x00080050),
    (query(QueryRetrieveLevel="STUDY", StudyInstanceUID=DOE1, SeriesInstanceUID=DOE1_CT,
           SOPClassesInStudy=""), 0x0020000E),
], ids=["orthanc-series", "odil-study"])
def test_client_identifiers_are_refused_when_strict(find_server: RunningServer,
                                                    identifier: object, offending: int) -> None:
    with strict_hierarchy(find_server):
        result = find(find_server, identifier)  # type: ignore[arg-type]
    assert (result.status, result.pending) == (0xA900, [])
    assert result.final is not None and result.final.OffendingElement == offending


# Logging: the one C-FIND line names the keys answered only because the hierarchy is lenient.
def test_log_line_names_the_lenient_keys(find_server: RunningServer,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pacs.operations"):
        find(find_server, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=DOE1,
                                SeriesInstanceUID=DOE1_CT, SOPClassesInStudy=""))
    [line] = [r.getMessage() for r in caplog.records if "operation=C-FIND" in r.getMessage()]
    assert "lenient=SeriesInstanceUID" in line and "status=0x0000" in line
