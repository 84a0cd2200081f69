"""Index scale: C-FIND latency as the index grows to a million instances.

Fills an index through the index API in bulk (`Index.add_instances_bulk`; no pixel files are
written, C-FIND never reads them), 10,000 patients at 1M instances with a spread of studies,
series and instances per patient. After each size it starts `pacs serve` on that index and
times five query shapes over one association with two clients (TCP_NODELAY on both): a
pynetdicom SCU, which decodes every response and costs ~0.3-0.4 ms of its own per Pending
response, and a lean SCU on a raw socket that reads only each response's Status, so its figure
is the server's latency. `--minipacs-from LABEL=DIR` serves the same index with the code of
another checkout too, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from pacs.bench.lean_scu import LeanSCU
from pacs.bench.pgtemp import TemporaryCluster
from pacs.bench.procs import ProcessRegistry, free_port, wait_for_port
from pacs.index.database import Index
from pacs.index.records import IndexEntry
from pacs.model.values import fold_name, normalize_time

HELP = "C-FIND latency at 10k, 100k and 1M indexed instances, SQLite and PostgreSQL"
ROOT = "1.2.826.0.1.3680043.10.1071.7"
SURNAMES = ("SMITH JOHNSON WILLIAMS BROWN JONES GARCIA MILLER DAVIS RODRIGUEZ MARTINEZ "
            "HERNANDEZ LOPEZ GONZALEZ WILSON ANDERSON THOMAS TAYLOR MOORE JACKSON MARTIN LEE "
            "PEREZ THOMPSON WHITE HARRIS SANCHEZ CLARK RAMIREZ LEWIS ROBINSON WALKER YOUNG "
            "ALLEN KING WRIGHT SCOTT TORRES NGUYEN HILL FLORES GREEN ADAMS NELSON BAKER HALL "
            "RIVERA CAMPBELL MITCHELL CARTER ROBERTS").split()
GIVEN = "ANNA BEN CARLA DAVID EVA FRANK GRETA HUGO IRIS JONAS KARIN LEON MAYA NOAH".split()
MODALITIES = ("CT", "MR", "CR", "US", "DX", "PT", "NM", "MG")
SHAPES = ("patient-by-id", "study-by-name-wildcard", "study-by-date-range",
          "series-of-study", "images-of-series")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `scripts/bench index`."""
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="index sizes to measure at, instances (default 10k,100k,1M)")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="sqlite and/or postgresql (a temporary cluster is started)")
    parser.add_argument("--queries", type=int, default=40, help="queries per shape and size")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--workdir", type=Path, help="folder for the index (default: temp)")
    parser.add_argument("--minipacs-from", action="append", default=[], metavar="LABEL=DIR",
                        help="also serve each index with the `pacs` of another checkout "
                             "(e.g. `git archive COMMIT pacs | tar -x -C DIR`); repeatable")


@dataclass
class Sample:
    """Targets for the queries: a patient, one of its studies and one of that study's series."""

    patient_id: str
    surname: str
    study_uid: str
    series_uid: str
    study_date: str


@dataclass
class Population:
    """Generates a deterministic population of instances, remembering query targets."""

    seed: int = 1071
    samples: list[Sample] = field(default_factory=list)

    def entries(self) -> Iterator[IndexEntry]:
        """Instances patient by patient: 1-5 studies, 1-7 series, 1-15 instances (~96 each)."""
        rng = random.Random(self.seed)
        epoch = date(2015, 1, 1)
        now = datetime.now(UTC)
        patient = 0
        while True:
            patient += 1
            patient_id = f"PID{patient:07d}"
            surname = SURNAMES[rng.randrange(len(SURNAMES))]
            name = f"{surname}^{GIVEN[rng.randrange(len(GIVEN))]}"
            patient_columns = {
                "patient_id": patient_id, "patient_name": name,
                "patient_name_folded": fold_name(name),
                "patient_birth_date": f"{rng.randrange(1930, 2020)}0101",
                "patient_sex": rng.choice("FMO"),
            }
            for study in range(rng.randint(1, 5)):
                study_uid = f"{ROOT}.{patient}.{study + 1}"
                day = epoch + timedelta(days=rng.randrange(3650))
                time_of_day = f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}00"
                study_columns = {
                    "study_instance_uid": study_uid, "study_date": day.strftime("%Y%m%d"),
                    "study_time": time_of_day, "study_time_norm": normalize_time(time_of_day),
                    "accession_number": f"A{patient}{study}", "study_id": str(study + 1),
                    "study_description": "Routine",
                }
                series_count = rng.randint(1, 7)
                for series in range(series_count):
                    series_uid = f"{study_uid}.{series + 1}"
                    series_columns = {
                        "series_instance_uid": series_uid,
                        "modality": MODALITIES[rng.randrange(len(MODALITIES))],
                        "series_number": str(series + 1), "series_description": "Axial",
                    }
                    if series == 0 and study == 0:
                        self.samples.append(Sample(patient_id, surname, study_uid, series_uid,
                                                   study_columns["study_date"]))
                    for instance in range(rng.randint(1, 15)):
                        uid = f"{series_uid}.{instance + 1}"
                        yield IndexEntry(
                            patient=patient_columns, study=study_columns,
                            series=series_columns,
                            instance={"sop_instance_uid": uid, "instance_number": str(instance + 1),
                                      "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2"},
                            transfer_syntax_uid="1.2.840.10008.1.2.1",
                            file_path="bench/none.dcm", file_size=0, file_sha256="",
                            source_ae="BENCH", received_at=now,
                        )


