"""The benchmark's report: machine and versions, a Markdown table of absolute figures, ratios
against the better of Orthanc and dcmqrscp (the targets), against a baseline peer and against
the storescp receiving limit, failures, and the JSON.

Layer: tool (pacs.bench); standard library only (plus package metadata for versions).
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import sqlite3
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pacs.bench.peers import debian_version, tool_version

FIND_SHAPES = ("study_by_patient_id", "study_by_name_prefix", "study_by_date_range",
               "series_of_study", "instances_of_series")
QIDO_SHAPES = FIND_SHAPES[:3]  # the study-level searches


TARGET_PEERS = ("orthanc", "dcmqrscp")  # the C++ archives minipacs is measured against
STORE_GOAL = 0.7  # the long-run goal for the store rate against storescp


@dataclass(frozen=True)
class Row:
    """A line of the table: metric key, label, whether more is better, and which peers'
    better figure the target ratio compares with (none: the row is not a ratio target)."""

    key: str
    label: str
    higher_is_better: bool = True
    latency: bool = False
    target: tuple[str, ...] = TARGET_PEERS


ROWS: tuple[Row, ...] = (
    Row("store_1_rate", "C-STORE, 1 association (instances/s)"),
    Row("store_1_mbps", "C-STORE, 1 association (MB/s)"),
    Row("store_4_rate", "C-STORE, 4 associations (instances/s)"),
    Row("store_4_mbps", "C-STORE, 4 associations (MB/s)"),
    Row("store_scaling", "C-STORE, 4 ÷ 1 associations (×)", target=()),
    Row("store_1_cpu_ms", "server CPU per stored instance, 1 association (ms)", False),
    Row("store_4_cpu_ms", "server CPU per stored instance, 4 associations (ms)", False),
    Row("move_study_rate", "C-MOVE one study → storescp (instances/s)"),
    Row("move_all_rate", "C-MOVE every study, 1 association (instances/s)"),
    Row("get_study_rate", "C-GET one study (instances/s)"),
    *(Row(f"find_findscu_{shape}", f"C-FIND {shape}, findscu per query (ms, median / p95)",
          False, True) for shape in FIND_SHAPES),
    *(Row(f"find_assoc_{shape}", f"C-FIND {shape}, one association (ms, median / p95)",
          False, True) for shape in FIND_SHAPES),
    Row("stow_rate", "STOW-RS, one request per study (instances/s)"),
    Row("stow_mbps", "STOW-RS, one request per study (MB/s)"),
    Row("wado_study_mbps", "WADO-RS one study, as stored (MB/s)"),
    *(Row(f"qido_{shape}", f"QIDO-RS {shape}, one connection (ms, median / p95)",
          False, True) for shape in QIDO_SHAPES),
    Row("peak_rss_mb", "server peak RSS (MB)", False, target=("orthanc",)),
    Row("disk_bytes_per_instance", "disk bytes per instance (files + index)", False),
)


def machine() -> dict[str, Any]:
    """Date, architecture, CPU model, cores, memory and OS of this machine."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    os_name = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "arch": platform.machine(), "kernel": platform.release(), "os": os_name,
        "cpu": cpu or platform.processor(), "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    """Exact versions of the clients, the peers and minipacs's libraries."""
    result = {"python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version}
    for package in ("minipacs", "pynetdicom", "pydicom", "peewee"):
        try:
            result[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            result[package] = "not installed"
    dcmtk = tool_version(["storescu", "--version"])
    match = re.search(r"v(\d[\w.]*)\s+(\S+)", dcmtk)
    result["dcmtk"] = f"{match.group(1)} ({match.group(2)})" if match else dcmtk or "absent"
    result["orthanc"] = tool_version(["Orthanc", "--version"]) or "Orthanc absent"
    plugin = debian_version("orthanc-dicomweb")
    if plugin and "absent" not in result["orthanc"]:
        result["orthanc"] += f" with orthanc-dicomweb {plugin}"
    return result


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(metric: dict[str, Any] | None, row: Row) -> str:
    if metric is None:
        return "–"
    if not metric["ok"]:
        return "skipped" if str(metric.get("error", "")).startswith("skipped") else "**failed**"
    if row.latency:
        detail = metric["detail"]
        return f"{_number(detail['median_ms'])} / {_number(detail['p95_ms'])}"
    return _number(metric["value"])


def choose_baseline(peers: dict[str, Any], requested: str | None = None) -> str | None:
    """The baseline peer: the one asked for, else Orthanc, else dcmqrscp, when it ran."""
    candidates = [requested] if requested else ["orthanc", "dcmqrscp"]
    for name in candidates:
        if name and peers.get(name, {}).get("metrics"):
            return name
    return None


def ratios(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """peer value / baseline value for every row both have (latency: medians)."""
    peers, baseline = report["peers"], report.get("baseline")
    if not baseline:
        return {}
    base = peers[baseline]["metrics"]
    result: dict[str, dict[str, float]] = {}
    for name, peer in peers.items():
        values: dict[str, float] = {}
        for row in ROWS:
            mine, theirs = peer.get("metrics", {}).get(row.key), base.get(row.key)
            if mine and theirs and mine["ok"] and theirs["ok"] and theirs["value"]:
                values[row.key] = mine["value"] / theirs["value"]
        result[name] = values
    return result


def target_ratios(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each other peer's figure / the better of the target peers' (Orthanc, dcmqrscp), per
    row: throughput > 1 is faster, latency, RSS, CPU and disk < 1 is better."""
    peers = report["peers"]
    result: dict[str, dict[str, float]] = {}
    for name, peer in peers.items():
        if name in TARGET_PEERS or name == "storescp" or not peer.get("metrics"):
            continue
        values: dict[str, float] = {}
        for row in ROWS:
            theirs = [peers[t]["metrics"][row.key]["value"] for t in row.target
                      if peers.get(t, {}).get("metrics", {}).get(row.key, {}).get("ok")]
            mine = peer["metrics"].get(row.key)
            if not theirs or not mine or not mine["ok"]:
                continue
            best = max(theirs) if row.higher_is_better else min(theirs)
            if best:
                values[row.key] = mine["value"] / best
        result[name] = values
    return result


def limit_ratios(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each peer's store rate / storescp's (the receiving limit), over 1 and 4 associations."""
    limit = report["peers"].get("storescp", {}).get("metrics", {})
    result: dict[str, dict[str, float]] = {}
    for name, peer in report["peers"].items():
        values = {}
        for key in ("store_1_rate", "store_4_rate"):
            mine, theirs = peer.get("metrics", {}).get(key), limit.get(key)
            if mine and theirs and mine["ok"] and theirs["ok"] and theirs["value"]:
                values[key] = mine["value"] / theirs["value"]
        result[name] = values
    return result


def markdown(report: dict[str, Any]) -> str:
    """The whole report as Markdown: header, absolute table, ratio tables, notes."""
    meta, peers = report["meta"], report["peers"]
    ran = [name for name, peer in peers.items() if peer.get("metrics")]
    m, v = meta["machine"], meta["versions"]
    lines = [
        f"### minipacs benchmark — {m['date']}",
        "",
        f"Machine: {m['arch']}, {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"{m['os']} (kernel {m['kernel']}); load average at start "
        f"{m['load_average_at_start'][0]}.  ",
        f"Versions: DCMTK {v['dcmtk']}; {v['orthanc']}; pynetdicom {v['pynetdicom']}, "
        f"pydicom {v['pydicom']}, peewee {v['peewee']}, Python {v['python']}, "
        f"SQLite {v['sqlite']}"
        + (f", PostgreSQL {v['postgresql']}" if v.get("postgresql") else "") + ".  ",
        f"Data: {meta['dataset']['instances']} CT instances "
        f"{meta['dataset']['rows']}×{meta['dataset']['columns']} 16-bit "
        f"({meta['dataset']['total_bytes'] / 1e6:.0f} MB) over {meta['dataset']['patients']} "
        f"patients / {meta['dataset']['studies']} studies; C-FIND: "
        f"{meta['options']['find_queries']} queries per shape and client; "
        f"clients: DCMTK with TCP_NODELAY=1, pynetdicom SCU for one-association C-FIND, "
        f"Python's http.client on one keep-alive connection for DICOMweb.  ",
        f"Command: `{meta['command']}`",
        "",
    ]
    if len(report.get("runs", ())) > 1:
        lines += [f"{len(report['runs'])} runs, the peers in a rotated order each run; each figure "
                  "below is its median run's.", ""]
    if not ran:
        return "\n".join([*lines, "No peer ran.", *_absent(peers)])
    lines += ["| | " + " | ".join(ran) + " |", "|---|" + "---:|" * len(ran)]
    for row in ROWS:
        cells = [_cell(peers[name]["metrics"].get(row.key), row) for name in ran]
        if any(cell != "–" for cell in cells):
            lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    lines += _target_table(report, ran)
    baseline = report.get("baseline")
    ratio = report.get("ratios", {})
    others = [name for name in ran if name != baseline]
    if baseline and others:
        lines += ["", f"Ratios against **{baseline}**{_median_of(report)} (throughput: > 1 is "
                      "faster; latency, RSS, CPU, disk: < 1 is better; C-FIND by median):", "",
                  "| | " + " | ".join(others) + " |", "|---|" + "---:|" * len(others)]
        for row in ROWS:
            cells = [f"{ratio[name][row.key]:.2f}×" if row.key in ratio.get(name, {}) else "–"
                     for name in others]
            if any(cell != "–" for cell in cells):
                lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    limits = report.get("limit_ratios", {})
    archives = [name for name in ran if name != "storescp" and limits.get(name)]
    if archives:
        lines += ["", f"Store rate against the **storescp** receiving limit{_median_of(report)}"
                      f" (goal for minipacs: ≥ {STORE_GOAL}):", "",
                  "| | " + " | ".join(archives) + " |", "|---|" + "---:|" * len(archives)]
        for key, label in (("store_1_rate", "C-STORE, 1 association"),
                           ("store_4_rate", "C-STORE, 4 associations")):
            cells = [f"{limits[name][key]:.2f}×" if key in limits[name] else "–"
                     for name in archives]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Server settings: " + "; ".join(
        f"{name}: {peers[name].get('config', {}).get('args', '')}" for name in ran) + "."]
    failures = [f"- {name} `{key}`: {metric['error']}"
                for name in ran for key, metric in peers[name]["metrics"].items()
                if not metric["ok"]]
    if failures:
        lines += ["", "Failures (a failed figure is not a measurement):", *failures]
    lines += _absent(peers)
    return "\n".join(lines) + "\n"


def _median_of(report: dict[str, Any]) -> str:
    runs = len(report.get("runs", ())) or 1
    return f", median of {runs} runs" if runs > 1 else ""


def _target_table(report: dict[str, Any], ran: list[str]) -> list[str]:
    """Each minipacs column against the better of Orthanc and dcmqrscp, row by row, with the
    range over runs; then the store rate against storescp."""
    table = report.get("target_ratios", {})
    ranges = report.get("target_ranges", {})
    limits, limit_ranges = report.get("limit_ratios", {}), report.get("limit_ranges", {})
    columns = [name for name in ran if table.get(name)]
    if not columns:
        return []

    def cell(value: float | None, spread: list[float] | None) -> str:
        if value is None:
            return "–"
        text = f"{value:.2f}×"
        return text + (f" ({spread[0]:.2f}–{spread[1]:.2f})" if spread and
                       spread[0] != spread[1] else "")

    lines = ["", f"Against the better of Orthanc and dcmqrscp, row by row{_median_of(report)}"
                 " (range over runs in brackets; target: throughput ≥ 1, latency, RSS against "
                 "Orthanc's, CPU and disk ≤ 1):", "",
             "| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for row in ROWS:
        cells = [cell(table[name].get(row.key), ranges.get(name, {}).get(row.key))
                 for name in columns]
        if any(c != "–" for c in cells):
            lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    for key, label in (("store_1_rate", "C-STORE, 1 association, against storescp"),
                       ("store_4_rate", "C-STORE, 4 associations, against storescp")):
        cells = [cell(limits.get(name, {}).get(key), limit_ranges.get(name, {}).get(key))
                 for name in columns]
        if any(c != "–" for c in cells):
            lines.append(f"| {label} (goal ≥ {STORE_GOAL}) | " + " | ".join(cells) + " |")
    return lines


def _absent(peers: dict[str, Any]) -> list[str]:
    missing = [f"- {name}: {peer['absent']}" for name, peer in peers.items() if peer.get("absent")]
    return ["", "Peers not measured:", *missing] if missing else []
