"""The `pacs` command line: import, stats, and a clean stop on SIGTERM."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset

from tests.conftest import REPO, ServerProcess
from tests.dcmtk import run_tool
from tests.factory import make_dataset, make_file


def _pacs(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pacs", *arguments], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def _import_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming"
    for n in range(5):
        make_file(folder / "nested", patient_id="IMP", instance=n)
    (folder / "notes.txt").write_text("not an image")
    (folder / "random.bin").write_bytes(bytes(range(256)) * 4)
    # A bare data set without the Part 10 header, as some old tools write.
    bare: Dataset = make_dataset(patient_id="IMP", instance=99)
    del bare.file_meta
    bare.save_as(folder / "bare.dcm", implicit_vr=True, little_endian=True)
    broken = make_file(tmp_path / "b", patient_id="IMP", instance=7, StudyInstanceUID="1.2.x")
    (folder / "broken.dcm").write_bytes(broken.read_bytes())
    return folder


def test_import_stores_dicom_skips_the_rest_and_is_idempotent(
    tmp_path: Path, database_url: str
) -> None:
    folder = _import_folder(tmp_path)
    common = ["--storage", str(tmp_path / "archive"), "--database", database_url]
    first = _pacs("import", *common, str(folder))
    assert "stored: 6" in first.stdout
    assert "not DICOM (skipped): 2" in first.stdout
    assert "rejected: 1" in first.stdout and "StudyInstanceUID" in first.stdout
    assert first.returncode == 1  # something was rejected

    second = _pacs("import", *common, str(folder))
    assert "stored: 0" in second.stdout and "duplicates: 6" in second.stdout

    stats = _pacs("stats", *common)
    assert stats.returncode == 0
    assert "instances: 6" in stats.stdout and "patients:  1" in stats.stdout
    assert len(list((tmp_path / "archive").rglob("*.dcm"))) == 6


def test_import_of_missing_path_is_one_line(tmp_path: Path) -> None:
    result = _pacs("import", "--storage", str(tmp_path / "a"), "--database",
                   f"sqlite:///{tmp_path}/i.sqlite", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_stops_the_server_cleanly(
    server_process: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_process()
    result = run_tool("storescu", ["-aec", "MINIPACS", "127.0.0.1", str(server.port),
                                   str(make_file(tmp_path / "in"))])
    assert result.returncode == 0
    assert server.terminate() == 0
    log = server.log.read_text()
    assert "received SIGTERM" in log and "stopped" in log
    assert "Traceback" not in log
