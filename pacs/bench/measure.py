"""What the benchmark measures on each peer, in order, with the expected counts checked.

Layer: tool (pacs.bench). For an archive peer: a fresh server takes the data set over one
association (store rate, disk per instance), then answers C-FIND (five query shapes, by
findscu and on one pynetdicom association), C-MOVE (one study; every study) to a storescp, and
C-GET of one study, and over DICOMweb (pacs/bench/dicomweb.py) QIDO-RS and WADO-RS; then a
second fresh server takes the data set over four parallel associations, and a third by
STOW-RS. The receiving reference (storescp) only takes the two stores. Peak RSS is
sampled throughout, the server's CPU time (user + system, its whole process tree) is taken
around each store; dirty pages are flushed (sync) before each timed transfer.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pacs.bench import clients
from pacs.bench.dataset import BASE_DATE, SURNAMES, Manifest
from pacs.bench.peers import Destination, Peer, Running
from pacs.bench.procs import ProcessRegistry, RssSampler, tree_cpu_seconds

MB = 1_000_000
SINGLE_STUDY_REPEATS = 3


@dataclass
class Metric:
    """One figure of one peer: its value (None when it failed), unit and what went wrong."""

    value: float | None
    unit: str
    ok: bool = True
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueryShape:
    """A C-FIND the benchmark times: its identifier and how many matches it must return."""

    name: str
    description: str
    query: clients.Query
    expected: int


@dataclass
class Context:
    """Everything a peer's measurement needs: data, folders, processes, limits."""

    manifest: Manifest
    data_folder: Path
    work: Path
    registry: ProcessRegistry
    deadline: float
    find_queries: int
    destination: Destination | None
    destination_received: Path | None
    profile: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """The data set's files, in generation order."""
        return [self.data_folder / name for name in self.manifest.files]

    def timeout(self, base: float) -> float:
        """`base` seconds, or what is left of the time limit if less."""
        return max(0.0, min(base, self.deadline - time.monotonic()))

    def bulk_timeout(self, instances: int) -> float:
        """Time allowed for moving `instances` instances (≥ 5/s plus a minute)."""
        return self.timeout(60 + instances * 0.2)


def query_shapes(manifest: Manifest) -> list[QueryShape]:
    """The five C-FIND shapes (Study Root) and their expected match counts."""
    studies = manifest.studies
    target = manifest.target_study
    patient = target.patient_id
    surname = SURNAMES[0]
    date_range = f"{BASE_DATE:%Y%m%d}-{BASE_DATE + timedelta(days=9):%Y%m%d}"
    series = target.series[0]
    study_keys = [("StudyInstanceUID", ""), ("PatientName", ""), ("PatientID", ""),
                  ("StudyDate", ""), ("StudyTime", ""), ("AccessionNumber", ""),
                  ("StudyDescription", "")]

    def replace(keys: clients.Query, **values: str) -> clients.Query:
        return [(k, values.get(k, v)) for k, v in keys]

    return [
        QueryShape("study_by_patient_id", f"STUDY, PatientID={patient}",
                   [("QueryRetrieveLevel", "STUDY"), *replace(study_keys, PatientID=patient)],
                   sum(1 for s in studies if s.patient_id == patient)),
        QueryShape("study_by_name_prefix", f"STUDY, PatientName={surname[:3]}*",
                   [("QueryRetrieveLevel", "STUDY"),
                    *replace(study_keys, PatientName=f"{surname[:3]}*")],
                   sum(1 for s in studies if s.patient_name.startswith(surname[:3]))),
        QueryShape("study_by_date_range", f"STUDY, StudyDate={date_range}",
                   [("QueryRetrieveLevel", "STUDY"), *replace(study_keys, StudyDate=date_range)],
                   sum(1 for s in studies if date_range[:8] <= s.date <= date_range[9:])),
        QueryShape("series_of_study", "SERIES, StudyInstanceUID, Modality=CT",
                   [("QueryRetrieveLevel", "SERIES"), ("StudyInstanceUID", target.uid),
                    ("SeriesInstanceUID", ""), ("Modality", "CT"), ("SeriesNumber", ""),
                    ("SeriesDescription", "")],
                   len(target.series)),
        QueryShape("instances_of_series", "IMAGE, StudyInstanceUID, SeriesInstanceUID",
                   [("QueryRetrieveLevel", "IMAGE"), ("StudyInstanceUID", target.uid),
                    ("SeriesInstanceUID", series.uid), ("SOPInstanceUID", ""),
                    ("SOPClassUID", ""), ("InstanceNumber", "")],
                   len(series.instances)),
    ]


