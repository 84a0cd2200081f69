"""The benchmark's report arithmetic: medians over runs, ratios within a run, the chart.

No server runs here: reports are built by hand, so each rule is checked on exact numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pacs.bench.aggregate import median_metric, median_ratios, rotated
from pacs.bench.chart import draw
from pacs.bench.cmd_merge import merge_reports
from pacs.bench.report import markdown, target_ratios
from tests.dcmtk import IN_CI


def _metric(value: float | None, error: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": "x", "ok": error is None, "error": error, "detail": {}}


def _run(**peers: dict[str, float]) -> dict[str, Any]:
    return {"peers": {name: {"metrics": {key: _metric(value) for key, value in rows.items()}}
                      for name, rows in peers.items()}}


# Issue #12: three runs give the middle one, and the report shows every run's value.
def test_median_metric_is_the_middle_run_with_every_run_listed() -> None:
    figure = median_metric([_metric(90.0), _metric(130.0), _metric(100.0)])
    assert figure["value"] == 100.0
    assert figure["detail"]["runs"] == [90.0, 130.0, 100.0]


# A count that came out wrong in any run is a failure, not a number (README, Benchmark).
def test_a_failure_in_one_run_fails_the_figure() -> None:
    figure = median_metric([_metric(90.0), _metric(None, "failed: got 3 of 4"), _metric(95.0)])
    assert not figure["ok"]
    assert figure["error"] == "failed: got 3 of 4 (run 2 of 3)"


def test_runs_skipped_for_time_are_left_out() -> None:
    figure = median_metric([_metric(90.0), _metric(None, "skipped: time limit reached")])
    assert figure["ok"] and figure["value"] == 90.0


# Ratios are taken within a run, then their median over the runs (not a ratio of medians).
def test_median_ratio_is_the_median_of_each_runs_ratio() -> None:
    tables = [{"minipacs": {"store_1_rate": ratio}} for ratio in (0.8, 1.4, 1.1)]
    medians, ranges = median_ratios(tables)
    assert medians["minipacs"]["store_1_rate"] == pytest.approx(1.1)
    assert ranges["minipacs"]["store_1_rate"] == [0.8, 1.4]


# Issue #12's targets: throughput against the faster, latency against the quicker of the two.
def test_target_ratio_compares_with_the_better_of_orthanc_and_dcmqrscp() -> None:
    run = _run(minipacs={"store_1_rate": 120.0, "find_assoc_series_of_study": 6.0},
               orthanc={"store_1_rate": 100.0, "find_assoc_series_of_study": 3.0},
               dcmqrscp={"store_1_rate": 150.0, "find_assoc_series_of_study": 5.0})
    ratios = target_ratios(run)
    assert ratios["minipacs"]["store_1_rate"] == pytest.approx(0.8)
    assert ratios["minipacs"]["find_assoc_series_of_study"] == pytest.approx(2.0)
    assert set(ratios) == {"minipacs"}


def test_peak_rss_target_is_orthancs_alone() -> None:
    run = _run(minipacs={"peak_rss_mb": 80.0}, orthanc={"peak_rss_mb": 200.0},
               dcmqrscp={"peak_rss_mb": 40.0})
    assert target_ratios(run)["minipacs"]["peak_rss_mb"] == pytest.approx(0.4)


def test_each_run_starts_with_another_peer() -> None:
    names = ["minipacs", "orthanc", "dcmqrscp"]
    assert [rotated(names, run)[0] for run in range(3)] == names


def _report() -> dict[str, Any]:
    meta = {"machine": {"date": "2026-12-02T10:00:00", "arch": "x86_64", "cpu": "test",
                        "cores": 2, "memory_gib": 1, "os": "test", "kernel": "test",
                        "load_average_at_start": [0.0]},
            "versions": {"dcmtk": "3.6.7", "orthanc": "Orthanc 1.10", "pynetdicom": "3",
                         "pydicom": "3", "peewee": "3", "python": "3.11", "sqlite": "3"},
            "dataset": {"instances": 10, "rows": 32, "columns": 32, "total_bytes": 10_000,
                        "patients": 1, "studies": 1},
            "options": {"find_queries": 1}, "command": "scripts/bench"}
    runs = [_run(minipacs={"store_1_rate": 100.0 + n, "peak_rss_mb": 70.0},
                 orthanc={"store_1_rate": 90.0, "peak_rss_mb": 200.0},
                 storescp={"store_1_rate": 300.0}) for n in range(3)]
    report: dict[str, Any] = {"meta": meta, "runs": runs, "peers": {}}
    for name in ("minipacs", "orthanc", "storescp"):
        report["peers"][name] = {"metrics": runs[1]["peers"][name]["metrics"], "config": {}}
    report["target_ratios"], report["target_ranges"] = median_ratios(
        [target_ratios(run) for run in runs])
    report["limit_ratios"] = {"minipacs": {"store_1_rate": 101.0 / 300.0}}
    return report


def test_markdown_shows_the_median_target_ratio_with_its_range() -> None:
    text = markdown(_report())
    assert "Against the better of Orthanc and dcmqrscp, row by row, median of 3 runs" in text
    assert "| C-STORE, 1 association (instances/s) | 1.12× (1.11–1.13) |" in text
    assert "| C-STORE, 1 association, against storescp (goal ≥ 0.7) | 0.34× |" in text


# Issue #12: the ratio table as a PNG chart (matplotlib, the `bench` extra).
def test_chart_is_written_as_png(tmp_path: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("matplotlib is not installed - under CI=true this is an error")
        pytest.skip("matplotlib is not installed (pip install -e '.[bench]')")
    path = tmp_path / "ratios.png"
    assert draw(_report(), path) is None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _runs_report(rates: list[float]) -> dict[str, Any]:
    report = _report()
    report["runs"] = [_run(minipacs={"store_1_rate": rate}, orthanc={"store_1_rate": 100.0})
                      for rate in rates]
    return report


# Issue #12 (median ratio per row over runs): `scripts/bench merge` takes the median of every
# run's ratio over all the reports' runs, each ratio still taken within its run.
def test_merged_reports_give_the_median_ratio_over_all_their_runs() -> None:
    merged = merge_reports([_runs_report([90.0, 100.0, 130.0]),
                            _runs_report([140.0, 150.0, 160.0])])
    assert len(merged["runs"]) == 6
    assert merged["target_ratios"]["minipacs"]["store_1_rate"] == pytest.approx(1.35)
    assert merged["target_ranges"]["minipacs"]["store_1_rate"] == [0.9, 1.6]


def test_reports_of_different_data_sets_are_not_merged() -> None:
    other = _runs_report([100.0])
    other["meta"] = {**other["meta"], "dataset": {**other["meta"]["dataset"], "instances": 20}}
    with pytest.raises(ValueError, match="different data sets"):
        merge_reports([_runs_report([100.0]), other])
