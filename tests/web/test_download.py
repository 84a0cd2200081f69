"""The browse page's downloads over HTTP, with httpx, on SQLite and PostgreSQL: a study or a
series as one streamed ZIP of its stored files, an instance as its stored file; the page and
its files as an editable and a regular install serve them; access as for DICOMweb.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from pacs.config import HttpUser
from pacs.model.retrieve_identifier import RetrieveRequest
from pacs.services.retrieve import InstanceRecord, find_instances
from tests.conftest import BACKENDS, REPO, ServerProcess
from tests.factory import make_dataset
from tests.web.browse_support import populate_browse, study_uid_of
from tests.web.support import Faces, module_faces, start_faces, stop_faces
from tests.web.test_serve_http import http_port, kib, stow_body

faces = module_faces(populate_browse)


def records_of(faces: Faces, study: str, series: str = "") -> list[InstanceRecord]:
    request = RetrieveRequest("SERIES" if series else "STUDY", study_uids=(study,),
                              series_uids=(series,) if series else ())
    return find_instances(faces.services.index, request)


def stored(faces: Faces, record: InstanceRecord) -> bytes:
    return faces.services.archive.absolute(record.file_path).read_bytes()


def members(response: httpx.Response) -> dict[str, bytes]:
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


def uid_of(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


# PS3.18 10.4.1.1.1: the study's instance set (C-GET's) as one ZIP, each file as stored.
def test_a_study_zip_holds_every_stored_file_byte_for_byte(faces: Faces) -> None:
    study = study_uid_of("ANNA-CT")
    response = faces.get(f"/download/studies/{study}")
    assert response.headers["content-type"] == "application/zip"
    got = {uid_of(data): data for data in members(response).values()}
    assert got == {r.sop_instance_uid: stored(faces, r) for r in records_of(faces, study)}


# Members are named for people: patient, date and description; modality and series number
# with the series description; the instance number. Stored, not compressed.
def test_zip_members_have_readable_names(faces: Faces) -> None:
    response = faces.get(f"/download/studies/{study_uid_of('ANNA-CT')}")
    names = sorted(members(response))
    top = "Smith Anna 2024-03-15 CT Chest with contrast"
    assert names[:4] == [f"{top}/CT001 Scout/00001.dcm", f"{top}/CT001 Scout/00002.dcm",
                         f"{top}/CT001 Scout/00003.dcm", f"{top}/CT002 Axial 5mm/00001.dcm"]
    assert names[-1] == f"{top}/SR004 Dose report/00001.dcm"
    assert len(names) == 11
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
    disposition = response.headers["content-disposition"]
    assert disposition.startswith(f'attachment; filename="{top}.zip"')


# RFC 6266 / RFC 8187: a name outside ASCII is offered as UTF-8, with an ASCII fallback.
def test_a_non_ascii_name_is_offered_as_utf8(faces: Faces) -> None:
    response = faces.get(f"/download/studies/{study_uid_of('JUE-CT')}")
    disposition = response.headers["content-disposition"]
    assert 'filename="M_ller J_rgen 2025-01-05 CT Abdomen.zip"' in disposition
    assert "filename*=UTF-8''M%C3%BCller%20J%C3%BCrgen%202025-01-05%20CT%20Abdomen.zip" \
        in disposition
    assert all(name.startswith("Müller Jürgen 2025-01-05 CT Abdomen/CT001 Axial/")
               for name in members(response))


# PS3.18 10.4.1.1.2: a series alone.
def test_a_series_zip_holds_only_that_series(faces: Faces) -> None:
    study = study_uid_of("ANNA-MR")
    series = records_of(faces, study)[0].series_instance_uid
    response = faces.get(f"/download/studies/{study}/series/{series}")
    got = {uid_of(data) for data in members(response).values()}
    assert got == {r.sop_instance_uid for r in records_of(faces, study, series)}
    assert len(got) == 3


# PS3.18 10.4.1.1.3: one instance as its stored Part 10 file, named by its UID.
def test_an_instance_is_its_stored_file(faces: Faces) -> None:
    record = records_of(faces, study_uid_of("YUI-MR"))[0]
    response = faces.get(f"/download/studies/{record.study_instance_uid}/series/"
                         f"{record.series_instance_uid}/instances/{record.sop_instance_uid}")
    assert response.status_code == 200
    assert response.content == stored(faces, record)
    assert response.headers["content-type"] == "application/dicom"
    assert response.headers["content-length"] == str(record.file_size)
    assert response.headers["content-disposition"].startswith(
        f'attachment; filename="{record.sop_instance_uid}.dcm"')


# PS3.18 10.4.3: nothing here is 404; a path that is not a UID is 400 (PS3.5 9.1).
@pytest.mark.parametrize(("path", "status"), [
    ("/download/studies/1.2.3.4.5.6", 404),
    ("/download/studies/1.2.3.4.5.6/series/1.2.3", 404),
    ("/download/studies/not-a-uid", 400),
    ("/download/studies/1.2.3/series/1.2.3/instances/1..2", 400),
])
def test_unknown_or_invalid_uids_are_refused(faces: Faces, path: str, status: int) -> None:
    response = faces.get(path)
    assert response.status_code == status
    assert response.json()["reason"]


@pytest.fixture(params=BACKENDS)
def small_faces(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Faces]:
    """A server per test with one study of three instances, for tests that damage files."""
    url = f"sqlite:///{tmp_path}/index.sqlite" if request.param == "sqlite" \
        else request.getfixturevalue("postgres_server").new_database()

    def populate(services: object, folder: Path) -> None:
        folder.mkdir(parents=True)
        for number in range(1, 4):
            path = folder / f"{number}.dcm"
            make_dataset(patient_id="P-DL", study="DL", instance=number).save_as(
                path, enforce_file_format=True)
            services.ingestor.store(path)  # type: ignore[attr-defined]

    running = start_faces(tmp_path, url, populate)
    yield running
    stop_faces(running)


# PS3.4 C.4.2.1.4 in spirit (a missing file fails one sub-operation): the ZIP carries the
# other files and MISSING.txt names the one whose file is gone.
def test_a_missing_file_is_left_out_and_listed(small_faces: Faces) -> None:
    study = make_dataset(patient_id="P-DL", study="DL").StudyInstanceUID
    lost, *kept = records_of(small_faces, study)
    os.remove(small_faces.services.archive.absolute(lost.file_path))
    got = members(small_faces.get(f"/download/studies/{study}"))
    missing = got.pop(next(name for name in got if name.endswith("MISSING.txt")))
    assert lost.sop_instance_uid in missing.decode()
    assert {uid_of(data): data for data in got.values()} == {
        r.sop_instance_uid: stored(small_faces, r) for r in kept}


# A file whose bytes no longer match their SHA-256 cuts the download: never a silently wrong
# archive (the same rule as WADO-RS).
def test_a_changed_file_cuts_the_zip(small_faces: Faces) -> None:
    study = make_dataset(patient_id="P-DL", study="DL").StudyInstanceUID
    record = records_of(small_faces, study)[1]
    path = small_faces.services.archive.absolute(record.file_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(httpx.RemoteProtocolError):
        small_faces.get(f"/download/studies/{study}")


# An instance whose file is gone is 500 with the reason, before any byte of a file is sent.
def test_an_instance_whose_file_is_gone_is_500(small_faces: Faces) -> None:
    study = make_dataset(patient_id="P-DL", study="DL").StudyInstanceUID
    record = records_of(small_faces, study)[0]
    os.remove(small_faces.services.archive.absolute(record.file_path))
    response = small_faces.get(f"/download/studies/{study}/series/"
                               f"{record.series_instance_uid}/instances/"
                               f"{record.sop_instance_uid}")
    assert response.status_code == 500
    assert "missing" in response.json()["reason"]


# PS3.18 8.1: the page, its files and the downloads need `read`, as DICOMweb does.
def test_the_page_and_downloads_need_read(tmp_path: Path, sqlite_url: str) -> None:
    users = (HttpUser("viewer", password="s3cret", permissions=frozenset({"read"})),)
    running = start_faces(tmp_path, sqlite_url, None, http_users=users)
    try:
        study = make_dataset().StudyInstanceUID
        for path in ("/", "/static/browse.js", f"/download/studies/{study}"):
            refused = running.get(path)
            assert refused.status_code == 401, path
            assert "Basic" in refused.headers["www-authenticate"]
        assert running.get("/", auth=("viewer", "s3cret")).status_code == 200
        assert running.get("/static/browse.js", auth=("viewer", "s3cret")).status_code == 200
        assert running.get(f"/download/studies/{study}",
                           auth=("viewer", "s3cret")).status_code == 404
    finally:
        stop_faces(running)


# The page and its files are package data: a regular install (setuptools' build of the
# package, as a wheel holds it) serves them as the editable install does.
def test_a_regular_install_serves_the_page(tmp_path: Path) -> None:
    build = tmp_path / "build"
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build", "--build-base", str(build), "build_py"],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    installed = build / "lib"
    elsewhere = tmp_path / "elsewhere"  # not the checkout: `python -m` puts the cwd first
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run([sys.executable, "-c", "import pacs.web.browse as b; print(b.STATIC)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(installed / "pacs/web/static")
    (elsewhere / "empty.toml").write_text("")
    ready = elsewhere / "ready"
    command = [sys.executable, "-m", "pacs", "serve", "--config", "empty.toml",
               "--host", "127.0.0.1", "--port", "0", "--http-port", "auto",
               "--storage", "archive", "--database", f"sqlite:///{elsewhere}/index.sqlite",
               "--ready-file", str(ready)]
    with open(elsewhere / "server.log", "wb") as log:
        server = subprocess.Popen(command, cwd=elsewhere, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and "http=" in ready.read_text()):
            assert server.poll() is None, (elsewhere / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        port = ready.read_text().split("http=")[1].split()[0]
        root = f"http://127.0.0.1:{port}"
        page = httpx.get(root + "/", timeout=30)
        assert page.status_code == 200 and 'src="/static/browse.js"' in page.text
        for name in ("browse.js", "browse.css", "favicon.svg"):
            served = httpx.get(f"{root}/static/{name}", timeout=30)
            assert served.status_code == 200
            assert served.content == (REPO / "pacs/web/static" / name).read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=30)


# Memory does not grow with the archive: a ~130 MB study goes out as one ZIP with the server's
# peak RSS bounded (members are streamed in chunks, nothing is buffered whole).
def test_a_zip_streams_in_flat_memory(server_process: Callable[..., ServerProcess]) -> None:
    process = server_process("--http-port", "auto")
    assert process.process is not None
    pid = process.process.pid
    root = f"http://127.0.0.1:{http_port(process)}"
    count, rows = 60, 1024  # 60 instances of 2 MiB of pixels
    boundary = "zip-boundary"
    response = httpx.post(f"{root}/dicom-web/studies", content=stow_body(count, rows, boundary),
                          headers={"Content-Type": "multipart/related; "
                                   f'type="application/dicom"; boundary={boundary}'},
                          timeout=600)
    assert response.status_code == 200
    study = make_dataset(patient_id="P-BIG", study="BIG").StudyInstanceUID
    httpx.get(f"{root}/download/studies/1.2.3", timeout=30)  # the download modules are loaded
    baseline = kib(pid, "VmRSS")
    received = hashlib.sha256()
    size = 0
    with httpx.stream("GET", f"{root}/download/studies/{study}", timeout=600) as got:
        assert got.status_code == 200
        for chunk in got.iter_bytes():
            received.update(chunk)
            size += len(chunk)
    assert size > count * rows * rows * 2
    growth_mb = (kib(pid, "VmHWM") - baseline) / 1024
    print(f"\nserver RSS before {baseline / 1024:.1f} MB, peak growth {growth_mb:.1f} MB "
          f"for a {size / 1e6:.0f} MB ZIP")
    assert growth_mb < 64, f"peak RSS grew {growth_mb:.0f} MB for a {size / 1e6:.0f} MB ZIP"
