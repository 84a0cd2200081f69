"""`pacs verify`, `pacs reindex` and `pacs delete` as an operator runs them, on both backends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pacs.archive.files import trash_root
from pacs.services.context import Services
from tests.conftest import REPO, ServerProcess
from tests.dcmtk import dcmtk_env, require_tool
from tests.factory import make_dataset, make_file, write_dataset


def _pacs(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pacs", *arguments], capture_output=True,
                          text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
def common(archive: Path, database_url: str, tmp_path: Path) -> list[str]:
    """The flags every command of one test shares: an empty config, the archive, the index."""
    config = tmp_path / "empty.toml"
    config.write_text("")
    return ["--config", str(config), "--storage", str(archive), "--database", database_url]


@pytest.fixture
def second_database(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    """Another empty index on the same backend."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/second.sqlite"
    return request.getfixturevalue("postgres_server").new_database()


def _import(tmp_path: Path, common: list[str], count: int = 6, **kwargs: object) -> Path:
    folder = tmp_path / f"incoming-{kwargs.get('patient_id', 'P')}"
    for n in range(count):
        make_file(folder, instance=n, study=f"S{n % 2}", **kwargs)
    assert _pacs("import", *common, str(folder)).returncode == 0
    return folder


def test_verify_of_a_consistent_archive_exits_0(tmp_path: Path, common: list[str]) -> None:
    _import(tmp_path, common)
    result = _pacs("verify", *common)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked: 6 index rows, 6 files" in result.stdout and "no problems" in result.stdout


def test_verify_names_each_problem_and_repair_fixes_what_it_may(
    tmp_path: Path, common: list[str], archive: Path
) -> None:
    _import(tmp_path, common)
    files = sorted(archive.rglob("*.dcm"))
    files[0].unlink()  # a row without its file
    files[1].write_bytes(files[1].read_bytes()[:-1] + b"\x07")  # changed bytes
    orphan = write_dataset(make_dataset(patient_id="ORPHAN"), archive / "lost+found")
    (archive / ".tmp" / "crash.dcm").write_bytes(b"half a file")

    found = _pacs("verify", *common, "--temp-age", "0")
    assert found.returncode == 1
    for kind in ("missing-file", "checksum-mismatch", "orphan-file", "temp-file"):
        assert f"{kind}: 1 found, 0 repaired" in found.stdout, found.stdout
    assert str(orphan.relative_to(archive)) in found.stdout

    repaired = _pacs("verify", *common, "--temp-age", "0", "--repair")
    assert repaired.returncode == 1  # the missing file and the changed bytes need a human
    assert "orphan-file: 1 found, 1 repaired" in repaired.stdout
    assert "temp-file: 1 found, 1 repaired" in repaired.stdout
    assert "2 problems need attention" in repaired.stdout

    forgot = _pacs("verify", *common, "--repair", "--forget-missing")
    assert "missing-file: 1 found, 1 repaired" in forgot.stdout
    assert "checksum-mismatch: 1 found, 0 repaired" in forgot.stdout and forgot.returncode == 1


def test_quick_verify_skips_checksums(tmp_path: Path, common: list[str], archive: Path) -> None:
    _import(tmp_path, common)
    first = sorted(archive.rglob("*.dcm"))[0]
    first.write_bytes(first.read_bytes()[:-1] + b"\x07")
    result = _pacs("verify", *common, "--quick")
    assert result.returncode == 0 and "(sizes only)" in result.stdout


def test_forget_missing_without_repair_is_a_usage_error(common: list[str]) -> None:
    result = _pacs("verify", *common, "--forget-missing")
    assert result.returncode == 2 and "needs --repair" in result.stderr


def test_reindex_into_an_empty_index_rebuilds_it_and_is_idempotent(
    tmp_path: Path, common: list[str], archive: Path, second_database: str
) -> None:
    _import(tmp_path, common)
    _import(tmp_path, common, count=3, patient_id="OTHER")
    expected = _pacs("stats", *common).stdout
    fresh = [*common[:-1], second_database]
    first = _pacs("reindex", *fresh)
    assert first.returncode == 0, first.stderr
    assert "files: 9" in first.stdout and "indexed: 9" in first.stdout
    assert _pacs("stats", *fresh).stdout == expected
    again = _pacs("reindex", *fresh)
    assert "rows without a file removed: 0" in again.stdout and "moved to their UID path: 0" \
        in again.stdout
    assert _pacs("stats", *fresh).stdout == expected
    assert _pacs("verify", *fresh).returncode == 0


def test_reindex_exits_1_naming_a_file_it_cannot_index(
    tmp_path: Path, common: list[str], archive: Path
) -> None:
    _import(tmp_path, common)
    (archive / "ab").mkdir(exist_ok=True)
    (archive / "ab" / "junk.dcm").write_bytes(b"junk")
    result = _pacs("reindex", *common)
    assert result.returncode == 1 and "ab/junk.dcm" in result.stdout
    assert "Traceback" not in result.stderr