def _query(shape: str, sample: Sample) -> tuple[str, Dataset]:
    """The SOP class and identifier of one query of `shape` aimed at `sample`."""
    ds = Dataset()
    if shape == "patient-by-id":
        ds.QueryRetrieveLevel, ds.PatientID = "PATIENT", sample.patient_id
        ds.PatientName = ds.PatientBirthDate = ds.NumberOfPatientRelatedStudies = ""
        return PatientRootQueryRetrieveInformationModelFind, ds
    ds.QueryRetrieveLevel = "STUDY"
    if shape in ("study-by-name-wildcard", "study-by-date-range"):
        ds.PatientName = f"{sample.surname}^A*" if shape.endswith("wildcard") else ""
        start = datetime.strptime(sample.study_date, "%Y%m%d")
        ds.StudyDate = (f"{sample.study_date}-{(start + timedelta(days=6)):%Y%m%d}"
                        if shape.endswith("range") else "")
        ds.PatientID = ds.StudyInstanceUID = ds.AccessionNumber = ""
        ds.ModalitiesInStudy = ds.NumberOfStudyRelatedInstances = ""
        return StudyRootQueryRetrieveInformationModelFind, ds
    ds.StudyInstanceUID = sample.study_uid
    if shape == "series-of-study":
        ds.QueryRetrieveLevel = "SERIES"
        ds.SeriesInstanceUID = ds.Modality = ds.NumberOfSeriesRelatedInstances = ""
    else:
        ds.QueryRetrieveLevel = "IMAGE"
        ds.SeriesInstanceUID = sample.series_uid
        ds.SOPInstanceUID = ds.InstanceNumber = ""
    return StudyRootQueryRetrieveInformationModelFind, ds


def _figures(latencies: list[float], matches: list[int]) -> dict[str, float]:
    latencies = sorted(latencies)
    return {"median_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
            "mean_matches": round(statistics.mean(matches), 1)}


# (SOP class, identifier) -> (matches, final status)
FindOnce = Callable[[Any, Any], tuple[int, "int | None"]]


def _time_shapes(samples: list[Sample], queries: int, find: FindOnce,
                 client: str) -> dict[str, dict[str, float]]:
    """Median and p95 latency (ms) and mean matches of each shape, `queries` each, the same
    queries for every client (seeded)."""
    rng = random.Random(7)
    figures: dict[str, dict[str, float]] = {}
    for shape in SHAPES:
        latencies, matches = [], []
        for _ in range(queries):
            sop_class, identifier = _query(shape, samples[rng.randrange(len(samples))])
            started = time.perf_counter()
            found, final = find(sop_class, identifier)
            latencies.append((time.perf_counter() - started) * 1000)
            matches.append(found)
            if final != 0x0000:
                raise RuntimeError(f"{shape}: final status {final} ({client})")
        figures[shape] = _figures(latencies, matches)
    return figures


def _measure_lean(port: int, samples: list[Sample], queries: int
                  ) -> dict[str, dict[str, float]]:
    """As `_measure` (the same queries), with the lean SCU."""
    scu = LeanSCU(port)
    try:
        return _time_shapes(samples, queries, scu.find, "lean SCU")
    finally:
        scu.release()


def _measure(port: int, samples: list[Sample], queries: int) -> dict[str, dict[str, float]]:
    """Median and p95 latency (ms) and mean matches of each shape, over one association."""
    ae = AE(ae_title="BENCHFIND")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    association = ae.associate("127.0.0.1", port, ae_title="MINIPACS")
    if not association.is_established:
        raise RuntimeError("association with the server failed")
    sock = association.dul.socket.socket  # type: ignore[union-attr]
    if sock is not None:
        import socket

        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def find(sop_class: Any, identifier: Any) -> tuple[int, int | None]:
        found, final = 0, None
        for status, _ in association.send_c_find(identifier, sop_class):
            if status and status.Status in (0xFF00, 0xFF01):
                found += 1
            elif status:
                final = status.Status
        return found, final

    try:
        return _time_shapes(samples, queries, find, "pynetdicom SCU")
    finally:
        association.release()


