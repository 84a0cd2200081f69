#!/usr/bin/env python3
"""Median C-FIND latency: Study Root, STUDY level, patient name wildcard, one association.

Builds a fresh index of N instances per size (bulk insert through the schema models, no
files: C-FIND never reads them), starts the server in this process and, from a second
process, opens one association with pynetdicom (TCP_NODELAY on) and times each C-FIND from
request to final response.

    .venv/bin/python scripts/measure_find_latency.py                      # SQLite, 10k and 100k
    .venv/bin/python scripts/measure_find_latency.py --backend postgresql --backend sqlite

Data shape: 10 instances per series, 2 series per study, 2 studies per patient; patient
names are SURNAME^GIVEN over 50 surnames, so "SMITH*" matches 1/50 of the studies.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydicom.dataset import Dataset  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # noqa: E402

from pacs.cli.main import configure_pydicom  # noqa: E402
from pacs.config import Settings  # noqa: E402
from pacs.dimse.events import set_no_delay  # noqa: E402
from pacs.dimse.server import start_server  # noqa: E402
from pacs.index.schema import Instance, Patient, Series, Study  # noqa: E402
from pacs.model.values import fold_name, normalize_time  # noqa: E402
from pacs.services.context import Services, open_services  # noqa: E402

SURNAMES = ["SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS",
            "RODRIGUEZ", "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON",
            "THOMAS", "TAYLOR", "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON",
            "WHITE", "HARRIS", "SANCHEZ", "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER",
            "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES",
            "GREEN", "ADAMS", "NELSON", "BAKER", "HALL", "RIVERA", "CAMPBELL", "MITCHELL",
            "CARTER", "ROBERTS"]
ROOT = "1.2.826.0.1.3680043.10.1071.9"
PER_SERIES, SERIES_PER_STUDY, STUDIES_PER_PATIENT = 10, 2, 2
CHUNK = 500


def build(services: Services, instances: int) -> int:
    """Insert `instances` instances and their parents; returns the number of studies."""
    per_study = PER_SERIES * SERIES_PER_STUDY
    studies = instances // per_study
    now = datetime.now(UTC)
    with services.index.write_transaction():
        patient_ids: list[int] = []
        for p in range(0, studies // STUDIES_PER_PATIENT):
            name = f"{SURNAMES[p % len(SURNAMES)]}^GIVEN{p}"
            patient_ids.append(Patient.insert(
                patient_id=f"P{p:07d}", patient_name=name, patient_name_folded=fold_name(name),
                patient_birth_date="19600101", patient_sex="O").execute())
        rows: list[dict[str, object]] = []
        for s in range(studies):
            time_text = f"{8 + s % 10:02d}{s % 60:02d}00"
            study_id = Study.insert(
                patient=patient_ids[s // STUDIES_PER_PATIENT], study_instance_uid=f"{ROOT}.{s}",
                study_date=f"2024{1 + s % 12:02d}{1 + s % 28:02d}", study_time=time_text,
                study_time_norm=normalize_time(time_text), accession_number=f"A{s:08d}",
                study_id=f"S{s}", study_description="CT CHEST").execute()
            for e in range(SERIES_PER_STUDY):
                series_id = Series.insert(
                    study=study_id, series_instance_uid=f"{ROOT}.{s}.{e}",
                    modality=("CT", "SR")[e % 2], series_number=str(e + 1)).execute()
                for i in range(PER_SERIES):
                    rows.append({"series": series_id, "sop_instance_uid": f"{ROOT}.{s}.{e}.{i}",
                                 "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                                 "instance_number": str(i + 1),
                                 "transfer_syntax_uid": "1.2.840.10008.1.2.1",
                                 "file_path": "none", "file_size": 0, "file_sha256": "",
                                 "received_at": now})
                    if len(rows) >= CHUNK:
                        Instance.insert_many(rows).execute()
                        rows = []
        if rows:
            Instance.insert_many(rows).execute()
    return studies


def study_query(name: str = "SMITH*") -> Dataset:
    """A workstation's study list: name wildcard and the usual return keys."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = name
    for keyword in ("PatientID", "PatientBirthDate", "StudyDate", "StudyTime",
                    "AccessionNumber", "StudyDescription", "StudyInstanceUID",
                    "ModalitiesInStudy", "NumberOfStudyRelatedInstances"):
        setattr(identifier, keyword, "")
    return identifier


