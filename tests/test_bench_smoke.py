"""Smoke test of `scripts/bench`: a tiny run against minipacs and storescp still completes and
writes its JSON. No timing assertions: figures on a shared test machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dcmtk import require_tool

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.dcmtk


def test_bench_small_run_completes_and_writes_json(tmp_path: Path) -> None:
    for tool in ("storescu", "storescp", "findscu", "movescu", "getscu"):
        require_tool(tool)
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "pacs.bench", "peers", "--instances", "20", "--small",
         "--peers", "minipacs,storescp", "--find-queries", "2", "--time-limit", "240",
         "--runs", "2",
         "--json", str(output), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| C-STORE, 1 association (instances/s) |" in result.stdout

    report = json.loads(output.read_text())
    assert {"meta", "peers", "baseline", "ratios", "limit_ratios", "target_ratios",
            "runs"} <= report.keys()
    assert len(report["runs"]) == 2
    assert all(set(run["peers"]) == {"minipacs", "storescp"} for run in report["runs"])
    assert {"machine", "versions", "dataset", "options", "command"} <= report["meta"].keys()
    assert report["meta"]["dataset"]["instances"] == 20
    assert set(report["peers"]) == {"minipacs", "storescp"}

    minipacs = report["peers"]["minipacs"]
    assert "error" not in minipacs, minipacs.get("traceback")
    expected = {"store_1_rate", "store_1_mbps", "store_4_rate", "store_4_mbps",
                "store_1_cpu_ms", "store_4_cpu_ms", "store_scaling",
                "move_study_rate", "move_all_rate", "get_study_rate", "peak_rss_mb",
                "disk_bytes_per_instance",
                *(f"find_{style}_{shape}" for style in ("findscu", "assoc")
                  for shape in ("study_by_patient_id", "study_by_name_prefix",
                                "study_by_date_range", "series_of_study",
                                "instances_of_series"))}
    assert expected <= minipacs["metrics"].keys()
    for metric in minipacs["metrics"].values():
        assert {"value", "unit", "ok", "error", "detail"} <= metric.keys()
        # A figure is either a measurement or says why not.
        assert (metric["value"] is not None) == metric["ok"] or metric["error"]
    # Storing works today; every store must have been counted in full.
    assert minipacs["metrics"]["store_1_rate"]["ok"], minipacs["metrics"]["store_1_rate"]
    assert report["peers"]["storescp"]["metrics"]["store_1_rate"]["ok"]
    assert "minipacs" in report["limit_ratios"]
    # The figure is the median run's, and says what each run measured.
    assert len(minipacs["metrics"]["store_1_rate"]["detail"]["runs"]) == 2
    assert report["peers"]["storescp"]["metrics"]["store_1_cpu_ms"]["ok"]
    assert "bench: JSON written" in result.stderr
    # Every process the benchmark started is gone: none mentions the work folder any more.
    assert not _processes_mentioning(str(tmp_path))


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            found.append(f"{entry.name}: {command}")
    return found
