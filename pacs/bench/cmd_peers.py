"""`scripts/bench peers` (the default): minipacs against dcmqrscp, Orthanc and the storescp
receiving limit, on one data set with the same clients, `--runs` times; Markdown to stdout,
JSON and a PNG chart of the ratios to files.

Layer: tool (pacs.bench). Starts and stops every process itself (also on Ctrl-C or SIGTERM),
loopback only, bounded by --time-limit. Ratios are taken within each run and the report gives
their median over the runs (pacs/bench/aggregate.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from pacs.bench import report as reporting
from pacs.bench.aggregate import median_metrics, median_ratios, rotated
from pacs.bench.chart import draw as draw_chart
from pacs.bench.dataset import generate
from pacs.bench.measure import Context, Metric, measure_peer, metrics_as_json
from pacs.bench.peers import (
    DESTINATION_AE,
    Destination,
    MinipacsPeer,
    Peer,
    SelectionError,
    StorescpPeer,
    make_peers,
    parse_peer_selection,
)
from pacs.bench.pgtemp import Databases, TemporaryCluster
from pacs.bench.procs import workspace

HELP = "compare minipacs with dcmqrscp, Orthanc and storescp (default subcommand)"
ALL_PEERS = ("minipacs", "dcmqrscp", "orthanc", "storescp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `scripts/bench peers`."""
    parser.add_argument("--instances", type=int, default=1000,
                        help="instances in the data set (default 1000)")
    parser.add_argument("--small", action="store_true",
                        help="32×32 pixels instead of 512×512 (index-bound runs)")
    parser.add_argument("--peers", default=",".join(ALL_PEERS),
                        help="comma-separated subset of minipacs,dcmqrscp,orthanc,storescp "
                             "(default: all; those not installed are reported as absent)")
    parser.add_argument("--database", default="sqlite",
                        help="minipacs's index, comma-separated for several minipacs columns: "
                             "sqlite (default), postgresql (a throwaway cluster), or a "
                             "postgresql://USER@HOST:PORT/DB URL (fresh databases are created "
                             "next to DB and dropped afterwards)")
    parser.add_argument("--find-queries", type=int, default=20,
                        help="C-FIND queries per shape and client (default 20)")
    parser.add_argument("--time-limit", type=float, default=1800,
                        help="seconds for the whole run; what is left undone is 'skipped' "
                             "(default 1800)")
    parser.add_argument("--json", type=Path,
                        help="JSON output (default bench-results/bench-<timestamp>.json)")
    parser.add_argument("--workdir", type=Path,
                        help="folder for the data set and servers (kept; the data set is "
                             "reused by later runs). Default: a temp folder, removed")
    parser.add_argument("--baseline", help="peer to compute ratios against "
                                           "(default orthanc, else dcmqrscp)")
    parser.add_argument("--minipacs-args", default="",
                        help="extra `pacs serve` arguments, e.g. \"--workers 2 --max-pdu 131072\"")
    parser.add_argument("--profile", action="store_true",
                        help="also run minipacs under py-spy while it stores over one "
                             "association (an extra, untimed run) and summarise the stacks")
    parser.add_argument("--runs", type=int, default=3,
                        help="measure every peer this many times (peers in a rotated order "
                             "each run); ratios are taken within a run, the report gives "
                             "the median per row (default 3)")
    parser.add_argument("--workers", default="1",
                        help="comma-separated worker counts, one minipacs column each, e.g. "
                             "1,2 (columns minipacs and minipacs-w2; default 1)")
    parser.add_argument("--minipacs-from", action="append", default=[], metavar="LABEL=DIR",
                        help="also measure minipacs from another checkout (e.g. `git archive` "
                             "of an earlier commit) as column minipacs@LABEL; repeatable")
    parser.add_argument("--chart", type=Path,
                        help="PNG of the ratio table (default: next to the JSON; needs the "
                             "`bench` extra, matplotlib)")


