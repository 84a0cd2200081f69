"""Smoke test of `scripts/bench`'s DICOMweb rows: a tiny run against minipacs and Orthanc with
its DICOMweb plugin measures STOW-RS, WADO-RS and QIDO-RS on both, every count checked. No
timing assertions: figures on a shared test machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dcmtk import require_tool
from tests.web.orthanc_support import dicomweb_plugin, orthanc_binary

REPO = Path(__file__).resolve().parent.parent
ROWS = ("stow_rate", "stow_mbps", "wado_study_mbps", "qido_study_by_patient_id",
        "qido_study_by_name_prefix", "qido_study_by_date_range")

pytestmark = pytest.mark.dcmtk


def test_bench_measures_dicomweb_on_minipacs_and_orthanc(tmp_path: Path) -> None:
    for tool in ("storescu", "storescp", "findscu", "movescu", "getscu"):
        require_tool(tool)
    orthanc_binary()
    dicomweb_plugin()
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "pacs.bench", "peers", "--instances", "20", "--small",
         "--peers", "minipacs,orthanc", "--find-queries", "2", "--time-limit", "240",
         "--json", str(output), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| STOW-RS, one request per study (instances/s) |" in result.stdout
    report = json.loads(output.read_text())
    for peer in ("minipacs", "orthanc"):
        entry = report["peers"][peer]
        assert "error" not in entry, entry.get("traceback")
        for key in ROWS:
            metric = entry["metrics"][key]
            assert metric["ok"], (peer, key, metric)
    assert "DICOMweb plugin" in report["peers"]["orthanc"]["config"]["args"]
    assert {"wado_study_mbps", "qido_study_by_patient_id"} <= report["ratios"]["minipacs"].keys()
