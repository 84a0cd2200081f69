"""Orthanc 1.10 with Debian's DICOMweb plugin (orthanc-dicomweb) as a DICOMweb client of
minipacs, for tests (no tests here): started on a free port with its storage in a temp folder,
`DicomWeb.Servers` naming minipacs's root, driven through Orthanc's REST API.
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.dcmtk import IN_CI, dcmtk_env
from tests.integration.move_support import wait_for_port
from tests.postgres import free_port

# Where Debian's orthanc-dicomweb puts the plugin (`dpkg -L orthanc-dicomweb`).
PLUGIN_PATTERNS = ("/usr/lib/orthanc/libOrthancDicomWeb.so*",
                   "/usr/share/orthanc/plugins/libOrthancDicomWeb.so*")
SERVER = "minipacs"  # the name of minipacs in Orthanc's DicomWeb.Servers


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " - under CI=true this is an error, not a skip")
    pytest.skip(message)


def dicomweb_plugin() -> str:
    """The DICOMweb plugin's shared library; skips (fails under CI) when absent."""
    found = sorted(path for pattern in PLUGIN_PATTERNS for path in glob.glob(pattern))
    if not found:
        _unavailable("Orthanc's DICOMweb plugin is not installed (apt-get install "
                     "orthanc-dicomweb; scripts/test does it)")
    return found[-1]


def orthanc_binary() -> str:
    """The Orthanc executable; skips (fails under CI) when absent."""
    binary = shutil.which("Orthanc")
    if binary is None:
        _unavailable("Orthanc is not installed (apt-get install orthanc; scripts/test does it)")
    return str(binary)


class OrthancClient:
    """An Orthanc process whose DICOMweb plugin knows minipacs as `SERVER`."""

    def __init__(self, folder: Path, minipacs_root: str):
        binary = orthanc_binary()
        plugin = dicomweb_plugin()
        self.http_port = free_port()
        storage = folder / "storage"
        storage.mkdir(parents=True)
        config = {
            "Name": "minipacs-test", "StorageDirectory": str(storage),
            "IndexDirectory": str(storage), "TemporaryDirectory": str(folder),
            "Plugins": [plugin], "HttpServerEnabled": True, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": False, "SaveJobs": False,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/",
                         "Servers": {SERVER: [minipacs_root.rstrip("/") + "/"]}},
        }
        (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
        self.log = folder / "orthanc.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([binary, "--verbose", str(folder / "orthanc.json")],
                                            cwd=folder, stdout=log, stderr=log,
                                            env=dcmtk_env())
        wait_for_port(self.http_port, self.process, timeout=60)

    def call(self, method: str, path: str, body: bytes | None = None,
             timeout: float = 120) -> bytes:
        """One REST call to Orthanc; its answer's bytes (an HTTP error raises with its body)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}",
                                         data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return bytes(answer.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(f"Orthanc {method} {path}: {error.code} "
                                 f"{error.read()[:2000]!r}\n{self.tail()}") from None

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON REST call; its JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        return json.loads(self.call(method, path, data) or b"null")

    def upload(self, path: Path) -> str:
        """Store a Part 10 file in Orthanc; its Orthanc instance ID."""
        return str(json.loads(self.call("POST", "/instances", path.read_bytes()))["ID"])

    def instance_files(self) -> dict[str, bytes]:
        """Every instance Orthanc holds, by SOP Instance UID, as Orthanc hands its file out."""
        found = {}
        for identifier in self.rest("GET", "/instances"):
            tags = self.rest("GET", f"/instances/{identifier}/simplified-tags")
            found[tags["SOPInstanceUID"]] = self.call("GET", f"/instances/{identifier}/file")
        return found

    def tail(self) -> str:
        """The end of Orthanc's log, for failure messages."""
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """Terminate Orthanc."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
