"""HTTP access (Basic and bearer users, read and store permissions), CORS and HTTPS of the
DICOMweb face, with httpx and dicomweb-client over loopback.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from requests import Session
from requests.exceptions import HTTPError

from pacs.config import HttpUser
from tests.factory import make_dataset
from tests.web.support import Faces, start_faces, stop_faces

USERS = (HttpUser("viewer", password="s3cret", permissions=frozenset({"read"})),
         HttpUser("modality", token="tok-123", permissions=frozenset({"read", "store"})))


@pytest.fixture
def faces_with(tmp_path: Path, sqlite_url: str) -> Iterator[Callable[..., Faces]]:
    """Starts a two-faced server with settings overrides (SQLite: access is not backend
    dependent)."""
    started: list[Faces] = []

    def start(**overrides: Any) -> Faces:
        started.append(start_faces(tmp_path / str(len(started)), sqlite_url, None, **overrides))
        return started[-1]

    yield start
    for faces in started:
        stop_faces(faces)


# PS3.18 8.1 (HTTP authentication, RFC 7617 / RFC 6750): users read and store as allowed.
def test_basic_and_bearer_users(faces_with: Callable[..., Faces]) -> None:
    faces = faces_with(http_users=USERS)
    assert faces.get("studies").status_code == 401
    assert "Basic" in faces.get("studies").headers["www-authenticate"]
    assert faces.get("studies", auth=("viewer", "s3cret")).status_code == 200
    assert faces.get("studies", auth=("viewer", "wrong")).status_code == 401
    bearer = {"Authorization": "Bearer tok-123"}
    assert faces.get("studies", headers=bearer).status_code == 200
    session = Session()
    session.auth = ("viewer", "s3cret")
    viewer = DICOMwebClient(faces.root, session=session)
    with pytest.raises(HTTPError) as refused:
        viewer.store_instances([make_dataset()])
    assert refused.value.response.status_code == 403
    modality = DICOMwebClient(faces.root, headers=bearer)
    assert len(modality.store_instances([make_dataset()]).ReferencedSOPSequence) == 1
    assert len(viewer.search_for_studies()) == 1


# Same spirit as the DIMSE allow-list: callers without credentials get `http.anonymous`.
def test_anonymous_permissions(faces_with: Callable[..., Faces]) -> None:
    faces = faces_with(http_users=USERS, http_anonymous=frozenset({"read"}))
    assert faces.get("studies").status_code == 200
    response = httpx.post(f"{faces.root}/studies", content=b"",
                          headers={"Content-Type": "multipart/related; boundary=x"})
    assert response.status_code == 401


# Fetch standard CORS: a preflight is answered without credentials; responses, errors too,
# carry Access-Control-Allow-Origin for an allowed origin and not for another.
def test_cors_preflight_and_errors(faces_with: Callable[..., Faces]) -> None:
    faces = faces_with(http_users=USERS, http_cors_origins=("http://viewer.test",))
    preflight = httpx.options(f"{faces.root}/studies", headers={
        "Origin": "http://viewer.test", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://viewer.test"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    origin = {"Origin": "http://viewer.test"}
    refused = faces.get("studies", headers=origin)
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "http://viewer.test"
    bad = faces.get("studies", headers=origin, params={"StudyDate": "x"}, auth=("viewer",
                                                                                  "s3cret"))
    assert bad.status_code == 400
    assert bad.headers["access-control-allow-origin"] == "http://viewer.test"
    other = faces.get("studies", headers={"Origin": "http://evil.test"},
                      auth=("viewer", "s3cret"))
    assert "access-control-allow-origin" not in other.headers


def _openssl(*arguments: str) -> None:
    subprocess.run(["openssl", *arguments], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, made for the test."""
    folder = tmp_path_factory.mktemp("https")
    paths = {name: folder / name for name in ("ca.key", "ca.pem", "server.key", "server.pem")}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=minipacs test CA", "-keyout", str(paths["ca.key"]),
             "-out", str(paths["ca.pem"]))
    request, extensions = folder / "server.csr", folder / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", str(paths["server.key"]), "-out", str(request))
    _openssl("x509", "-req", "-in", str(request), "-CA", str(paths["ca.pem"]),
             "-CAkey", str(paths["ca.key"]), "-CAcreateserial", "-days", "2",
             "-extfile", str(extensions), "-out", str(paths["server.pem"]))
    return paths


# PS3.18 8.1 / BCP 195: with the [tls] certificate the HTTP face speaks HTTPS; dicomweb-client
# stores, searches and retrieves over it, checking the certificate.
def test_https_with_dicomweb_client(faces_with: Callable[..., Faces],
                                    certificate: dict[str, Path]) -> None:
    faces = faces_with(tls_certificate=certificate["server.pem"],
                       tls_key=certificate["server.key"])
    assert faces.root.startswith("https://")
    session = Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace our CA
    session.verify = str(certificate["ca.pem"])
    client = DICOMwebClient(faces.root, session=session)
    dataset = make_dataset()
    client.store_instances([dataset])
    (study,) = client.search_for_studies()
    assert study["00081190"]["Value"][0].startswith("https://127.0.0.1:")
    (got,) = client.retrieve_study(dataset.StudyInstanceUID)
    assert got.SOPInstanceUID == dataset.SOPInstanceUID
    frames = client.retrieve_instance_frames(dataset.StudyInstanceUID, dataset.SeriesInstanceUID,
                                             dataset.SOPInstanceUID, [1])
    assert frames == [dataset.PixelData]
    with pytest.raises(httpx.HTTPError):
        httpx.get(faces.root.replace("https", "http") + "/studies", timeout=10)
