"""Several runs of the benchmark into one report: the median run per figure, and the median
of each run's ratios per row.

Layer: tool (pacs.bench); standard library only. Noise on shared machines is ±15–25 % between
runs and drifts within a run, so a ratio is only taken between peers of the same run, and the
report gives the median ratio over the runs (with their range), never a ratio of medians.
"""

from __future__ import annotations

import statistics
from typing import Any

RatioTable = dict[str, dict[str, float]]


def _skipped(metric: dict[str, Any]) -> bool:
    return not metric["ok"] and str(metric.get("error") or "").startswith("skipped")


def median_metric(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure over runs: the median run's metric (its value and detail), the runs' values
    in detail["runs"]. A failure in any run makes the figure failed: a count that was wrong
    once is not a measurement; runs skipped for time are left out."""
    measured = [m for m in runs if not _skipped(m)]
    if not measured:
        return runs[0]
    failed = [(number, m) for number, m in enumerate(runs, start=1) if not m["ok"]
              and not _skipped(m)]
    if failed:
        number, first = failed[0]
        return {**first, "error": f"{first['error']} (run {number} of {len(runs)})",
                "detail": {**first.get("detail", {}),
                           "runs": [m["value"] for m in runs]}}
    ordered = sorted(measured, key=lambda m: m["value"])
    middle = ordered[(len(ordered) - 1) // 2]  # the lower middle: a run that happened
    return {**middle, "detail": {**middle.get("detail", {}),
                                 "runs": [m["value"] for m in runs]}}


def median_metrics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure of one peer over its runs (metrics dictionaries as in the JSON)."""
    keys = list(dict.fromkeys(key for run in runs for key in run))
    return {key: median_metric([run[key] for run in runs if key in run]) for key in keys}


def median_ratios(tables: list[RatioTable]) -> tuple[RatioTable, dict[str, dict[str, list[float]]]]:
    """The median over runs of each (peer, row) ratio, and each one's [lowest, highest]."""
    medians: RatioTable = {}
    ranges: dict[str, dict[str, list[float]]] = {}
    peers = list(dict.fromkeys(peer for table in tables for peer in table))
    for peer in peers:
        rows = list(dict.fromkeys(row for table in tables for row in table.get(peer, {})))
        for row in rows:
            values = [table[peer][row] for table in tables if row in table.get(peer, {})]
            medians.setdefault(peer, {})[row] = statistics.median(values)
            ranges.setdefault(peer, {})[row] = [min(values), max(values)]
    return medians, ranges


def rotated(names: list[str], run: int) -> list[str]:
    """The peers' order in run `run` (0-based): rotated, so no peer always goes first or
    last while the machine warms up or other load comes and goes."""
    if not names:
        return names
    shift = run % len(names)
    return names[shift:] + names[:shift]
