"""`scripts/bench peers` (the default): minipacs against dcmqrscp, Orthanc and the storescp
receiving limit, on one data set with the same clients; Markdown to stdout, JSON to a file.

Layer: tool (pacs.bench). Starts and stops every process itself (also on Ctrl-C or SIGTERM),
loopback only, bounded by --time-limit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from pacs.bench import report as reporting
from pacs.bench.dataset import generate
from pacs.bench.measure import Context, Metric, measure_peer, metrics_as_json
from pacs.bench.peers import DESTINATION_AE, Destination, Peer, StorescpPeer, make_peers
from pacs.bench.pgtemp import Databases, TemporaryCluster
from pacs.bench.procs import ProcessRegistry

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


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(arguments: argparse.Namespace) -> int:
    """Run the comparison; print Markdown, write JSON. Exit 0 when it completed."""
    names = [name.strip() for name in arguments.peers.split(",") if name.strip()]
    databases = [d.strip() for d in arguments.database.split(",") if d.strip()]
    unknown = [name for name in names if name not in ALL_PEERS]
    if unknown or not names:
        print(f"bench: --peers: unknown {', '.join(unknown) or '(none given)'}; choose from "
              f"{','.join(ALL_PEERS)}", file=sys.stderr)
        return 2
    for database in databases:
        if database not in ("sqlite", "postgresql") and not database.startswith(
                ("postgresql://", "postgres://")):
            print(f"bench: --database {database!r} is not sqlite, postgresql or a URL",
                  file=sys.stderr)
            return 2
    started = time.monotonic()
    load = os.getloadavg()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = arguments.json or Path("bench-results") / f"bench-{stamp}.json"
    temporary = arguments.workdir is None
    work = Path(tempfile.mkdtemp(prefix="minipacs-bench-")) if temporary else arguments.workdir
    work.mkdir(parents=True, exist_ok=True)
    registry = ProcessRegistry()
    cluster: TemporaryCluster | None = None
    peers: list[Peer] = []
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    report: dict[str, Any] = {"meta": {}, "peers": {}}
    try:
        if "postgresql" in databases:
            cluster = TemporaryCluster()
            databases = [cluster.url if d == "postgresql" else d for d in databases]
        peers = make_peers(names, databases, tuple(shlex.split(arguments.minipacs_args)))
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
        for peer in peers:
            entry: dict[str, Any] = {"archive": peer.archive, "config": peer.config}
            report["peers"][peer.name] = entry
            absent = peer.available()
            if absent:
                entry["absent"] = absent
                _progress(f"{peer.name}: absent ({absent})")
                continue
            entry["version"] = peer.version()
            _progress(f"{peer.name}: measuring")
            results: dict[str, Metric] = {}
            try:
                measure_peer(peer, ctx, results)
            except Exception as exc:  # noqa: BLE001 - one peer's crash must not end the run
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["traceback"] = traceback.format_exc()[-4000:]
                _progress(f"{peer.name}: error: {entry['error']}")
            entry["metrics"] = metrics_as_json(results)
        if arguments.profile:
            _profile(peers, ctx, json_path.parent, report)
    except KeyboardInterrupt:
        _progress("interrupted: stopping every process started")
        raise
    finally:
        registry.stop_all()
        signal.signal(signal.SIGTERM, previous)
        for peer in peers:
            if getattr(peer, "databases", None) is not None:
                peer.databases.drop_all()  # type: ignore[attr-defined]
        if cluster is not None:
            cluster.stop()
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    report["baseline"] = reporting.choose_baseline(report["peers"], arguments.baseline)
    report["ratios"] = reporting.ratios(report)
    report["limit_ratios"] = reporting.limit_ratios(report)
    report["meta"]["seconds"] = round(time.monotonic() - started, 1)
    text = reporting.markdown(report)
    if "profile" in report:
        from pacs.bench.profile import profile_markdown

        for name, summary in report["profile"].items():
            text += "\n" + profile_markdown(name, summary)
    print(text)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, default=str))
    _progress(f"JSON written to {json_path} ({report['meta']['seconds']} s in all)")
    return 0


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
                    "minipacs_args": arguments.minipacs_args},
        "dataset": {"instances": manifest.instances, "rows": manifest.rows,
                    "columns": manifest.columns, "patients": manifest.patients,
                    "studies": len(manifest.studies), "total_bytes": manifest.total_bytes},
    }


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
