"""STOW-RS (PS3.18 10.5) and WADO-RS (10.4) round trips with dicomweb-client and httpx, on
SQLite and PostgreSQL: what is stored over HTTP is found by C-FIND and read back as sent.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset

from pacs.services import store as store_service
from tests.conftest import BACKENDS
from tests.factory import make_dataset
from tests.integration.find_support import find, query
from tests.web.support import Faces, parts, start_faces, stop_faces


@pytest.fixture(params=BACKENDS)
def faces(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Faces]:
    """An empty two-faced server per test."""
    url = f"sqlite:///{tmp_path}/index.sqlite" if request.param == "sqlite" \
        else request.getfixturevalue("postgres_server").new_database()
    running = start_faces(tmp_path, url, None)
    yield running
    stop_faces(running)


def study(count: int = 3, label: str = "S1") -> list[Dataset]:
    return [make_dataset(patient_id="P-WEB", study=label, instance=i, rows=16, columns=16)
            for i in range(1, count + 1)]


def encoded(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def multipart(bodies: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "minipacs-test-boundary"
    chunks = [f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + body + b"\r\n"
              for kind, body in bodies]
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), \
        f'multipart/related; type="application/dicom"; boundary={boundary}'


# PS3.18 10.5.1, 10.5.3: all parts stored is 200 with a ReferencedSOPSequence; the instances
# are then found by C-FIND and read back by WADO-RS with the same pixels.
def test_store_then_find_and_retrieve(faces: Faces) -> None:
    client = faces.client()
    datasets = study()
    answer = client.store_instances(datasets)
    assert len(answer.ReferencedSOPSequence) == 3 and "FailedSOPSequence" not in answer
    result = find(faces.dimse, query(QueryRetrieveLevel="IMAGE", SOPInstanceUID="",
                                     StudyInstanceUID=datasets[0].StudyInstanceUID,
                                     SeriesInstanceUID=datasets[0].SeriesInstanceUID))
    assert sorted(result.values("SOPInstanceUID")) == sorted(d.SOPInstanceUID for d in datasets)
    got = client.retrieve_series(datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID)
    assert sorted((d.SOPInstanceUID, d.PixelData) for d in got) == \
        sorted((d.SOPInstanceUID, d.PixelData) for d in datasets)
    one = client.retrieve_instance(datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID,
                                   datasets[1].SOPInstanceUID)
    assert one.SOPInstanceUID == datasets[1].SOPInstanceUID
    assert len(client.retrieve_study(datasets[0].StudyInstanceUID)) == 3


# PS3.18 10.5: a part is hashed and its header kept as it arrives, so storing it reads nothing
# back; the index's SHA-256 is the stored file's, the preamble dicomweb-client leaves out too.
def test_stored_part_is_hashed_as_it_arrives(faces: Faces,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    read_back: list[object] = []
    original = store_service.sync_and_hash
    monkeypatch.setattr(store_service, "sync_and_hash",
                        lambda handle: read_back.append(handle) or original(handle))
    datasets = study(2, label="HASHED")
    faces.client().store_instances(datasets)
    for dataset in datasets:
        record = faces.services.index.get_instance(dataset.SOPInstanceUID)
        assert record is not None
        content = faces.services.archive.absolute(record.file_path).read_bytes()
        assert content[128:132] == b"DICM"
        assert record.file_sha256 == hashlib.sha256(content).hexdigest()
    assert read_back == []


# PS3.18 10.5.3: some parts failing is 202; a part that is not DICOM fails alone (0xC000).
def test_a_part_that_is_not_dicom_fails_alone(faces: Faces) -> None:
    good = study(1)[0]
    body, content_type = multipart([("application/dicom", encoded(good)),
                                    ("application/dicom", b"this is not DICOM at all" * 20)])
    response = httpx.post(f"{faces.root}/studies", content=body,
                          headers={"Content-Type": content_type}, timeout=60)
    assert response.status_code == 202
    answer = Dataset.from_json(response.json())
    assert [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] == [
        good.SOPInstanceUID]
    assert [i.FailureReason for i in answer.FailedSOPSequence] == [0xC000]


# PS3.18 10.5.1.2: POST /studies/{study} refuses an instance of another study (0xA900);
# nothing stored is 409.
def test_instance_of_another_study_is_refused(faces: Faces) -> None:
    other = study(1, "OTHER")[0]
    target = study(1)[0].StudyInstanceUID
    body, content_type = multipart([("application/dicom", encoded(other))])
    response = httpx.post(f"{faces.root}/studies/{target}", content=body,
                          headers={"Content-Type": content_type}, timeout=60)
    assert response.status_code == 409
    (item,) = Dataset.from_json(response.json()).FailedSOPSequence
    assert (item.ReferencedSOPInstanceUID, item.FailureReason) == (other.SOPInstanceUID, 0xA900)
    assert faces.services.index.get_instance(other.SOPInstanceUID) is None


# PS3.18 10.5.3: a body that is not multipart/related application/dicom is 415.
@pytest.mark.parametrize("content_type", [
    "application/dicom", 'multipart/related; type="application/dicom+json"; boundary=x'])
def test_unsupported_media_type_is_415(faces: Faces, content_type: str) -> None:
    response = httpx.post(f"{faces.root}/studies", content=b"--x--\r\n",
                          headers={"Content-Type": content_type}, timeout=60)
    assert response.status_code == 415


# PS3.4 B.4.1 via PS3.18 10.5: a duplicate follows the duplicates policy (keep: Success).
def test_duplicate_is_kept_and_answered_stored(faces: Faces) -> None:
    client = faces.client()
    dataset = study(1)[0]
    client.store_instances([dataset])
    answer = client.store_instances([dataset])
    assert len(answer.ReferencedSOPSequence) == 1
    assert faces.services.index.stats().instances == 1


# PS3.18 10.4.1.1.4: metadata at study, series and instance level, pixel data by URI.
def test_metadata_at_every_level(faces: Faces) -> None:
    client = faces.client()
    datasets = study()
    client.store_instances(datasets)
    first = datasets[0]
    assert len(client.retrieve_study_metadata(first.StudyInstanceUID)) == 3
    assert len(client.retrieve_series_metadata(first.StudyInstanceUID,
                                               first.SeriesInstanceUID)) == 3
    document = client.retrieve_instance_metadata(first.StudyInstanceUID,
                                                 first.SeriesInstanceUID, first.SOPInstanceUID)
    uri = document["7FE00010"]["BulkDataURI"]
    assert uri.startswith(faces.root)
    (pixels,) = client.retrieve_bulkdata(uri)
    assert pixels == first.PixelData
    frames = client.retrieve_instance_frames(first.StudyInstanceUID, first.SeriesInstanceUID,
                                             first.SOPInstanceUID, [1])
    assert frames == [first.PixelData]


# PS3.18 10.4.3: an unknown study is 404; a malformed UID 400.
def test_unknown_and_malformed(faces: Faces) -> None:
    assert faces.get("studies/1.2.3.4").status_code == 404
    assert faces.get("studies/not-a-uid/metadata").status_code == 400


# PS3.18 10.4.3 (PS3.4 C.4.3 rule 7 of DESIGN): a missing file is left out, the rest sent.
def test_missing_file_does_not_end_the_retrieve(faces: Faces) -> None:
    client = faces.client()
    datasets = study()
    client.store_instances(datasets)
    record = faces.services.index.get_instance(datasets[1].SOPInstanceUID)
    assert record is not None
    faces.services.archive.absolute(record.file_path).unlink()
    response = faces.get(f"studies/{datasets[0].StudyInstanceUID}", headers={
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    got = [pydicom.dcmread(io.BytesIO(p.body)).SOPInstanceUID for p in parts(response)]
    assert sorted(got) == sorted([datasets[0].SOPInstanceUID, datasets[2].SOPInstanceUID])


# PS3.18 10.4.1.1.8: thumbnails of a study, a series and an instance.
def test_thumbnails(faces: Faces) -> None:
    datasets = study()
    faces.client().store_instances(datasets)
    first = datasets[0]
    base = f"studies/{first.StudyInstanceUID}"
    for path in (base, f"{base}/series/{first.SeriesInstanceUID}",
                 f"{base}/series/{first.SeriesInstanceUID}/instances/{first.SOPInstanceUID}"):
        response = faces.get(f"{path}/thumbnail", params={"viewport": "8,8"})
        assert (response.status_code, response.headers["content-type"]) == (200, "image/jpeg")
