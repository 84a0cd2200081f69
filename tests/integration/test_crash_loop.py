"""Issue #7: twenty SIGKILLs of the server mid-stream, then `pacs verify --repair` finds an
archive whose every acknowledged instance is there, readable, and indexed with its file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pydicom

from pacs.config import Settings
from pacs.services.context import open_services
from tests.conftest import REPO, ServerProcess
from tests.factory import make_file

CYCLES = 20
FILES_PER_CYCLE = 40


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
        # 0 to 8 ms after the acknowledgement: between stores, mid-transfer, mid-indexing.
        acknowledged += server.kill_while_storing(files, after=5 + cycle % 10,
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
