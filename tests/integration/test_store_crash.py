"""Crash safety: an instance answered with Success survives a SIGKILL of the server."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pydicom

from pacs.config import Settings
from pacs.services.context import open_services
from tests.conftest import ServerProcess
from tests.dcmtk import StorescuProgress, dcmtk_env, require_tool
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


def _kill_after_acknowledgements(server: ServerProcess, groups: list[list[Path]],
                                 after: int) -> list[Path]:
    """One storescu per group, all at once; SIGKILL the server as soon as `after` Successes
    have arrived in total. Returns the files answered with Success, over every association."""
    clients = [subprocess.Popen(
        [require_tool("storescu"), "-v", "-aec", "MINIPACS", "127.0.0.1", str(server.port),
         *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dcmtk_env()) for files in groups]
    progress = [StorescuProgress() for _ in clients]
    lock = threading.Lock()
    enough = threading.Event()

    def follow(number: int) -> None:
        stream = clients[number].stdout
        assert stream is not None
        for line in stream:
            with lock:
                progress[number].feed(line)
                if sum(len(p.acknowledged) for p in progress) >= after:
                    enough.set()

    readers = [threading.Thread(target=follow, args=(n,)) for n in range(len(clients))]
    for reader in readers:
        reader.start()
    enough.wait(timeout=120)
    server.kill()
    for client in clients:
        client.wait(timeout=60)
    for reader in readers:
        reader.join(timeout=60)
    return [Path(sent) for p in progress for sent in p.acknowledged]


# DESIGN rule 2 with group commit: stores of several associations share one commit, and none
# of them is answered before it. Killed right after N Successes, all N are there after restart.
def test_sigkill_after_acknowledgements_across_concurrent_associations_loses_none(
    server_process: Callable[..., ServerProcess], tmp_path: Path, database_url: str
) -> None:
    groups = [[make_file(tmp_path / "in" / str(client), patient_id=f"G{client % 2}",
                         study=f"ST{client}", series=f"SE{n % 3}", instance=n, rows=64,
                         columns=64) for n in range(60)] for client in range(4)]
    server = server_process()
    acknowledged = _kill_after_acknowledgements(server, groups, after=60)
    assert len(acknowledged) >= 60
    assert len(acknowledged) < sum(map(len, groups)), "the kill came too late to test anything"

    server.start()
    server.kill()
    services = open_services(Settings(storage=server.storage, database=database_url))
    try:
        for path in acknowledged:
            original = pydicom.dcmread(path)
            record = services.index.get_instance(str(original.SOPInstanceUID))
            assert record is not None, f"acknowledged {path.name} is not indexed"
            assert pydicom.dcmread(services.archive.absolute(record.file_path)) == original
            assert services.archive.checksum(record.file_path) == record.file_sha256
    finally:
        services.close()
