"""Storage commitment with Orthanc 1.10 as the requester: Orthanc's REST API asks minipacs to
commit instances (`POST /modalities/{id}/storage-commitment`), minipacs reports on a new
association to Orthanc's AE from its AE table, and Orthanc's `/storage-commitment/{id}`
shows success and failure per instance (PS3.4 J.3)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pacs.dimse.server import RunningServer
from tests.factory import CT_IMAGE_STORAGE, make_file, uid
from tests.integration.interop_support import Orthanc, orthanc_beside

WAIT = 60.0  # seconds the report may take: a bound, not a measurement


def _commit(orthanc: Orthanc, instances: list[tuple[str, str]]) -> dict[str, Any]:
    """Orthanc asks minipacs to commit `instances`; Orthanc's record once the report is in."""
    started = orthanc.post("/modalities/minipacs/storage-commitment", {
        "DicomInstances": [{"SOPClassUID": c, "SOPInstanceUID": i} for c, i in instances],
        "Timeout": 30})
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        report = orthanc.get(started["Path"])
        if report["Status"] != "Pending":
            return dict(report)
        time.sleep(0.1)  # the report is asynchronous (J.3.3): poll Orthanc's record
    raise AssertionError("no storage commitment report within the bound\n"
                         + orthanc.log.read_text(errors="replace")[-3000:])


@pytest.fixture
def orthanc_and_server(server_factory: Callable[..., RunningServer],
                       tmp_path: Path) -> Iterator[tuple[Orthanc, RunningServer]]:
    """Orthanc with minipacs as its modality `minipacs`; minipacs with ORTHANC as a remote."""
    yield from orthanc_beside(server_factory, tmp_path / "orthanc")


def _store(server: RunningServer, folder: Path, count: int) -> list[tuple[str, str]]:
    references = []
    for number in range(1, count + 1):
        path = make_file(folder, patient_id="PO", study="SO", series="SEO", instance=number)
        references.append((CT_IMAGE_STORAGE, server.services.ingestor.store(path)
                           .sop_instance_uid))
    return references


def test_orthanc_is_told_every_instance_is_committed(
        orthanc_and_server: tuple[Orthanc, RunningServer], tmp_path: Path) -> None:
    # PS3.4 J.3.3.1.2: Event Type 1, every instance in the Referenced SOP Sequence.
    orthanc, server = orthanc_and_server
    references = _store(server, tmp_path / "in", 3)
    report = _commit(orthanc, references)
    assert report["Status"] == "Success", report
    assert sorted(i["SOPInstanceUID"] for i in report["Success"]) == sorted(
        r[1] for r in references)
    assert report["Failures"] == []


def test_orthanc_is_told_which_instances_failed_and_why(
        orthanc_and_server: tuple[Orthanc, RunningServer], tmp_path: Path) -> None:
    # PS3.4 J.3.3.1.2: Event Type 2; Failure Reason 0x0112 for an instance never stored,
    # 0x0110 for one whose file is gone.
    orthanc, server = orthanc_and_server
    kept, lost = _store(server, tmp_path / "in", 2)
    record = server.services.index.get_instance(lost[1])
    assert record is not None
    os.remove(server.services.archive.absolute(record.file_path))
    unknown = (CT_IMAGE_STORAGE, uid("orthanc", "never stored"))
    report = _commit(orthanc, [kept, lost, unknown])
    assert report["Status"] == "Failure", report
    assert [i["SOPInstanceUID"] for i in report["Success"]] == [kept[1]]
    reasons = {f["SOPInstanceUID"]: f["FailureReason"] for f in report["Failures"]}
    assert reasons == {lost[1]: 0x0110, unknown[1]: 0x0112}
