"""Idle associations: CPU and threads of each server with N open, silent associations.

Issue #12's target: an idle server with 50 open, silent associations uses under 2 % of one
core. For each server (minipacs on a fresh SQLite archive with HTTP off, dcmqrscp, Orthanc,
started as `scripts/bench peers` starts them) it samples the user + system CPU time of the
server's process tree (/proc/<pid>/stat, forked children included) over `--seconds` with no
association (the baseline), then opens `--associations` pynetdicom SCUs with the Verification
context, one C-ECHO each, holds them silent for `--seconds` and samples again; the server's
threads (/proc/<pid>/status) and its established connections are read at the end of each
window. Every server's idle timeout is set longer than the whole hold (see `configure`).

Layer: tool (pacs.bench). Starts and stops every process itself (ProcessRegistry, also on
Ctrl-C and SIGTERM), loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from pacs.bench import report as reporting
from pacs.bench.peers import (
    DcmqrscpPeer,
    MinipacsPeer,
    OrthancPeer,
    Peer,
    SelectionError,
    make_peers,
    parse_peer_selection,
)
from pacs.bench.procs import (
    ProcessRegistry,
    established_connections,
    tree_cpu_seconds,
    tree_threads,
    workspace,
)
from pacs.bench.silent import QUIET_POLL, SilentAssociations
from pacs.config.settings import Settings

HELP = "idle CPU and threads of each server holding N open, silent associations"
ALL_PEERS = ("minipacs", "dcmqrscp", "orthanc")
TARGET_PERCENT = 2.0  # issue #12: under 2 % of one core with 50 silent associations
TICKS = os.sysconf("SC_CLK_TCK")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `scripts/bench idle`."""
    parser.add_argument("--associations", type=int, default=50,
                        help="associations held open and silent (default 50)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="length of each sampling window, idle and held (default 20)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds left alone before each window (default 2)")
    parser.add_argument("--peers", default=",".join(ALL_PEERS),
                        help="comma-separated subset of minipacs,dcmqrscp,orthanc (default: "
                             "all; those not installed are reported as absent)")
    parser.add_argument("--minipacs-args", default="",
                        help="extra `pacs serve` arguments, e.g. \"--workers 2\"")
    parser.add_argument("--minipacs-from", action="append", default=[], metavar="LABEL=DIR",
                        help="also measure minipacs from another checkout as column "
                             "minipacs@LABEL (before/after in one run); repeatable")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--workdir", type=Path,
                        help="folder for the servers (kept). Default: a temp folder, removed")


def idle_timeout(seconds: float, settle: float) -> int:
    """Seconds every server must let an association stay silent: the whole hold (settle,
    window, opening and echoing at a few per second on a slow server) with two minutes spare."""
    return int(settle + seconds + 120)


def configure(peer: Peer, associations: int, timeout: int) -> None:
    """Raise the peer's idle timeout and association limit above what the run needs, and
    say so in its `config` (the report prints it)."""
    if isinstance(peer, MinipacsPeer):
        limit = max(Settings().max_associations, associations + 2)  # +2: readiness probes
        peer.toml = (f"[server]\nmax_associations = {limit}\n\n"
                     f"[timeouts]\nnetwork = {timeout}\n")
        note = f"timeouts.network {timeout} s, server.max_associations {limit}, HTTP off"
    elif isinstance(peer, DcmqrscpPeer):
        peer.max_associations = associations + 2
        # No --dimse-timeout: its children wait for the next command without a timeout.
        note = f"MaxAssociations {peer.max_associations}, no DIMSE timeout (its default)"
    elif isinstance(peer, OrthancPeer):
        peer.overrides = {"DicomScpTimeout": timeout}
        note = f"DicomScpTimeout {timeout} s, DicomThreadsCount 4 (its default)"
    else:
        note = ""
    peer.config = {**peer.config, "args": f"{peer.config.get('args', '')}; idle: {note}"}


def run(arguments: argparse.Namespace) -> int:
    """Measure every peer in turn; print the Markdown table, write the JSON if asked."""
    try:
        names, sources = parse_peer_selection(arguments.peers, arguments.minipacs_from,
                                              ALL_PEERS)
    except SelectionError as error:
        print(f"bench idle: {error}", file=sys.stderr)
        return 2
    if arguments.associations < 1 or arguments.seconds <= 0 or arguments.settle < 0:
        print("bench idle: --associations must be ≥ 1, --seconds > 0, --settle ≥ 0",
              file=sys.stderr)
        return 2
    timeout = idle_timeout(arguments.seconds, arguments.settle)
    minipacs_args = (*shlex.split(arguments.minipacs_args), "--http-port", "0")
    peers = make_peers(names, ["sqlite"], minipacs_args, (1,), sources)
    for peer in peers:
        configure(peer, arguments.associations, timeout)
    report: dict[str, Any] = {"meta": _meta(arguments, timeout), "peers": {}}
    with workspace(arguments.workdir, "minipacs-idle-", "bench idle") as (work, registry):
        for peer in peers:
            report["peers"][peer.name] = measure(peer, arguments, work / peer.name, registry,
                                                 timeout)
    report["target_ratios"] = target_ratios(report["peers"])
    print(markdown(report))
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(report, indent=2, default=str))
        _progress(f"JSON written to {arguments.json}")
    return 0