def run(arguments: argparse.Namespace) -> int:
    """Run the comparison; print Markdown, write JSON. Exit 0 when it completed."""
    try:
        names, sources = parse_peer_selection(arguments.peers, arguments.minipacs_from,
                                              ALL_PEERS)
    except SelectionError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    databases = [d.strip() for d in arguments.database.split(",") if d.strip()]
    for database in databases:
        if database not in ("sqlite", "postgresql") and not database.startswith(
                ("postgresql://", "postgres://")):
            print(f"bench: --database {database!r} is not sqlite, postgresql or a URL",
                  file=sys.stderr)
            return 2
    try:
        workers = [int(count) for count in arguments.workers.split(",") if count.strip()]
    except ValueError:
        print("bench: --workers takes counts like 1,2", file=sys.stderr)
        return 2
    if arguments.runs < 1 or not workers or min(workers) < 1:
        print("bench: --runs and --workers must be ≥ 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    load = os.getloadavg()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = arguments.json or Path("bench-results") / f"bench-{stamp}.json"
    cluster: TemporaryCluster | None = None
    peers: list[Peer] = []
    report: dict[str, Any] = {"meta": {}, "peers": {}}
    with workspace(arguments.workdir, "minipacs-bench-", "bench") as (work, registry):
        try:
            if "postgresql" in databases:
                cluster = TemporaryCluster()
                databases = [cluster.url if d == "postgresql" else d for d in databases]
            peers = make_peers(names, databases, tuple(shlex.split(arguments.minipacs_args)),
                               workers, sources)
            if cluster is not None:
                for peer in peers:
                    if isinstance(peer, MinipacsPeer) and peer.database == cluster.url:
                        peer.index_pid = cluster.postmaster_pid()
            _progress(f"data set: {arguments.instances} instances"
                      f"{' (small)' if arguments.small else ''} in {work}")
            variant = "small" if arguments.small else "ct"
            data_folder = work / f"data-{arguments.instances}-{variant}"
            manifest = generate(data_folder, arguments.instances, arguments.small)
            report["meta"] = _meta(arguments, manifest, databases, load)
            destination = None
            destination_received = None
            dest_peer = StorescpPeer("benchdest", DESTINATION_AE)
            if any(p.archive for p in peers) and dest_peer.available() is None:
                running_dest = dest_peer.start(work / "destination", registry)
                destination = Destination(DESTINATION_AE, running_dest.port)
                destination_received = running_dest.data_paths[0]
            ctx = Context(manifest, data_folder, work, registry,
                          deadline=started + arguments.time_limit,
                          find_queries=arguments.find_queries, destination=destination,
                          destination_received=destination_received)
            report["runs"] = [_run(peers, ctx, number, arguments.runs, report["peers"])
                              for number in range(arguments.runs)]
            if arguments.profile:
                _profile(peers, ctx, json_path.parent, report)
        finally:
            registry.stop_all()  # the servers first: a database still in use cannot be dropped
            for peer in peers:
                if getattr(peer, "databases", None) is not None:
                    peer.databases.drop_all()  # type: ignore[attr-defined]
            if cluster is not None:
                cluster.stop()
    aggregate_runs(report, arguments.baseline)
    report["meta"]["seconds"] = round(time.monotonic() - started, 1)
    text = reporting.markdown(report)
    chart_path = arguments.chart or json_path.with_suffix(".png")
    why_not = draw_chart(report, chart_path)
    report["chart"] = str(chart_path) if why_not is None else None
    text += f"\nChart: {chart_path}\n" if why_not is None else f"\nNo chart: {why_not}.\n"
    if "profile" in report:
        from pacs.bench.profile import profile_markdown

        for name, summary in report["profile"].items():
            text += "\n" + profile_markdown(name, summary)
    print(text)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, default=str))
    _progress(f"JSON written to {json_path} ({report['meta']['seconds']} s in all)")
    return 0