def test_delete_of_a_study_removes_its_files_and_rows(
    tmp_path: Path, common: list[str], archive: Path
) -> None:
    _import(tmp_path, common)
    study = str(make_dataset(study="S0").StudyInstanceUID)
    result = _pacs("delete", *common, "--study", study)
    assert result.returncode == 0, result.stderr
    assert "deleted 3 instances, 3 files" in result.stdout
    assert len(list(archive.rglob("*.dcm"))) == 3
    assert "studies:   1" in _pacs("stats", *common).stdout
    assert _pacs("verify", *common).returncode == 0
    again = _pacs("delete", *common, "--study", study)
    assert again.returncode == 1 and "no study" in again.stderr


def test_delete_dry_run_lists_and_deletes_nothing(tmp_path: Path, common: list[str]) -> None:
    _import(tmp_path, common)
    result = _pacs("delete", *common, "--patient", "PAT1", "--dry-run")
    assert result.returncode == 0 and "would delete 6 instances in 2 studies" in result.stdout
    assert "instances: 6" in _pacs("stats", *common).stdout


def test_delete_needs_exactly_one_target(common: list[str]) -> None:
    assert _pacs("delete", *common).returncode == 2
    assert _pacs("delete", *common, "--study", "1.2", "--series", "1.3").returncode == 2
    wrong = _pacs("delete", *common, "--study", "1.2", "--issuer", "X")
    assert wrong.returncode == 2 and "--issuer goes with --patient" in wrong.stderr


def _trash_entries(archive: Path) -> int:
    """Entries of the trash root (lock files, folders) plus files moved into it."""
    root = archive / ".trash"
    if not root.is_dir():
        return 0
    return sum(len(names) for _, _, names in os.walk(root)) + len(list(root.iterdir()))


_MOMENTS = {"lock": 1, "manifest": 4, "half-moved": 80, "all-moved": 153, "purging": 153}


def _kill_delete_at(common: list[str], study: str, moment: str, archive: Path) -> None:
    """Start `pacs delete` of a 150-instance study, SIGKILL it at `moment`.

    Counted in trash entries: its lock file (1); the folder, its lock and manifest (4); files
    moved in (up to 153). "purging" waits for the count to fall again: the rows are gone and
    the trash folder is being removed.
    """
    process = subprocess.Popen([sys.executable, "-m", "pacs", "delete", *common, "--study",
                                study], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    peak = 0
    while process.poll() is None and time.monotonic() < deadline:
        count = _trash_entries(archive)
        peak = max(peak, count)
        if moment != "purging" and count >= _MOMENTS[moment]:
            break
        if moment == "purging" and peak >= _MOMENTS[moment] and count < peak:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def opened(services_factory: Callable[..., Services], database_url: str,
           tmp_path: Path) -> Iterator[Services]:
    yield services_factory(database_url)


# Issue #7: a delete is all or nothing, whenever it is killed, and never resurrected.
@pytest.mark.parametrize("moment", list(_MOMENTS))
def test_sigkill_during_delete_leaves_all_or_nothing(
    tmp_path: Path, common: list[str], archive: Path, opened: Services, moment: str
) -> None:
    folder = tmp_path / "big"
    for n in range(150):
        make_file(folder, patient_id="BIG", study="ONE", instance=n)
    assert _pacs("import", *common, str(folder)).returncode == 0
    study = str(make_dataset(patient_id="BIG", study="ONE").StudyInstanceUID)
    _kill_delete_at(common, study, moment, archive)

    repair = _pacs("verify", *common, "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    rows = opened.index.instances_under("study", study)
    files = list(archive.rglob("*.dcm"))
    assert (len(rows), len(files)) in ((150, 150), (0, 0)), (len(rows), len(files))
    assert all(opened.archive.exists(r.file_path) for r in rows)
    # Only a lock file younger than a minute may stay (it could be a delete just starting).
    assert all(p.suffix == ".lock" for p in trash_root(opened.archive).iterdir())
    assert _pacs("verify", *common).returncode == 0


# Reindex is documented as safe while the server stores: nothing stored meanwhile is lost.
def test_reindex_while_the_server_stores_loses_nothing(
    tmp_path: Path, database_url: str, server_process: Callable[..., ServerProcess]
) -> None:
    server = server_process()
    common = ["--config", str(server.folder / "empty.toml"), "--storage", str(server.storage),
              "--database", database_url]
    _import(tmp_path, common, count=80, patient_id="BEFORE")
    incoming = [make_file(tmp_path / "during", patient_id="DURING", instance=n)
                for n in range(80)]
    client = subprocess.Popen([require_tool("storescu"), "-aec", "MINIPACS", "127.0.0.1",
                               str(server.port), *map(str, incoming)], env=dcmtk_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rebuilt = _pacs("reindex", *common)
    assert client.wait(timeout=120) == 0
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "instances: 160" in _pacs("stats", *common).stdout
    assert _pacs("verify", *common).returncode == 0
