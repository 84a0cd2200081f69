"""C-FIND through DCMTK's findscu, Patient Root (-P) and Study Root (-S), on each backend.

Responses are extracted to files (-X) and read back, so the assertions check exactly the
identifiers DCMTK received.
"""

from __future__ import annotations

from pathlib import Path

from pacs.dimse.server import RunningServer
from tests.integration.find_support import (
    findscu,
    module_server,
    populate_core,
    strict_hierarchy,
    study_uid,
)

find_server = module_server(populate_core)


# PS3.4 C.6.2.1.2 with DCMTK: Study Root STUDY level, patient name wildcard.
def test_findscu_study_root_patient_name_wildcard(find_server: RunningServer,
                                                  tmp_path: Path) -> None:
    result = findscu(find_server, tmp_path, "S", "QueryRetrieveLevel=STUDY",
                     "PatientName=Doe*", "StudyID", "ModalitiesInStudy")
    assert result.final == "Success"
    assert result.values("StudyID") == ["DOE1", "DOE2", "JANE1"]
    doe1 = next(i for i in result.identifiers if i.StudyID == "DOE1")
    assert list(doe1.ModalitiesInStudy) == ["CT", "SR"]
    assert {element.keyword for element in doe1} == {
        "QueryRetrieveLevel", "RetrieveAETitle", "PatientName", "StudyID", "ModalitiesInStudy"}


# PS3.4 C.6.1.1.2 with DCMTK: Patient Root PATIENT level, one response per patient.
def test_findscu_patient_root_patient_level(find_server: RunningServer, tmp_path: Path) -> None:
    result = findscu(find_server, tmp_path, "P", "QueryRetrieveLevel=PATIENT", "PatientID",
                     "PatientName=*o*", "NumberOfPatientRelatedStudies")
    assert result.final == "Success"
    assert result.values("PatientID") == ["PAT-DOE", "PAT-DROP", "PAT-INJ%_", "PAT-JANE"]
    counts = {i.PatientID: int(i.NumberOfPatientRelatedStudies) for i in result.identifiers}
    assert counts["PAT-DOE"] == 2


# PS3.4 C.6.1.1.3 with DCMTK: Patient Root STUDY level under one Patient ID.
def test_findscu_patient_root_study_level(find_server: RunningServer, tmp_path: Path) -> None:
    result = findscu(find_server, tmp_path, "P", "QueryRetrieveLevel=STUDY",
                     "PatientID=PAT-DOE", "StudyInstanceUID", "StudyDate=20240101-")
    assert result.final == "Success"
    assert result.values("StudyInstanceUID") == sorted(
        [study_uid("PAT-DOE", "DOE1"), study_uid("PAT-DOE", "DOE2")])


# PS3.4 C.4.1.2.1 with DCMTK, query.strict_hierarchy = true: a PATIENT key at STUDY level
# in Patient Root is refused.
def test_findscu_patient_root_refuses_patient_key_at_study_level_when_strict(
    find_server: RunningServer, tmp_path: Path
) -> None:
    with strict_hierarchy(find_server):
        result = findscu(find_server, tmp_path, "P", "QueryRetrieveLevel=STUDY",
                         "PatientName=Doe*")
    assert "DataSetDoesNotMatchSOPClass" in result.final
    assert result.identifiers == []


# PS3.4 C.6.2.1.3 with DCMTK: Study Root SERIES level with a range on Series Number.
def test_findscu_study_root_series_level(find_server: RunningServer, tmp_path: Path) -> None:
    result = findscu(find_server, tmp_path, "S", "QueryRetrieveLevel=SERIES",
                     f"StudyInstanceUID={study_uid('PAT-DOE', 'DOE1')}", "Modality",
                     "SeriesDescription", "NumberOfSeriesRelatedInstances")
    assert result.values("SeriesDescription") == ["DOE1-CT", "DOE1-SR"]
    assert sorted(int(i.NumberOfSeriesRelatedInstances) for i in result.identifiers) == [1, 2]


# PS3.4 C.4.1.1.3.2 with DCMTK: UTF-8 request, answer in ISO_IR 192.
def test_findscu_utf8_request_and_answer(find_server: RunningServer, tmp_path: Path) -> None:
    result = findscu(find_server, tmp_path, "S", "QueryRetrieveLevel=STUDY",
                     "SpecificCharacterSet=ISO_IR 192", "PatientName=Mü*", "StudyDescription")
    assert [str(i.PatientName) for i in result.identifiers] == ["Müller^Jürgen"]
    assert result.identifiers[0].SpecificCharacterSet == "ISO_IR 192"
    assert result.identifiers[0].StudyDescription == "Schädel"


# PS3.4 C.2.2.2.4 with DCMTK: "%" and "_" in a request are literal.
def test_findscu_sql_wildcards_literal(find_server: RunningServer, tmp_path: Path) -> None:
    result = findscu(find_server, tmp_path, "S", "QueryRetrieveLevel=STUDY",
                     "AccessionNumber=ACC_1%", "StudyID")
    assert result.values("StudyID") == ["INJ1"]