def _run(peers: list[Peer], ctx: Context, number: int, runs: int,
         entries: dict[str, Any]) -> dict[str, Any]:
    """One run: every available peer measured once, in this run's order."""
    run: dict[str, Any] = {"peers": {}, "started": time.monotonic()}
    by_name = {peer.name: peer for peer in peers}
    order = rotated([peer.name for peer in peers], number)
    run["order"] = order
    for name in order:
        peer = by_name[name]
        entry = entries.setdefault(name, {"archive": peer.archive, "config": peer.config})
        absent = peer.available()
        if absent:
            entry["absent"] = absent
            if number == 0:
                _progress(f"{name}: absent ({absent})")
            continue
        entry["version"] = peer.version()
        _progress(f"run {number + 1}/{runs}: {name}: measuring")
        results: dict[str, Metric] = {}
        this: dict[str, Any] = {}
        try:
            measure_peer(peer, ctx, results)
        except Exception as exc:  # noqa: BLE001 - one peer's crash must not end the run
            this["error"] = f"{type(exc).__name__}: {exc}"
            this["traceback"] = traceback.format_exc()[-4000:]
            entry.setdefault("error", f"run {number + 1}: {this['error']}")
            entry.setdefault("traceback", this["traceback"])
            _progress(f"{name}: error: {this['error']}")
        this["metrics"] = metrics_as_json(results)
        run["peers"][name] = this
    run["seconds"] = round(time.monotonic() - run.pop("started"), 1)
    run["baseline"] = reporting.choose_baseline(run["peers"], None)
    return run


def aggregate_runs(report: dict[str, Any], baseline: str | None) -> None:
    """Per-run ratios, then the median figure per peer and the median ratio per row."""
    runs = report.get("runs", [])
    for run in runs:
        run["baseline"] = reporting.choose_baseline(run["peers"], baseline)
        run["ratios"] = reporting.ratios(run)
        run["limit_ratios"] = reporting.limit_ratios(run)
        run["target_ratios"] = reporting.target_ratios(run)
    for name, entry in report["peers"].items():
        measured = [run["peers"][name]["metrics"] for run in runs if name in run["peers"]]
        if measured:
            entry["metrics"] = median_metrics(measured)
    report["baseline"] = reporting.choose_baseline(report["peers"], baseline)
    for key in ("ratios", "limit_ratios", "target_ratios"):
        medians, ranges = median_ratios([run[key] for run in runs])
        report[key] = medians
        report[key.replace("ratios", "ranges")] = ranges


def _profile(peers: list[Peer], ctx: Context, out: Path, report: dict[str, Any]) -> None:
    from pacs.bench.profile import profile_store

    report["profile"] = {}
    for peer in peers:
        if peer.name.startswith("minipacs") and ctx.timeout(1) > 0:
            _progress(f"{peer.name}: profiling the store path with py-spy")
            report["profile"][peer.name] = profile_store(peer, ctx, out / "profiles")


def _meta(arguments: argparse.Namespace, manifest: Any, databases: list[str],
          load: tuple[float, float, float]) -> dict[str, Any]:
    versions = reporting.versions()
    postgres = [d for d in databases if d != "sqlite"]
    if postgres:
        try:
            versions["postgresql"] = Databases.version(postgres[0])
        except Exception as exc:  # noqa: BLE001
            versions["postgresql"] = f"unknown ({exc})"
    machine = reporting.machine()
    machine["load_average_at_start"] = [round(x, 2) for x in load]
    return {
        "machine": machine,
        "versions": versions,
        "command": " ".join(["scripts/bench", *(shlex.quote(a) for a in sys.argv[1:])]),
        "options": {"instances": arguments.instances, "small": arguments.small,
                    "peers": arguments.peers, "database": arguments.database,
                    "find_queries": arguments.find_queries,
                    "time_limit": arguments.time_limit,
                    "minipacs_args": arguments.minipacs_args, "runs": arguments.runs,
                    "workers": arguments.workers, "minipacs_from": arguments.minipacs_from},
        "dataset": {"instances": manifest.instances, "rows": manifest.rows,
                    "columns": manifest.columns, "patients": manifest.patients,
                    "studies": len(manifest.studies), "total_bytes": manifest.total_bytes},
    }


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
