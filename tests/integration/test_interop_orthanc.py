"""Orthanc 1.10 (Debian's package) driving minipacs through its REST API, on each index
backend: C-ECHO, C-STORE, C-FIND at study level with a name outside Latin-1 and at series
level, and C-MOVE of a series and of a study back to Orthanc itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest

from pacs.dimse.server import RunningServer
from tests.factory import make_file
from tests.integration.interop_support import Orthanc, orthanc_beside, populate


@pytest.fixture
def orthanc_and_server(server_factory: Callable[..., RunningServer],
                       tmp_path: Path) -> Iterator[tuple[Orthanc, RunningServer]]:
    """Orthanc with minipacs as its modality `minipacs`; minipacs with ORTHANC as a remote."""
    yield from orthanc_beside(server_factory, tmp_path / "orthanc")


# PS3.7 9.1.5: C-ECHO from Orthanc (POST /modalities/{id}/echo) succeeds.
def test_orthanc_echo_succeeds(orthanc_and_server: tuple[Orthanc, RunningServer]) -> None:
    orthanc, _ = orthanc_and_server
    assert orthanc.post("/modalities/minipacs/echo") in ({}, None)


# PS3.4 B.2.3: an instance Orthanc sends (POST /modalities/{id}/store) is stored and answered
# with Success; what minipacs holds is the data set Orthanc had.
def test_orthanc_store_is_stored(orthanc_and_server: tuple[Orthanc, RunningServer],
                                 tmp_path: Path) -> None:
    orthanc, server = orthanc_and_server
    source = make_file(tmp_path / "in", patient_id="ORTHANC-STORE",
                       patient_name="Łukasiewicz^Jan")
    answer = orthanc.post("/modalities/minipacs/store",
                          {"Resources": [orthanc.upload(source)], "Synchronous": True})
    assert answer["FailedInstancesCount"] == 0 and answer["InstancesCount"] == 1, answer
    sent = pydicom.dcmread(source)
    record = server.services.index.get_instance(sent.SOPInstanceUID)
    assert record is not None
    stored = pydicom.dcmread(server.services.archive.absolute(record.file_path))
    assert stored == sent


# PS3.4 C.4.1 and C.2.2.2.4: a study-level C-FIND with a wildcard on a name outside Latin-1
# (sent as ISO_IR 192) finds the study; the answer decodes to the stored name.
def test_orthanc_study_query_with_utf8_name(orthanc_and_server: tuple[Orthanc, RunningServer],
                                            tmp_path: Path) -> None:
    orthanc, server = orthanc_and_server
    archive = populate(server.services, tmp_path / "in")
    populate(server.services, tmp_path / "other", patient_id="INTEROP-2",
             patient_name="Kowalski^Jan")
    answers = orthanc.query("Study", {"PatientName": "Łukasiewicz*", "StudyInstanceUID": "",
                                      "NumberOfStudyRelatedInstances": ""})
    assert [(a["PatientName"], a["StudyInstanceUID"], a["NumberOfStudyRelatedInstances"])
            for a in answers] == [(archive.patient_name, archive.study, "5")]


# PS3.4 C.4.1: a series-level C-FIND answers one response per series of the study whose
# patient's name (outside Latin-1, with a wildcard) matches. Orthanc's series identifier
# carries keys of the levels above (Patient's Name here, Accession Number always): minipacs
# reads them as a relational query would (query.strict_hierarchy off, the default).
def test_orthanc_series_query_with_utf8_name(orthanc_and_server: tuple[Orthanc, RunningServer],
                                             tmp_path: Path) -> None:
    orthanc, server = orthanc_and_server
    archive = populate(server.services, tmp_path / "in")
    populate(server.services, tmp_path / "other", patient_id="INTEROP-2",
             patient_name="Kowalski^Jan")
    answers = orthanc.query("Series", {"PatientName": "Łukasiewicz*", "SeriesInstanceUID": "",
                                       "Modality": "", "NumberOfSeriesRelatedInstances": ""})
    assert sorted((a["SeriesInstanceUID"], a["Modality"], a["NumberOfSeriesRelatedInstances"])
                  for a in answers) == sorted([(archive.series_uid(0), "CT", "3"),
                                               (archive.series_uid(1), "MR", "2")])


# PS3.4 C.4.2: a C-MOVE of one series (POST /modalities/{id}/move) to Orthanc itself sends
# exactly that series' instances to Orthanc.
def test_orthanc_moves_a_series_to_itself(orthanc_and_server: tuple[Orthanc, RunningServer],
                                          tmp_path: Path) -> None:
    orthanc, server = orthanc_and_server
    archive = populate(server.services, tmp_path / "in")
    series = archive.series_uid(0)
    orthanc.post("/modalities/minipacs/move", {
        "Level": "Series", "TargetAet": Orthanc.AE_TITLE, "Synchronous": True,
        "Resources": [{"StudyInstanceUID": archive.study, "SeriesInstanceUID": series}]})
    assert orthanc.instance_uids() == archive.series[series]


# PS3.4 C.4.2: a study found by C-FIND and retrieved (POST /queries/{id}/retrieve) arrives
# whole in Orthanc.
def test_orthanc_retrieves_a_found_study(orthanc_and_server: tuple[Orthanc, RunningServer],
                                         tmp_path: Path) -> None:
    orthanc, server = orthanc_and_server
    archive = populate(server.services, tmp_path / "in")
    started = orthanc.post("/modalities/minipacs/query",
                           {"Level": "Study", "Query": {"PatientID": archive.patient_id}})
    orthanc.post(f"/queries/{started['ID']}/retrieve",
                 {"TargetAet": Orthanc.AE_TITLE, "Synchronous": True})
    assert orthanc.instance_uids() == archive.instances
