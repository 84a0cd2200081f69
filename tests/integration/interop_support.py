"""Shared by the interop suites (no tests here): clients nobody here wrote, found or skipped,
Orthanc as a plain process driven through its REST API, and a small test archive.

Each external program is Debian's package; `scripts/test` installs it when missing. Outside
CI a missing one skips its tests with the package to install; under CI=true it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pacs.config import RemoteAE
from pacs.dimse.server import RunningServer
from pacs.services.context import Services
from tests.dcmtk import IN_CI, dcmtk_env
from tests.factory import make_file, uid
from tests.postgres import free_port


def require_program(path: str, package: str) -> str:
    """The path of an external program; skips (fails under CI=true) when it is missing."""
    found = shutil.which(path) or (path if os.access(path, os.X_OK) else None)
    if found is None:
        message = (f"{path} is not installed (apt-get install {package}; scripts/test does "
                   "it)")
        if IN_CI:
            pytest.fail(message + " - under CI=true this is an error, not a skip")
        pytest.skip(message)
    return found


def require_python_module(module: str, package: str, python: str = "/usr/bin/python3") -> str:
    """Debian's system python when it can import `module`; skip (fail in CI) otherwise."""
    interpreter = require_program(python, "python3")
    probe = subprocess.run([interpreter, "-c", f"import {module}"], capture_output=True,
                           timeout=60)
    if probe.returncode != 0:
        message = (f"{python} cannot import {module} (apt-get install {package}; "
                   "scripts/test does it)")
        if IN_CI:
            pytest.fail(message + " - under CI=true this is an error, not a skip")
        pytest.skip(message)
    return interpreter


# --- a small archive: one patient, one study of two series ---------------------------------

@dataclass(frozen=True)
class Archive:
    """What `populate` stored: the study, and the SOP Instance UIDs of each series."""

    patient_id: str
    patient_name: str
    study: str
    series: dict[str, frozenset[str]]

    @property
    def instances(self) -> frozenset[str]:
        """Every SOP Instance UID of the study."""
        return frozenset().union(*self.series.values())

    def series_uid(self, index: int) -> str:
        """The Series Instance UID of the study's series number `index` (0 or 1)."""
        return list(self.series)[index]


def populate(services: Services, folder: Path, patient_id: str = "INTEROP-1",
             patient_name: str = "Łukasiewicz^Jan") -> Archive:
    """Store a study of two series (3 CT, 2 MR) through the ingest pipeline."""
    series: dict[str, frozenset[str]] = {}
    for label, modality, count in (("SE1", "CT", 3), ("SE2", "MR", 2)):
        uids = set()
        for number in range(1, count + 1):
            path = make_file(folder, patient_id=patient_id, patient_name=patient_name,
                             series=label, instance=number, modality=modality,
                             SeriesNumber=int(label[-1]))
            uids.add(services.ingestor.store(path).sop_instance_uid)
        series[uid(patient_id, "S1", label)] = frozenset(uids)
    return Archive(patient_id, patient_name, uid(patient_id, "S1"), series)


# --- Orthanc ------------------------------------------------------------------------------

class Orthanc:
    """Debian's Orthanc on a JSON configuration in a folder of its own: free DICOM and HTTP
    ports on 127.0.0.1, its own storage, no plugins, no authentication, and one modality,
    `minipacs`, for the AE under test."""

    AE_TITLE = "ORTHANC"

    def __init__(self, folder: Path, dicom_port: int, minipacs_port: int,
                 minipacs_ae: str = "MINIPACS"):
        self.folder = folder
        self.dicom_port = dicom_port
        self.http_port = free_port()
        self.log = folder / "orthanc.log"
        storage = folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        (folder / "tmp").mkdir(exist_ok=True)
        config = {
            "Name": "minipacs-interop", "StorageDirectory": str(storage),
            "IndexDirectory": str(storage), "TemporaryDirectory": str(folder / "tmp"),
            "Plugins": [], "HttpServerEnabled": True, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": True, "DicomAet": self.AE_TITLE, "DicomPort": dicom_port,
            "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True, "DicomModalities": {
                "minipacs": [minipacs_ae, "127.0.0.1", minipacs_port]},
            # Queries go out as ISO_IR 192, so a name outside Latin-1 travels as written.
            "DefaultEncoding": "Utf8", "SaveJobs": False, "HttpTimeout": 60,
            "DicomScuTimeout": 30,
        }
        (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
        binary = require_program("Orthanc", "orthanc")
        with open(self.log, "wb") as log:
            # Orthanc's DICOM layer is DCMTK's: TCP_NODELAY=1 as for the DCMTK clients.
            self.process = subprocess.Popen([binary, str(folder / "orthanc.json")],
                                            stdout=log, stderr=log, cwd=folder,
                                            env=dcmtk_env())
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        """Poll GET /system until it answers (a bounded loop, not a guessed sleep)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited {self.process.returncode}:\n"
                                   + self.log.read_text(errors="replace"))
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise TimeoutError("Orthanc did not answer on its REST API:\n"
                                       + self.log.read_text(errors="replace")) from None
                time.sleep(0.05)

    def request(self, method: str, path: str, body: Any = None,
                raw: bytes | None = None) -> Any:
        """One REST call; the decoded JSON answer. HTTP errors raise with Orthanc's text."""
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}",
                                         data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise AssertionError(f"{method} {path}: HTTP {error.code}: {detail}") from None
        return json.loads(payload) if payload.strip() else None

    def get(self, path: str) -> Any:
        """GET `path`."""
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        """POST `path` with a JSON body."""
        return self.request("POST", path, body if body is not None else {})

    def upload(self, path: Path) -> str:
        """POST /instances: store a file in Orthanc; its Orthanc ID."""
        return str(self.request("POST", "/instances", raw=path.read_bytes())["ID"])

    def query(self, level: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """C-FIND from Orthanc to minipacs: POST /modalities/minipacs/query, then read
        /queries/{id}/answers; each answer's tags by keyword, simplified."""
        started = self.post("/modalities/minipacs/query", {"Level": level, "Query": query})
        query_id = started["ID"]
        answers = self.get(f"/queries/{query_id}/answers")
        return [self.get(f"/queries/{query_id}/answers/{index}/content?simplify")
                for index in answers]

    def instance_uids(self) -> set[str]:
        """SOP Instance UIDs of every instance Orthanc holds."""
        return {self.get(f"/instances/{identifier}/simplified-tags")["SOPInstanceUID"]
                for identifier in self.get("/instances")}

    def stop(self) -> None:
        """SIGKILL: its folder is thrown away, and a clean stop takes Orthanc 1.10 3.5 s
        (its HTTP and DICOM servers poll for the stop flag)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def orthanc_beside(server_factory: Callable[..., RunningServer],
                   folder: Path) -> Iterator[tuple[Orthanc, RunningServer]]:
    """For a fixture to yield from: Orthanc with minipacs as its modality `minipacs`, and
    minipacs with ORTHANC in its AE table; Orthanc is stopped afterwards."""
    require_program("Orthanc", "orthanc")
    dicom_port = free_port()
    server = server_factory(remotes=(RemoteAE(Orthanc.AE_TITLE, "127.0.0.1", dicom_port),))
    orthanc = Orthanc(folder, dicom_port, server.address[1])
    try:
        yield orthanc, server
    finally:
        orthanc.stop()
