"""Storage commitment with Orthanc 1.10 as the requester: Orthanc's REST API asks minipacs to
commit instances (`POST /modalities/{id}/storage-commitment`), minipacs reports on a new
association to Orthanc's AE from its AE table, and Orthanc's `/storage-commitment/{id}`
shows success and failure per instance (PS3.4 J.3)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pacs.config import RemoteAE
from pacs.dimse.server import RunningServer
from tests.dcmtk import IN_CI, dcmtk_env
from tests.factory import CT_IMAGE_STORAGE, make_file, uid
from tests.integration.move_support import wait_for_port
from tests.postgres import free_port

WAIT = 60.0  # seconds the report may take: a bound, not a measurement


class Orthanc:
    """Orthanc on free ports with its storage in a temp folder, minipacs as a modality."""

    def __init__(self, folder: Path, dicom_port: int, minipacs_port: int):
        binary = shutil.which("Orthanc")
        if binary is None:
            message = "Orthanc is not installed (apt-get install orthanc; scripts/test does it)"
            if IN_CI:
                pytest.fail(message + " - under CI=true this is an error, not a skip")
            pytest.skip(message)
        self.http_port = free_port()
        self.dicom_port = dicom_port
        storage = folder / "storage"
        storage.mkdir(parents=True)
        config = {
            "Name": "minipacs-test", "StorageDirectory": str(storage),
            "IndexDirectory": str(storage), "TemporaryDirectory": str(folder),
            "Plugins": [], "HttpServerEnabled": True, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": True, "DicomAet": "ORTHANC", "DicomPort": dicom_port,
            "DicomCheckCalledAet": False, "SaveJobs": False,
            "DicomModalities": {"minipacs": {"AET": "MINIPACS", "Host": "127.0.0.1",
                                             "Port": minipacs_port}},
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = folder / "orthanc.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([binary, str(folder / "orthanc.json")], cwd=folder,
                                            stdout=log, stderr=log, env=dcmtk_env())
        wait_for_port(self.http_port, self.process, timeout=60)

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call; its JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        call = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data,
                                      method=method)
        with urllib.request.urlopen(call, timeout=60) as answer:
            return json.loads(answer.read())

    def commitment(self, instances: list[tuple[str, str]]) -> dict[str, Any]:
        """Ask minipacs to commit `instances`; Orthanc's record once the report is in."""
        started = self.rest("POST", "/modalities/minipacs/storage-commitment", {
            "DicomInstances": [{"SOPClassUID": c, "SOPInstanceUID": i} for c, i in instances],
            "Timeout": 30})
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            report = self.rest("GET", started["Path"])
            if report["Status"] != "Pending":
                return dict(report)
            time.sleep(0.1)  # the report is asynchronous (J.3.3): poll Orthanc's record
        raise AssertionError("no storage commitment report within the bound\n"
                             + self.log.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        """Terminate Orthanc."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def pair(server_factory: Callable[..., RunningServer],
         tmp_path: Path) -> Iterator[tuple[RunningServer, Orthanc]]:
    """minipacs with Orthanc in its AE table, and Orthanc with minipacs as a modality."""
    orthanc_port = free_port()
    server = server_factory(remotes=(RemoteAE("ORTHANC", "127.0.0.1", orthanc_port),))
    orthanc = Orthanc(tmp_path / "orthanc", orthanc_port, server.address[1])
    try:
        yield server, orthanc
    finally:
        orthanc.stop()


def _store(server: RunningServer, folder: Path, count: int) -> list[tuple[str, str]]:
    references = []
    for number in range(1, count + 1):
        path = make_file(folder, patient_id="PO", study="SO", series="SEO", instance=number)
        references.append((CT_IMAGE_STORAGE, server.services.ingestor.store(path)
                           .sop_instance_uid))
    return references


def test_orthanc_is_told_every_instance_is_committed(
        pair: tuple[RunningServer, Orthanc], tmp_path: Path) -> None:
    # PS3.4 J.3.3.1.2: Event Type 1, every instance in the Referenced SOP Sequence.
    server, orthanc = pair
    references = _store(server, tmp_path / "in", 3)
    report = orthanc.commitment(references)
    assert report["Status"] == "Success", report
    assert sorted(i["SOPInstanceUID"] for i in report["Success"]) == sorted(
        r[1] for r in references)
    assert report["Failures"] == []


def test_orthanc_is_told_which_instances_failed_and_why(
        pair: tuple[RunningServer, Orthanc], tmp_path: Path) -> None:
    # PS3.4 J.3.3.1.2: Event Type 2; Failure Reason 0x0112 for an instance never stored,
    # 0x0110 for one whose file is gone.
    server, orthanc = pair
    kept, lost = _store(server, tmp_path / "in", 2)
    record = server.services.index.get_instance(lost[1])
    assert record is not None
    os.remove(server.services.archive.absolute(record.file_path))
    unknown = (CT_IMAGE_STORAGE, uid("orthanc", "never stored"))
    report = orthanc.commitment([kept, lost, unknown])
    assert report["Status"] == "Failure", report
    assert [i["SOPInstanceUID"] for i in report["Success"]] == [kept[1]]
    reasons = {f["SOPInstanceUID"]: f["FailureReason"] for f in report["Failures"]}
    assert reasons == {lost[1]: 0x0110, unknown[1]: 0x0112}