def measure(peer: Peer, arguments: argparse.Namespace, folder: Path,
            registry: ProcessRegistry, timeout: int) -> dict[str, Any]:
    """One peer: start it, the idle window, open and echo the associations, the held window,
    release, stop. A failure is recorded in the entry, never raised."""
    entry: dict[str, Any] = {"config": peer.config}
    absent = peer.available()
    if absent:
        entry["absent"] = absent
        _progress(f"{peer.name}: absent ({absent})")
        return entry
    entry["version"] = peer.version()
    count = arguments.associations
    try:
        _progress(f"{peer.name}: starting")
        running = peer.start(folder, registry, None)
    except Exception as exc:  # noqa: BLE001 - one peer's failure must not end the run
        return _failed(entry, peer.name, exc)
    try:
        pids = peer.cpu_pids(running)
        time.sleep(arguments.settle)
        _progress(f"{peer.name}: idle, no association, {arguments.seconds:g} s")
        entry["idle"] = window(pids, running.port, arguments.seconds)
        held = SilentAssociations(running.port, peer.ae_title, count, timeout)
        try:
            _progress(f"{peer.name}: opening {count} associations, one C-ECHO each")
            opening = time.monotonic()
            held.open()
            held.echo()
            entry["open_seconds"] = round(time.monotonic() - opening, 2)
            held.quieten()
            time.sleep(arguments.settle)
            _progress(f"{peer.name}: {count} silent associations, {arguments.seconds:g} s")
            entry["held"] = window(pids, running.port, arguments.seconds)
            entry["held"]["still_open"] = still = held.still_open()
            if still < count:
                entry["error"] = (f"{count - still} of {count} associations were closed "
                                  "during the hold")
        finally:
            entry["released"] = held.release()
    except Exception as exc:  # noqa: BLE001
        _failed(entry, peer.name, exc)
    finally:
        peer.stop(running, registry)
    return entry


def window(pids: list[int], port: int, seconds: float) -> dict[str, Any]:
    """CPU of the server's trees over `seconds` left alone (% of one core), and its threads,
    processes and established connections at the end; the bench process's own CPU too."""
    server_before, client_before = tree_cpu_seconds(*pids), _own_cpu()
    started = time.monotonic()
    time.sleep(seconds)  # the measurement itself: nobody speaks while it runs
    elapsed = time.monotonic() - started
    server, client = tree_cpu_seconds(*pids) - server_before, _own_cpu() - client_before
    threads, processes = tree_threads(*pids)
    return {"seconds": round(elapsed, 3), "cpu_seconds": round(server, 3),
            "cpu_percent": round(100 * server / elapsed, 3),
            "resolution_percent": round(100 / (TICKS * elapsed), 3),
            "threads": threads, "processes": processes,
            "connections": established_connections(port),
            "client_cpu_percent": round(100 * client / elapsed, 3)}


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _failed(entry: dict[str, Any], name: str, exc: Exception) -> dict[str, Any]:
    entry["error"] = f"{type(exc).__name__}: {exc}"
    entry["traceback"] = traceback.format_exc()[-4000:]
    _progress(f"{name}: error: {entry['error']}")
    return entry


def _figures(entry: dict[str, Any]) -> dict[str, float]:
    """The rows of one peer that it measured: CPU idle and held, per association, threads."""
    idle, held = entry.get("idle"), entry.get("held")
    figures: dict[str, float] = {}
    if idle:
        figures.update(cpu_idle=idle["cpu_percent"], threads_idle=idle["threads"])
    if held and not entry.get("error"):
        figures.update(cpu_held=held["cpu_percent"], threads_held=held["threads"],
                       processes_held=held["processes"],
                       connections_held=held["connections"])
        if idle:
            figures["cpu_per_association"] = ((held["cpu_percent"] - idle["cpu_percent"])
                                              / max(held["still_open"], 1))
    return figures


ROWS = (  # key, label, compared with the better peer
    ("cpu_idle", "CPU, no association (% of one core)", True),
    ("cpu_held", "CPU, {n} silent associations (% of one core)", True),
    ("cpu_per_association", "CPU per silent association (% of one core)", True),
    ("threads_idle", "threads, no association", False),
    ("threads_held", "threads, {n} silent associations", True),
    ("processes_held", "processes, {n} silent associations", False),
    ("connections_held", "established connections at the end of the hold", False),
)


