"""Many associations, several processes, one index: limits, concurrency and sharing."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from pynetdicom.sop_class import Verification

from pacs.config import Settings
from pacs.dimse.server import RunningServer
from pacs.services.context import open_services
from tests.conftest import ServerProcess, scu
from tests.dcmtk import dcmtk_env, require_tool, run_tool
from tests.factory import make_file


def _store_concurrently(port: int, folders: list[Path]) -> list[str]:
    """One storescu association per folder, all at once; their outputs when any failed."""
    storescu = require_tool("storescu")
    clients = [
        subprocess.Popen([storescu, "+sd", "-aec", "MINIPACS", "127.0.0.1", str(port),
                          str(folder)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=dcmtk_env())
        for folder in folders
    ]
    outputs = [client.communicate(timeout=300)[0] for client in clients]
    return [out for client, out in zip(clients, outputs, strict=True) if client.returncode]


def _fifty_folders(tmp_path: Path) -> list[Path]:
    folders = []
    for client in range(50):
        folder = tmp_path / f"client{client}"
        for n in range(20):
            make_file(folder, patient_id=f"P{client % 7}", study=f"S{client % 11}",
                      series=f"SE{client}", instance=n)
        folders.append(folder)
    return folders


def _count(storage: Path, database: str) -> tuple[int, int]:
    services = open_services(Settings(storage=storage, database=database))
    try:
        return services.index.stats().instances, len(list(services.archive.iter_files()))
    finally:
        services.close()


# PS3.8 9.3.4: over the limit, A-ASSOCIATE-RJ with reason local-limit-exceeded, not a drop.
def test_association_over_the_limit_is_rejected_local_limit_exceeded(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(max_associations=2)
    host, port = server.address
    held = [scu(Verification).associate(host, port, ae_title="MINIPACS") for _ in range(2)]
    assert all(association.is_established for association in held)
    try:
        result = run_tool("echoscu", ["-aec", "MINIPACS", host, str(port)])
        assert result.returncode != 0
        assert "Local Limit Exceeded" in result.stdout + result.stderr or \
            "local-limit-exceeded" in (result.stdout + result.stderr).lower()
    finally:
        for association in held:
            association.release()
    assert run_tool("echoscu", ["-aec", "MINIPACS", host, str(port)]).returncode == 0


# Issue #5: 50 associations x 20 instances, one process: 1,000 rows, 1,000 files, no errors.
def test_fifty_concurrent_associations_store_every_instance_once(
    server: RunningServer, tmp_path: Path
) -> None:
    failures = _store_concurrently(server.address[1], _fifty_folders(tmp_path / "in"))
    assert failures == []
    assert server.services.index.stats().instances == 1000
    assert len(list(server.services.archive.iter_files())) == 1000


# Issue #5: the same load spread over two worker processes on one port.
def test_fifty_concurrent_associations_with_two_workers(
    server_process: Callable[..., ServerProcess], tmp_path: Path, database_url: str
) -> None:
    server = server_process("--workers", "2", "--max-associations", "64",
                            folder=tmp_path)
    failures = _store_concurrently(server.port, _fifty_folders(tmp_path / "in"))
    assert failures == []
    assert server.terminate() == 0
    assert _count(server.storage, database_url) == (1000, 1000)
    log = server.log.read_text()
    assert "2 workers listening" in log and "Traceback" not in log


# Issue #5: the same instance stored through two server processes at the same moment.
def test_same_instance_through_two_processes_yields_one_row_and_one_file(
    server_process: Callable[..., ServerProcess], tmp_path: Path, database_url: str
) -> None:
    first = server_process(folder=tmp_path)
    second_folder = tmp_path / "second"
    second_folder.mkdir()
    second = ServerProcess(second_folder, database_url, storage=first.storage).start()
    files = [make_file(tmp_path / "in", patient_id="BOTH", instance=n) for n in range(30)]
    try:
        results: list[subprocess.CompletedProcess[str]] = []

        def push(port: int) -> None:
            results.append(run_tool("storescu", ["-aec", "MINIPACS", "127.0.0.1", str(port),
                                                 *map(str, files)]))

        threads = [threading.Thread(target=push, args=(p,)) for p in (first.port, second.port)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    finally:
        second.kill()
    assert _count(first.storage, database_url) == (30, 30)


# Issue #5: stored through one process, found and moved through the other at once.
def test_instance_stored_through_one_process_is_found_and_moved_through_the_other(
    server_process: Callable[..., ServerProcess], tmp_path: Path, database_url: str
) -> None:
    from tests.integration.move_support import StoreSCP

    destination = StoreSCP(tmp_path / "received")
    try:
        first = server_process(folder=tmp_path)
        second_folder = tmp_path / "second"
        second_folder.mkdir()
        second = ServerProcess(second_folder, database_url,
                               "--remote", f"DEST@127.0.0.1:{destination.port}",
                               storage=first.storage).start()
        try:
            files = [make_file(tmp_path / "in", patient_id="SHARED", instance=n)
                     for n in range(5)]
            stored = run_tool("storescu", ["-aec", "MINIPACS", "127.0.0.1", str(first.port),
                                           *map(str, files)])
            assert stored.returncode == 0, stored.stderr
            found = run_tool("findscu", ["-S", "-aec", "MINIPACS", "-k",
                                         "QueryRetrieveLevel=STUDY", "-k", "PatientID=SHARED",
                                         "-k", "NumberOfStudyRelatedInstances",
                                         "127.0.0.1", str(second.port)])
            assert "NumberOfStudyRelatedInstances" in found.stdout + found.stderr
            assert re.search(r"IS \[5 ?\]", found.stdout + found.stderr)
            moved = run_tool("movescu", ["-P", "-aec", "MINIPACS", "-aem", "DEST", "-k",
                                         "QueryRetrieveLevel=PATIENT", "-k", "PatientID=SHARED",
                                         "127.0.0.1", str(second.port)])
            assert moved.returncode == 0, moved.stdout + moved.stderr
            assert len(destination.received()) == 5
        finally:
            second.kill()
    finally:
        destination.stop()
