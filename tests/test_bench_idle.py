"""Smoke tests of `scripts/bench idle`: a short run holds its silent associations open on each
server, samples it with and without them, releases every association and leaves no process
behind. No timing or CPU assertions: figures on a shared test machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.dcmtk import require_tool
from tests.test_bench_smoke import _processes_mentioning
from tests.web.orthanc_support import orthanc_binary

REPO = Path(__file__).resolve().parent.parent
ASSOCIATIONS = 3


def _run_idle(tmp_path: Path, peers: str) -> tuple[subprocess.CompletedProcess[str],
                                                   dict[str, Any]]:
    output = tmp_path / "idle.json"
    result = subprocess.run(
        [sys.executable, "-m", "pacs.bench", "idle", "--peers", peers,
         "--associations", str(ASSOCIATIONS), "--seconds", "1", "--settle", "0",
         "--json", str(output), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result, json.loads(output.read_text())


def _assert_held_and_released(entry: dict[str, Any]) -> None:
    assert "error" not in entry, entry.get("traceback", entry.get("error"))
    # PS3.8 9.2: every association stayed established (Sta6) through the silent hold ...
    assert entry["held"]["still_open"] == ASSOCIATIONS
    assert entry["held"]["connections"] == ASSOCIATIONS
    assert entry["idle"]["connections"] == 0
    # ... and PS3.8 7.2: each ended with an orderly A-RELEASE.
    assert entry["released"] == ASSOCIATIONS
    for window in ("idle", "held"):
        assert entry[window]["cpu_seconds"] >= 0
        assert entry[window]["threads"] >= 1


def test_bench_idle_holds_silent_associations_on_minipacs(tmp_path: Path) -> None:
    # PS3.7 9.1.5: one C-ECHO per association proves the server serves it before the hold.
    result, report = _run_idle(tmp_path, "minipacs")
    assert "| CPU, 3 silent associations (% of one core) |" in result.stdout
    assert "Target (issue #12" in result.stdout
    minipacs = report["peers"]["minipacs"]
    _assert_held_and_released(minipacs)
    assert minipacs["held"]["threads"] > minipacs["idle"]["threads"]
    assert "timeouts.network" in minipacs["config"]["args"]
    assert report["meta"]["options"]["associations"] == ASSOCIATIONS
    assert not _processes_mentioning(str(tmp_path))


@pytest.mark.dcmtk
def test_bench_idle_holds_silent_associations_on_dcmqrscp_and_orthanc(tmp_path: Path) -> None:
    require_tool("dcmqrscp")
    orthanc_binary()
    result, report = _run_idle(tmp_path, "dcmqrscp,orthanc")
    assert "| | dcmqrscp | orthanc |" in result.stdout
    for name in ("dcmqrscp", "orthanc"):
        _assert_held_and_released(report["peers"][name])
    # dcmqrscp forks a child per association: the sampled tree holds them all.
    assert report["peers"]["dcmqrscp"]["held"]["processes"] == ASSOCIATIONS + 1
    assert "DicomScpTimeout" in report["peers"]["orthanc"]["config"]["args"]
    assert not _processes_mentioning(str(tmp_path))
