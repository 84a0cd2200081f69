"""Shared by the DICOMweb suites (no tests here): servers with both faces over one Services,
clients, and small readers of multipart answers.

A module server holds a populated archive on each backend and serves it over DIMSE and HTTP
at once, so a QIDO-RS answer and a C-FIND answer come from the same index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient

from pacs.config import HTTP_ANY_PORT
from pacs.dimse.server import RunningServer, start_server
from pacs.services.context import Services, open_services
from pacs.web.server import RunningWeb, start_web
from tests.conftest import BACKENDS
from tests.conftest import test_settings as settings_for


@dataclass
class Faces:
    """Both faces of one server over one set of services."""

    services: Services
    dimse: RunningServer
    web: RunningWeb

    @property
    def root(self) -> str:
        """The DICOMweb root URL."""
        return self.web.url + "/dicom-web"

    def client(self, **options: Any) -> DICOMwebClient:
        """A dicomweb-client session on this server."""
        return DICOMwebClient(self.root, **options)

    def get(self, path: str, **options: Any) -> httpx.Response:
        """GET `path` (relative to the DICOMweb root unless it starts with /)."""
        url = self.web.url + path if path.startswith("/") else f"{self.root}/{path}"
        return httpx.get(url, timeout=60, **options)


def start_faces(folder: Path, database: str, populate: Callable[[Services, Path], None] | None,
                **overrides: Any) -> Faces:
    """Open services, populate them, start DIMSE and HTTP on free ports."""
    settings = settings_for(folder / "archive", database, http_port=HTTP_ANY_PORT)
    services = open_services(replace(settings, **overrides))
    if populate is not None:
        populate(services, folder / "in")
    dimse = start_server(services)
    web = start_web(services)
    assert web is not None
    return Faces(services, dimse, web)


def stop_faces(faces: Faces) -> None:
    """Stop both faces and close the services."""
    faces.web.stop(grace=2)
    faces.dimse.stop(grace=2)
    faces.services.close()


def module_faces(populate: Callable[[Services, Path], None] | None, **overrides: Any) -> Any:
    """A module-scoped fixture: one populated two-faced server per backend."""

    @pytest.fixture(scope="module", params=BACKENDS)
    def fixture(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faces]:
        folder = tmp_path_factory.mktemp("web")
        if request.param == "sqlite":
            url = f"sqlite:///{folder}/index.sqlite"
        else:
            url = request.getfixturevalue("postgres_server").new_database()
        faces = start_faces(folder, url, populate, **overrides)
        yield faces
        stop_faces(faces)

    return fixture


@dataclass
class Part:
    """One part of a multipart/related answer."""

    headers: dict[str, str]
    body: bytes


def parts(response: httpx.Response) -> list[Part]:
    """Split a multipart/related answer (RFC 2046 5.1.1) into its parts."""
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/related"), content_type
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    assert boundary, content_type
    delimiter = b"\r\n--" + boundary[1].encode()
    body = b"\r\n" + response.content
    pieces = body.split(delimiter)
    assert pieces[-1].startswith(b"--"), "no closing delimiter"
    found = []
    for piece in pieces[1:-1]:
        head, _, data = piece[2:].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n"))
        found.append(Part({k.lower(): v for k, v in headers.items()}, data))
    return found


def value(document: dict[str, Any], keyword_tag: str) -> Any:
    """The first value of a tag in a DICOM JSON object (PN as its Alphabetic text)."""
    values = document.get(keyword_tag, {}).get("Value", [])
    if not values:
        return None
    first = values[0]
    return first.get("Alphabetic") if isinstance(first, dict) and "Alphabetic" in first \
        else first
