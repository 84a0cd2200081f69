"""`scripts/bench merge A.json B.json …`: one report over the runs of several invocations of
`scripts/bench` on the same data set (Markdown on stdout, JSON, the ratio chart).

Layer: tool (pacs.bench). Reads the JSON files `scripts/bench` writes; starts nothing.

Why: on a shared machine the ratios swing ±15-25 % between runs; the same command run again
adds runs, and the median of every run's ratios is steadier than either invocation's. Ratios
stay taken within each run; only the medians and ranges are taken anew over all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pacs.bench import report as reporting
from pacs.bench.chart import draw as draw_chart
from pacs.bench.cmd_peers import aggregate_runs

HELP = "one report over the runs of several `scripts/bench` JSON files (same data set)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `scripts/bench merge`."""
    parser.add_argument("reports", nargs="+", type=Path, metavar="JSON",
                        help="files written by `scripts/bench --json` (or its default)")
    parser.add_argument("--json", type=Path, help="write the merged report here")
    parser.add_argument("--chart", type=Path, help="the chart (default: --json with .png)")
    parser.add_argument("--baseline", help="peer of the baseline table (default: orthanc)")


def merge_reports(reports: list[dict[str, Any]], baseline: str | None = None) -> dict[str, Any]:
    """The first report with every report's runs and peers, medians and ranges over all runs;
    ValueError when they were not measured on the same data set."""
    datasets = {json.dumps(r.get("meta", {}).get("dataset"), sort_keys=True) for r in reports}
    if len(datasets) != 1:
        raise ValueError("the reports were measured on different data sets")
    merged = dict(reports[0])
    merged["runs"] = [run for report in reports for run in report.get("runs", [])]
    merged["peers"] = {}
    for report in reports:
        for name, entry in report.get("peers", {}).items():
            merged["peers"].setdefault(name, dict(entry))
    merged["meta"] = {**reports[0].get("meta", {}), "merged_runs": len(merged["runs"])}
    aggregate_runs(merged, baseline)
    return merged


def run(arguments: argparse.Namespace) -> int:
    """Merge, print the Markdown report, write the JSON and the chart."""
    try:
        reports = [json.loads(path.read_text()) for path in arguments.reports]
        merged = merge_reports(reports, arguments.baseline)
    except (OSError, ValueError) as exc:
        print(f"bench merge: {exc}", file=sys.stderr)
        return 2
    sources = ", ".join(str(path) for path in arguments.reports)
    text = f"Runs of {sources}, merged.\n\n" + reporting.markdown(merged)
    if arguments.json is not None:
        chart_path = arguments.chart or arguments.json.with_suffix(".png")
        why_not = draw_chart(merged, chart_path)
        merged["chart"] = str(chart_path) if why_not is None else None
        text += f"\nChart: {chart_path}\n" if why_not is None else f"\nNo chart: {why_not}.\n"
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(merged, indent=2, default=str))
    print(text)
    return 0