def _count_check(outcome: clients.Outcome, expected: int) -> str | None:
    if outcome.count != expected:
        reason = f"; {outcome.error}" if outcome.error else ""
        return f"failed: expected counts not returned (got {outcome.count} of {expected}{reason})"
    if outcome.error:
        return f"failed: {outcome.error}"
    return None


def rate_metrics(outcome: clients.Outcome, expected: int, total_bytes: int | None) -> dict[
        str, Metric]:
    """instances/s (and MB/s when `total_bytes` is given) or failures, from one operation."""
    error = _count_check(outcome, expected)
    detail = {"seconds": round(outcome.seconds, 3), "count": outcome.count,
              "expected": expected}
    rate = expected / outcome.seconds if outcome.seconds > 0 else None
    result = {"rate": Metric(None if error else rate, "instances/s", error is None, error,
                             detail)}
    if total_bytes is not None:
        mbps = total_bytes / MB / outcome.seconds if outcome.seconds > 0 else None
        result["mbps"] = Metric(None if error else mbps, "MB/s", error is None, error, detail)
    return result


def latency_metric(outcome: clients.Outcome, expected: int) -> Metric:
    """Median and p95 of per-query seconds, in ms; a failure when counts or statuses differ."""
    error = _count_check(outcome, expected)
    if not outcome.samples:
        return Metric(None, "ms", False, error or "no query ran")
    samples = sorted(outcome.samples)
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    detail = {"median_ms": statistics.median(samples) * 1000, "p95_ms": p95 * 1000,
              "queries": len(samples), "count": outcome.count, "expected": expected}
    return Metric(None if error else detail["median_ms"], "ms", error is None, error, detail)


def _skipped(unit: str, reason: str = "skipped: time limit reached") -> Metric:
    return Metric(None, unit, False, reason)


def measure_store(peer: Peer, ctx: Context, associations: int, folder: Path,
                  results: dict[str, Metric], keep: bool = False,
                  ) -> tuple[Running | None, RssSampler | None]:
    """Start a fresh server in `folder`, push the data set over `associations`; record."""
    key = f"store_{associations}"
    if ctx.timeout(1) <= 0:
        results[f"{key}_rate"] = _skipped("instances/s")
        results[f"{key}_mbps"] = _skipped("MB/s")
        results[f"{key}_cpu_ms"] = _skipped("ms")
        return None, None
    running = peer.start(folder, ctx.registry, ctx.destination)
    sampler = RssSampler(running.process.pid)
    manifest = ctx.manifest
    try:
        os.sync()  # earlier runs' dirty pages must not be written back during this one
        cpu_pids = peer.cpu_pids(running)
        cpu_before = tree_cpu_seconds(*cpu_pids)
        outcome = clients.store(("127.0.0.1", running.port), peer.ae_title, ctx.files,
                                associations, ctx.bulk_timeout(manifest.instances))
        cpu = tree_cpu_seconds(*cpu_pids) - cpu_before
        for name, metric in rate_metrics(outcome, manifest.instances,
                                         manifest.total_bytes).items():
            results[f"{key}_{name}"] = metric
        error = results[f"{key}_rate"].error
        results[f"{key}_cpu_ms"] = Metric(
            None if error else cpu * 1000 / manifest.instances, "ms", error is None, error,
            {"cpu_seconds": round(cpu, 3), "processes": cpu_pids})
        if associations == 1:
            per_instance = peer.disk_bytes(running) / max(1, manifest.instances)
            results["disk_bytes_per_instance"] = Metric(per_instance, "bytes")
    except BaseException:
        sampler.stop()
        peer.stop(running, ctx.registry)
        raise
    if keep:
        return running, sampler
    _finish(peer, running, sampler, ctx, results)
    return None, None