def _serve(registry: ProcessRegistry, folder: Path, url: str,
           source: Path | None) -> tuple[Any, int]:
    """`pacs serve` on the index at `url`: this checkout's, or the one in `source`."""
    port = free_port()
    config = folder / "empty.toml"
    config.write_text("")
    log = folder / "server.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PACS_")}
    if source is not None:
        env["PYTHONPATH"] = str(source)  # its `pacs` shadows the installed one
    process = registry.spawn(
        [sys.executable, "-m", "pacs", "serve", "--config", str(config), "--host", "127.0.0.1",
         "--port", str(port), "--storage", str(folder / "archive"), "--database", url,
         "--log-level", "WARNING"], log, cwd=folder, env=env)
    wait_for_port(port, process, log=log)
    return process, port


def _run_backend(backend: str, sizes: list[int], queries: int, folder: Path,
                 registry: ProcessRegistry, servers: dict[str, Path | None]
                 ) -> list[dict[str, Any]]:
    cluster = TemporaryCluster() if backend == "postgresql" else None
    url = cluster.url if cluster else f"sqlite:///{folder}/index.sqlite"
    rows: list[dict[str, Any]] = []
    try:
        population = Population()
        entries = population.entries()
        loaded = 0
        index = Index(url)
        for size in sizes:
            started = time.monotonic()
            index.add_instances_bulk(next(entries) for _ in range(size - loaded))
            load_seconds = time.monotonic() - started
            loaded = size
            index.analyze()
            stats = index.stats()
            print(f"[bench index] {backend}: {stats.instances} instances, {stats.patients} "
                  f"patients, {stats.studies} studies loaded in {load_seconds:.0f} s",
                  file=sys.stderr, flush=True)
            for label, source in servers.items():
                process, port = _serve(registry, folder, url, source)
                try:
                    figures = _measure(port, population.samples, queries)
                    lean = _measure_lean(port, population.samples, queries)
                finally:
                    registry.stop(process)
                for shape, figure in figures.items():
                    rows.append({"backend": backend, "server": label,
                                 "instances": stats.instances, "patients": stats.patients,
                                 "studies": stats.studies, "shape": shape, **figure,
                                 "lean_median_ms": lean[shape]["median_ms"],
                                 "lean_p95_ms": lean[shape]["p95_ms"],
                                 "load_rate_per_s": round((size - (loaded - size)) / max(
                                     load_seconds, 1e-9))})
        index.close()
    finally:
        if cluster:
            cluster.stop()
    return rows


def run(arguments: argparse.Namespace) -> int:
    """Build the index at each size on each backend and print the latency table."""
    sizes = sorted(int(s) for s in arguments.sizes.split(","))
    backends = [b.strip() for b in arguments.backends.split(",") if b.strip()]
    servers: dict[str, Path | None] = {"minipacs": None}
    for item in arguments.minipacs_from:
        label, _, folder = item.partition("=")
        if not label or not Path(folder, "pacs", "__main__.py").exists():
            print("bench index: --minipacs-from takes LABEL=DIR, DIR holding a `pacs` package",
                  file=sys.stderr)
            return 2
        servers[f"minipacs@{label}"] = Path(folder).resolve()
    registry = ProcessRegistry()
    rows: list[dict[str, Any]] = []
    print("Index built through Index.add_instances_bulk: rows only, no pixel files "
          "(C-FIND never reads them).", flush=True)
    try:
        for backend in backends:
            folder = Path(tempfile.mkdtemp(prefix=f"minipacs-index-{backend}-",
                                           dir=arguments.workdir))
            rows += _run_backend(backend, sizes, arguments.queries, folder, registry, servers)
    finally:
        registry.stop_all()
    print()
    print("| backend | instances | patients | studies | query | server | median ms | p95 ms | "
          "lean SCU median ms | lean SCU p95 ms | matches |")
    print("|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['backend']} | {row['instances']:,} | {row['patients']:,} | "
              f"{row['studies']:,} | {row['shape']} | {row['server']} | {row['median_ms']} | "
              f"{row['p95_ms']} | {row['lean_median_ms']} | {row['lean_p95_ms']} | "
              f"{row['mean_matches']} |")
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps({"date": datetime.now(UTC).isoformat(),
                                              "rows": rows}, indent=2))
    return 0