def target_ratios(peers: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Each minipacs column / the better (lower) of dcmqrscp and Orthanc, per compared row.
    A peer whose CPU stayed within one clock tick is taken at one tick, and the ratio is then
    a lower bound (`at_least`)."""
    best: dict[str, tuple[float, bool]] = {}
    for name in ("dcmqrscp", "orthanc"):
        entry = peers.get(name, {})
        for key, value in _figures(entry).items():
            floored = False
            if key.startswith("cpu"):
                tick = _one_tick(entry, key)
                if value <= tick:
                    value, floored = tick, True
            if key not in best or value < best[key][0]:
                best[key] = (value, floored)
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for name, entry in peers.items():
        if not name.startswith("minipacs"):
            continue
        mine = _figures(entry)
        result[name] = {key: {"ratio": mine[key] / best[key][0], "at_least": best[key][1]}
                        for key, _label, compared in ROWS
                        if compared and key in mine and key in best and best[key][0] > 0}
    return result


def _one_tick(entry: dict[str, Any], key: str) -> float:
    """One clock tick of CPU as % of one core over the row's window (per association: / N)."""
    if key == "cpu_idle":
        return float(entry["idle"]["resolution_percent"])
    held = entry["held"]
    tick = float(held["resolution_percent"])
    return tick / max(held["still_open"], 1) if key == "cpu_per_association" else tick


def _ratio(value: float) -> str:
    return f"{value:,.0f}×" if value >= 100 else f"{value:.1f}×" if value >= 10 else (
        f"{value:.2f}×")


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(
        value) >= 0.1 else f"{value:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """Header, the table with the servers side by side, minipacs against the better peer,
    the issue's target, settings and what was not measured."""
    meta, peers = report["meta"], report["peers"]
    m, v, n = meta["machine"], meta["versions"], meta["options"]["associations"]
    lines = [f"### minipacs idle associations — {m['date']}", "",
             f"Machine: {m['arch']}, {m['cpu']}, {m['cores']} cores, {m['os']} (kernel "
             f"{m['kernel']}); load average at start {m['load_average_at_start'][0]}.  ",
             f"Versions: DCMTK {v['dcmtk']}; {v['orthanc']}; pynetdicom {v['pynetdicom']}, "
             f"Python {v['python']}.  ",
             f"Clients: {n} pynetdicom SCUs (Verification, one C-ECHO each), quietened while "
             f"held (reactor parked, DUL poll {QUIET_POLL * 1000:.0f} ms); windows of "
             f"{meta['options']['seconds']:g} s after {meta['options']['settle']:g} s "
             "settling.  ", f"Command: `{meta['command']}`", ""]
    ran = [name for name, entry in peers.items() if entry.get("idle")]
    if ran:
        lines += ["| | " + " | ".join(ran) + " |", "|---|" + "---:|" * len(ran)]
        figures = {name: _figures(peers[name]) for name in ran}
        for key, label, _compared in ROWS:
            cells = [_number(figures[name][key]) if key in figures[name] else "–"
                     for name in ran]
            lines.append(f"| {label.format(n=n)} | " + " | ".join(cells) + " |")
        clients = [f"{peers[name]['held']['client_cpu_percent']:.2f}" if peers[name].get(
            "held") else "–" for name in ran]
        lines.append("| bench process (the clients) during the hold (% of one core) | "
                     + " | ".join(clients) + " |")
    ratios = report.get("target_ratios", {})
    columns = [name for name in ran if ratios.get(name)]
    if columns:
        lines += ["", "Against the better of dcmqrscp and Orthanc (< 1 is better; ≥: that "
                      "peer used at most one clock tick, counted as one):", "",
                  "| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for key, label, compared in ROWS:
            if compared:
                cells = [(("≥ " if ratios[name][key]["at_least"] else "")
                          + _ratio(ratios[name][key]["ratio"]))
                         if key in ratios[name] else "–" for name in columns]
                lines.append(f"| {label.format(n=n)} | " + " | ".join(cells) + " |")
    for name in ran:
        held = peers[name].get("held")
        if name.startswith("minipacs") and held and not peers[name].get("error"):
            verdict = "met" if held["cpu_percent"] < TARGET_PERCENT else "not met"
            lines += ["", f"Target (issue #12, {TARGET_PERCENT:g} % of one core with 50 silent "
                          f"associations): {name} {held['cpu_percent']:.2f} % with {n} — "
                          f"{verdict}."]
    lines += ["", "Server settings: " + "; ".join(
        f"{name}: {entry.get('config', {}).get('args', '')}" for name, entry in peers.items())
        + "."]
    failures = [f"- {name}: {entry['error']}" for name, entry in peers.items()
                if entry.get("error")]
    absent = [f"- {name}: {entry['absent']}" for name, entry in peers.items()
              if entry.get("absent")]
    if failures:
        lines += ["", "Failures (a failed figure is not a measurement):", *failures]
    if absent:
        lines += ["", "Peers not measured:", *absent]
    return "\n".join(lines) + "\n"


def _meta(arguments: argparse.Namespace, timeout: int) -> dict[str, Any]:
    return {"machine": reporting.machine(), "versions": reporting.versions(),
            "command": " ".join(["scripts/bench", *(shlex.quote(a) for a in sys.argv[1:])]),
            "options": {"associations": arguments.associations, "seconds": arguments.seconds,
                        "settle": arguments.settle, "peers": arguments.peers,
                        "minipacs_args": arguments.minipacs_args,
                        "minipacs_from": arguments.minipacs_from,
                        "idle_timeout_seconds": timeout, "client_poll_seconds": QUIET_POLL}}


def _progress(message: str) -> None:
    print(f"bench idle: {message}", file=sys.stderr, flush=True)