def _finish(peer: Peer, running: Running, sampler: RssSampler, ctx: Context,
            results: dict[str, Metric]) -> None:
    peak = sampler.stop()
    previous = results.get("peak_rss_mb")
    value = max(peak / MB, previous.value if previous and previous.value else 0.0)
    results["peak_rss_mb"] = Metric(value, "MB")
    peer.stop(running, ctx.registry)
    for path in running.data_paths:  # what the server stored; its logs stay
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def measure_queries_and_retrieves(peer: Peer, running: Running, ctx: Context,
                                  results: dict[str, Metric]) -> None:
    """C-FIND (both client styles), C-MOVE of one study and of all, C-GET of one study."""
    address = ("127.0.0.1", running.port)
    manifest = ctx.manifest
    for shape in query_shapes(manifest):
        for style, function in (("findscu", clients.find_processes),
                                ("assoc", clients.find_one_association)):
            key = f"find_{style}_{shape.name}"
            if ctx.timeout(1) <= 0:
                results[key] = _skipped("ms")
                continue
            deadline = time.monotonic() + ctx.timeout(120)
            outcome = function(address, peer.ae_title, shape.query, ctx.find_queries, deadline)
            results[key] = latency_metric(outcome, shape.expected)
    target = manifest.target_study
    if ctx.destination is None or ctx.destination_received is None:
        for key in ("move_study_rate", "move_all_rate"):
            results[key] = _skipped("instances/s", "skipped: no storescp for a destination")
    else:
        destination, received = ctx.destination.ae_title, ctx.destination_received
        queries = clients.write_move_queries(running.folder / "move-queries",
                                             [study.uid for study in manifest.studies])
        study_query = [queries[manifest.studies.index(target)]]
        results["move_study_rate"] = _timed(
            ctx, target.instance_count, SINGLE_STUDY_REPEATS,
            lambda timeout: clients.move(address, peer.ae_title, destination, study_query,
                                         received, timeout))
        results["move_all_rate"] = _timed(
            ctx, manifest.instances, 1,
            lambda timeout: clients.move(address, peer.ae_title, destination, queries,
                                         received, timeout))
    output = running.folder / "get-received"
    results["get_study_rate"] = _timed(
        ctx, target.instance_count, SINGLE_STUDY_REPEATS,
        lambda timeout: clients.get(address, peer.ae_title, target.uid, output, timeout))


def _timed(ctx: Context, expected: int, repeats: int,
           operation: Callable[[float], clients.Outcome]) -> Metric:
    """Run a transfer `repeats` times (sync before each); the median run's rate, or the first
    failure. Short transfers (one study, a fraction of a second) are repeated to tame noise."""
    outcomes: list[clients.Outcome] = []
    for _ in range(repeats):
        if ctx.timeout(1) <= 0:
            break
        os.sync()
        outcome = operation(ctx.bulk_timeout(expected))
        outcomes.append(outcome)
        if _count_check(outcome, expected):
            return rate_metrics(outcome, expected, None)["rate"]
    if not outcomes:
        return _skipped("instances/s")
    outcomes.sort(key=lambda o: o.seconds)
    metric = rate_metrics(outcomes[len(outcomes) // 2], expected, None)["rate"]
    metric.detail["runs_seconds"] = [round(o.seconds, 3) for o in outcomes]
    return metric


def measure_peer(peer: Peer, ctx: Context, results: dict[str, Metric]) -> None:
    """Every measurement of one peer into `results`, each server fresh; servers stopped after.

    `results` keeps what was measured even when a later step raises.
    """
    from pacs.bench import dicomweb

    folder = ctx.work / peer.name
    shutil.rmtree(folder, ignore_errors=True)  # a reused --workdir: start empty
    running, sampler = measure_store(peer, ctx, 1, folder / "run1", results,
                                     keep=peer.archive)
    if running is not None and sampler is not None:
        try:
            measure_queries_and_retrieves(peer, running, ctx, results)
            dicomweb.measure_reads(running, ctx, results)
        finally:
            _finish(peer, running, sampler, ctx, results)
    # Last and on its own server: a peer that fails under parallel stores (dcmqrscp's index)
    # must not spoil the query and retrieve figures.
    measure_store(peer, ctx, 4, folder / "run4", results)
    dicomweb.measure_stow(peer, ctx, folder / "stow", results)
    one, four = results.get("store_1_rate"), results.get("store_4_rate")
    if one and four and one.value and four.value:
        results["store_scaling"] = Metric(four.value / one.value, "×")


def metrics_as_json(results: dict[str, Metric]) -> dict[str, Any]:
    """Plain dictionaries for the JSON report."""
    return {key: asdict(metric) for key, metric in results.items()}
