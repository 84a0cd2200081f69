"""Crash safety: an instance answered with Success survives a SIGKILL of the server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom

from pacs.config import Settings
from pacs.services.context import open_services
from tests.conftest import ServerProcess
from tests.factory import make_file


# DESIGN rule 2 / issue #2: Success means on disk and in the index the moment it is sent.
def test_sigkill_during_storescu_loses_no_acknowledged_instance(
    server_process: Callable[..., ServerProcess], tmp_path: Path, database_url: str
) -> None:
    files = [make_file(tmp_path / "in", patient_id=f"K{n % 3}", study=f"ST{n % 5}",
                       instance=n, rows=128, columns=128) for n in range(150)]
    server = server_process()
    acknowledged = server.kill_while_storing(files, after=40)
    assert len(acknowledged) >= 40
    assert len(acknowledged) < len(files), "the kill came too late to test anything"

    server.start()  # the server comes back up on the same archive and index
    server.kill()
    settings = Settings(storage=server.storage, database=database_url)
    services = open_services(settings)
    try:
        for path in acknowledged:
            uid = str(pydicom.dcmread(path).SOPInstanceUID)
            record = services.index.get_instance(uid)
            assert record is not None, f"acknowledged {uid} is not indexed"
            stored = services.archive.absolute(record.file_path)
            assert pydicom.dcmread(stored) == pydicom.dcmread(path)
            assert services.archive.checksum(record.file_path) == record.file_sha256
        for record in services.index.iter_instances():
            assert services.archive.exists(record.file_path), "index row without its file"
    finally:
        services.close()