def client(host: str, port: int, queries: int, name: str) -> dict[str, object]:
    """One association; `queries` timed C-FINDs after three warm-ups."""
    ae = AE(ae_title="LATENCY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    association = ae.associate(host, port, ae_title="MINIPACS")
    assert association.is_established
    # pynetdicom leaves Nagle on: each small DIMSE message would wait for a delayed ACK.
    set_no_delay(association.dul.socket.socket)
    timings, matches = [], 0
    for number in range(queries + 3):
        begin = time.perf_counter()
        found = 0
        for status, _ in association.send_c_find(study_query(name),
                                                 StudyRootQueryRetrieveInformationModelFind):
            if status.Status in (0xFF00, 0xFF01):
                found += 1
            elif status.Status != 0x0000:
                raise RuntimeError(f"C-FIND failed: 0x{status.Status:04X}")
        if number >= 3:
            timings.append((time.perf_counter() - begin) * 1000)
            matches = found
    association.release()
    return {"timings": timings, "matches": matches}


def measure(url: str, folder: Path, instances: int, queries: int,
            name: str) -> dict[str, float]:
    """Build, serve, query `queries` times on one association; latencies in ms."""
    settings = Settings(host="127.0.0.1", port=0, storage=folder / "archive", database=url,
                        log_level="WARNING")
    services = open_services(settings)
    started = time.monotonic()
    studies = build(services, instances)
    # Planner statistics, as autovacuum (PostgreSQL) or `ANALYZE` after an import would leave.
    services.index.database.execute_sql("ANALYZE")
    built = time.monotonic() - started
    running = start_server(services)
    try:
        # The client runs in its own process, so it does not share the server's GIL.
        host, port = running.address
        output = subprocess.run(
            [sys.executable, __file__, "--client", host, str(port), str(queries), name],
            capture_output=True, text=True, check=True, timeout=3600).stdout
        report = json.loads(output)
        timings, matches = report["timings"], report["matches"]
    finally:
        running.stop(grace=2)
        services.close()
    timings.sort()
    return {"studies": studies, "matches": matches, "build_s": built,
            "median_ms": statistics.median(timings),
            "p90_ms": timings[int(len(timings) * 0.9) - 1]}


def main() -> int:
    """Measure each backend at each size and print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--backend", action="append", choices=("sqlite", "postgresql"))
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--name", default="SMITH*",
                        help="Patient's Name to query (default SMITH*: 1/50 of the studies)")
    parser.add_argument("--client", nargs=4, metavar=("HOST", "PORT", "QUERIES", "NAME"),
                        help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.client:
        host, port, queries, name = arguments.client
        print(json.dumps(client(host, int(port), int(queries), name)))
        return 0
    configure_pydicom()
    postgres = None
    print("backend     instances  studies  matches  median ms  p90 ms  (index built in s)")
    try:
        for backend in arguments.backend or ["sqlite"]:
            for instances in arguments.instances:
                folder = Path(tempfile.mkdtemp(prefix="find-latency-"))
                if backend == "sqlite":
                    url = f"sqlite:///{folder}/index.sqlite"
                else:
                    if postgres is None:
                        from tests.postgres import PostgresServer
                        postgres = PostgresServer()
                    url = postgres.new_database()
                result = measure(url, folder, instances, arguments.queries, arguments.name)
                print(f"{backend:<11} {instances:>9,} {result['studies']:>8,} "
                      f"{result['matches']:>8} {result['median_ms']:>10.1f} "
                      f"{result['p90_ms']:>7.1f}  ({result['build_s']:.0f})", flush=True)
    finally:
        if postgres is not None:
            postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
