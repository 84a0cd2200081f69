"""Orthanc 1.10 with Debian's DICOMweb plugin as a DICOMweb client of minipacs, on SQLite and
PostgreSQL: Orthanc stores into minipacs by STOW-RS (`/dicom-web/servers/minipacs/stow`), finds
through QIDO-RS (`…/qido`), reads through WADO-RS (`…/get`) and pulls studies back
(`…/retrieve`), every file byte for byte as it was sent.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.conftest import BACKENDS
from tests.factory import make_file, uid
from tests.web.orthanc_support import SERVER, OrthancClient
from tests.web.support import Faces, start_faces, stop_faces

# pydicom's files in the syntaxes a client meets most: uncompressed (explicit and implicit),
# JPEG baseline and RLE; each given its own UIDs.
TESTDATA = ("CT_small.dcm", "MR_small_implicit.dcm", "SC_rgb_jpeg_dcmtk.dcm", "rtdose_rle.dcm")


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Faces, OrthancClient]]:
    """An empty minipacs (both faces) and an Orthanc that knows it as a DICOMweb server."""
    url = f"sqlite:///{tmp_path}/index.sqlite" if request.param == "sqlite" \
        else request.getfixturevalue("postgres_server").new_database()
    faces = start_faces(tmp_path / "minipacs", url, None)
    orthanc = None
    try:
        orthanc = OrthancClient(tmp_path / "orthanc", faces.root)
        yield faces, orthanc
    finally:
        if orthanc is not None:
            orthanc.stop()
        stop_faces(faces)


def sample_files(folder: Path) -> dict[str, Path]:
    """Files to exchange, by SOP Instance UID: a three-instance study and pydicom's files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for number in range(1, 4):
        path = make_file(folder, patient_id="P-ORTHANC", study="ORTHANC", instance=number,
                         rows=32, columns=32)
        files[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    for name in TESTDATA:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(get_testdata_file(name))
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = uid("o", name)
        dataset.StudyInstanceUID = uid("o-study", name)
        dataset.SeriesInstanceUID = uid("o-series", name)
        path = folder / name
        dataset.save_as(path, enforce_file_format=True)
        files[str(dataset.SOPInstanceUID)] = path
    return files


def stow_through_orthanc(orthanc: OrthancClient, files: dict[str, Path]) -> dict[str, str]:
    """Upload the files to Orthanc and have it send them all to minipacs by STOW-RS."""
    ids = [orthanc.upload(path) for path in files.values()]
    answer = orthanc.rest("POST", f"/dicom-web/servers/{SERVER}/stow",
                          {"Resources": ids, "Synchronous": True})
    assert int(answer["InstancesCount"]) == len(files), answer
    return answer  # type: ignore[no-any-return]


def shown(item: dict[str, Any], tag: str) -> str:
    """A value as Orthanc's `/qido` shows it: its own JSON, one value as a string. (It drops
    IS and other numbers, which DICOM JSON sends as JSON numbers, PS3.18 F.2.3.1.)"""
    return str(item[tag]["Value"])


def archived(faces: Faces, sop_instance_uid: str) -> bytes:
    record = faces.services.index.get_instance(sop_instance_uid)
    assert record is not None, f"{sop_instance_uid} is not in minipacs"
    return faces.services.archive.absolute(record.file_path).read_bytes()


# PS3.18 10.5 (Store Instances): Orthanc's STOW-RS client stores every instance in minipacs,
# each file kept byte for byte as Orthanc sent it.
def test_orthanc_stores_into_minipacs_by_stow(pair: tuple[Faces, OrthancClient],
                                              tmp_path: Path) -> None:
    faces, orthanc = pair
    files = sample_files(tmp_path / "in")
    stow_through_orthanc(orthanc, files)
    for sop_instance_uid, path in files.items():
        assert archived(faces, sop_instance_uid) == path.read_bytes(), path.name


# PS3.18 10.6 (Search): Orthanc's QIDO-RS client finds the studies and their series in minipacs.
def test_orthanc_finds_studies_and_series_by_qido(pair: tuple[Faces, OrthancClient],
                                                  tmp_path: Path) -> None:
    faces, orthanc = pair
    stow_through_orthanc(orthanc, sample_files(tmp_path / "in"))
    studies = orthanc.rest("POST", f"/dicom-web/servers/{SERVER}/qido", {
        "Uri": "/studies", "Arguments": {"PatientName": "doe*", "StudyDate": "20240101-"}})
    (study,) = studies
    assert shown(study, "0020000D") == uid("P-ORTHANC", "ORTHANC")
    assert shown(study, "00100020") == "P-ORTHANC"
    assert shown(study, "00080061") == "CT"
    series = orthanc.rest("POST", f"/dicom-web/servers/{SERVER}/qido", {
        "Uri": f"/studies/{uid('P-ORTHANC', 'ORTHANC')}/series"})
    assert [shown(s, "0020000E") for s in series] == [uid("P-ORTHANC", "ORTHANC", "SE1")]


# PS3.18 10.4.1.1.4 (Retrieve metadata) through Orthanc's generic WADO-RS proxy (`/get`).
def test_orthanc_reads_metadata_through_wado(pair: tuple[Faces, OrthancClient],
                                            tmp_path: Path) -> None:
    _, orthanc = pair
    stow_through_orthanc(orthanc, sample_files(tmp_path / "in"))
    study = uid("P-ORTHANC", "ORTHANC")
    metadata = json.loads(orthanc.call("POST", f"/dicom-web/servers/{SERVER}/get", json.dumps(
        {"Uri": f"/studies/{study}/metadata"}).encode()))
    assert sorted(item["00080018"]["Value"][0] for item in metadata) == sorted(
        uid("P-ORTHANC", "ORTHANC", "SE1", number) for number in range(1, 4))
    assert all(item["7FE00010"].get("BulkDataURI") for item in metadata)


# PS3.18 10.4.1.1.1 (Retrieve study): what Orthanc stored in minipacs, Orthanc pulls back with
# its WADO-RS client (`/retrieve`), every file byte-identical to the one first sent.
def test_orthanc_pulls_back_byte_identical_files(pair: tuple[Faces, OrthancClient],
                                                 tmp_path: Path) -> None:
    _, orthanc = pair
    files = sample_files(tmp_path / "in")
    stow_through_orthanc(orthanc, files)
    for identifier in orthanc.rest("GET", "/patients"):
        orthanc.rest("DELETE", f"/patients/{identifier}")
    assert orthanc.rest("GET", "/instances") == []
    studies = sorted({str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
                      for path in files.values()})
    answer = orthanc.rest("POST", f"/dicom-web/servers/{SERVER}/retrieve", {
        "Resources": [{"Study": study} for study in studies], "Synchronous": True})
    assert int(answer["ReceivedInstancesCount"]) == len(files), answer
    pulled = orthanc.instance_files()
    assert sorted(pulled) == sorted(files)
    for sop_instance_uid, path in files.items():
        assert pulled[sop_instance_uid] == path.read_bytes(), path.name
