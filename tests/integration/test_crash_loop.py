"""Issue #7: twenty SIGKILLs of the server mid-stream, then `pacs verify --repair` finds an
archive whose every acknowledged instance is there, readable, and indexed with its file."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pydicom

from pacs.config import Settings
from pacs.services import open_services
from tests.conftest import REPO, ServerProcess
from tests.dcmtk import StorescuProgress, dcmtk_env, require_tool
from tests.factory import make_file

CYCLES = 20
FILES_PER_CYCLE = 40


def _stream_and_kill(server: ServerProcess, files: list[Path], after: int,
                     delay: float) -> list[Path]:
    """storescu `files` to the server; SIGKILL it `delay` s after `after` Success responses.

    Returns the files answered with Success (storescu -v names each file it sends).
    """
    command = [require_tool("storescu"), "-v", "-aec", "MINIPACS", "127.0.0.1",
               str(server.port), *map(str, files)]
    client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=dcmtk_env())
    assert client.stdout is not None
    progress = StorescuProgress()
    deadline = time.monotonic() + 60
    killed = False
    for line in client.stdout:
        progress.feed(line)
        if not killed and (len(progress.acknowledged) >= after
                           or time.monotonic() > deadline):
            time.sleep(delay)  # 0 to 8 ms: between stores, mid-transfer, mid-indexing
            server.kill()
            killed = True
    client.wait(timeout=60)
    server.kill()
    return [Path(sent) for sent in progress.acknowledged]


def _pacs(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pacs", *arguments], capture_output=True,
                          text=True, timeout=300, cwd=REPO, stdin=subprocess.DEVNULL)


def test_twenty_kills_mid_stream_then_verify_repair_leaves_a_clean_archive(
    server_process: Callable[..., ServerProcess], tmp_path: Path, database_url: str
) -> None:
    server = server_process()
    acknowledged: list[Path] = []
    for cycle in range(CYCLES):
        if cycle:
            server.start()  # back up on the archive and index the kill left behind
        size = 256 if cycle % 2 else 32  # 128 KiB or 2 KiB of pixels: kills land anywhere
        files = [make_file(tmp_path / "in" / str(cycle), patient_id=f"C{cycle % 4}",
                           study=f"ST{cycle}", series=f"SE{n % 2}", instance=n,
                           rows=size, columns=size) for n in range(FILES_PER_CYCLE)]
        acknowledged += _stream_and_kill(server, files, after=5 + cycle % 10,
                                         delay=0.002 * (cycle % 5))
    server.start()
    assert server.terminate() == 0
    assert len(acknowledged) >= CYCLES * 5

    common = ["--config", str(server.folder / "empty.toml"), "--storage", str(server.storage),
              "--database", database_url]
    repair = _pacs("verify", *common, "--repair", "--temp-age", "0")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    check = _pacs("verify", *common, "--temp-age", "0")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "no problems" in check.stdout

    services = open_services(Settings(storage=server.storage, database=database_url))
    try:
        for path in acknowledged:
            original = pydicom.dcmread(path)
            record = services.index.get_instance(str(original.SOPInstanceUID))
            assert record is not None, f"acknowledged {path.name} is not indexed"
            assert pydicom.dcmread(services.archive.absolute(record.file_path)) == original
        for record in services.index.iter_instances_paged():
            assert services.archive.exists(record.file_path), "index row without its file"
        assert not list(services.archive.iter_temp_files())
    finally:
        services.close()
