"""Concurrent C-STOREs: every instance indexed once, no "database is locked"."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pacs.dimse.server import RunningServer
from pacs.index.schema import Instance, Patient, Study
from tests.dcmtk import dcmtk_env, require_tool
from tests.factory import make_file


# Issue #2: ten storescu associations at once on the same patients and studies.
def test_ten_concurrent_storescu_index_every_instance_once(
    server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = server.address
    storescu = require_tool("storescu")
    clients = []
    for client in range(10):
        folder = tmp_path / f"c{client}"
        for n in range(20):
            # Shared patients and studies across clients: parent rows race to be created.
            make_file(folder, patient_id=f"P{n % 4}", study=f"S{n % 6}", series=f"SE{client}",
                      instance=n)
        clients.append(subprocess.Popen(
            [storescu, "+sd", "-aec", "MINIPACS", host, str(port), str(folder)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dcmtk_env()))
    outputs = [client.communicate(timeout=180)[0] for client in clients]
    assert all(client.returncode == 0 for client in clients), outputs
    assert Instance.select().count() == 200
    assert Patient.select().count() == 4
    assert Study.select().count() == 12  # (n mod 4, n mod 6) pairs: lcm(4, 6) = 12
    assert len(list(server.services.archive.iter_files())) == 200
    assert "locked" not in caplog.text
