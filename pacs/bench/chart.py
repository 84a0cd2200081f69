"""The ratio table as a bar chart (PNG): people compare bars faster than tables.

Layer: tool (pacs.bench). Needs matplotlib, the optional `bench` extra
(`.venv/bin/pip install -e '.[bench]'`); without it the report says how to get the chart.
One horizontal bar per row and minipacs column, oriented so that longer is better for every
row: throughput ratios as they are, latency, RSS and CPU ratios inverted. A line marks 1
(as good as the better C++ archive); whiskers span the runs' range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pacs.bench.report import ROWS, STORE_GOAL


def _series(report: dict[str, Any]) -> tuple[list[str], dict[str, list[tuple[float, float,
                                                                              float] | None]]]:
    """Row labels and, per column, (value, low, high) per row, oriented "higher is better"."""
    table, ranges = report.get("target_ratios", {}), report.get("target_ranges", {})
    limits, limit_ranges = report.get("limit_ratios", {}), report.get("limit_ranges", {})
    columns = [name for name, values in table.items() if values]
    labels: list[str] = []
    series: dict[str, list[tuple[float, float, float] | None]] = {c: [] for c in columns}
    for row in ROWS:
        if row.key.endswith("_mbps") or not any(row.key in table[c] for c in columns):
            continue  # MB/s bars repeat the instances/s bars on one data set
        label = row.label.replace(" (ms, median / p95)", "").replace(" (instances/s)", "")
        labels.append(label + ("" if row.higher_is_better else " (inverted)"))
        for column in columns:
            value = table[column].get(row.key)
            if value is None or value <= 0:
                series[column].append(None)
                continue
            low, high = ranges.get(column, {}).get(row.key, [value, value])
            if row.higher_is_better:
                series[column].append((value, low, high))
            else:
                series[column].append((1 / value, 1 / high, 1 / low))
    for key, label in (("store_1_rate", "C-STORE, 1 association, ÷ storescp"),
                       ("store_4_rate", "C-STORE, 4 associations, ÷ storescp")):
        if not any(key in limits.get(c, {}) for c in columns):
            continue
        labels.append(f"{label} (goal {STORE_GOAL})")
        for column in columns:
            value = limits.get(column, {}).get(key)
            low, high = limit_ranges.get(column, {}).get(key, [value, value])
            series[column].append((value, low, high) if value else None)
    return labels, series


def draw(report: dict[str, Any], path: Path) -> str | None:
    """Write the chart to `path`; None when written, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (.venv/bin/pip install -e '.[bench]')"
    labels, series = _series(report)
    if not labels:
        return "no ratios against Orthanc or dcmqrscp to draw"
    columns = list(series)
    height = 0.8 / len(columns)
    figure, axes = plt.subplots(figsize=(10, 0.17 * len(labels) * max(1, len(columns)) + 1.8))
    for number, column in enumerate(columns):
        points = [(i, v) for i, v in enumerate(series[column]) if v is not None]
        if not points:
            continue
        y = [len(labels) - 1 - i + 0.4 - height * (number + 0.5) for i, _ in points]
        values = [v[0] for _, v in points]
        errors = [[v[0] - v[1] for _, v in points], [v[2] - v[0] for _, v in points]]
        bars = axes.barh(y, values, height=height * 0.9, xerr=errors, capsize=2,
                         label=column, error_kw={"elinewidth": 0.8})
        axes.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=7)
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_xscale("log", base=2)
    axes.set_yticks(range(len(labels)), list(reversed(labels)), fontsize=8)
    axes.set_xlabel("× the better of Orthanc and dcmqrscp (÷ storescp rows: × storescp); "
                    "> 1 is better on every row", fontsize=8)
    runs = len(report.get("runs", ())) or 1
    meta = report.get("meta", {})
    axes.set_title(f"minipacs against the C++ archives — median of {runs} run"
                   f"{'s' if runs > 1 else ''}, {meta.get('dataset', {}).get('instances', '?')} "
                   f"instances, {meta.get('machine', {}).get('date', '')[:10]}", fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    axes.set_ylim(-0.6, len(labels) - 0.4)
    axes.grid(axis="x", which="both", linewidth=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None
