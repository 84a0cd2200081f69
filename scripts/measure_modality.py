#!/usr/bin/env python3
"""Latency of the modality services, one association each, server and client in one process.

    .venv/bin/python scripts/measure_modality.py                 # SQLite in a temp folder
    .venv/bin/python scripts/measure_modality.py --database postgresql   # a throwaway cluster
    .venv/bin/python scripts/measure_modality.py --items 5000 --database postgresql://...

- worklist C-FIND: `--items` items (half of them from the worklist folder, half added like
  `pacs worklist add`), a modality's usual query (its station, today, its modality) asking for
  the usual return keys; median and p95 of `--queries` queries;
- MPPS: N-CREATE then N-SET COMPLETED listing `--listed` instances, median of 20 steps;
- storage commitment: `--instances` stored instances (64x64 CT), N-ACTION to N-EVENT-REPORT
  on the same association (every file read and hashed), median of 5 requests.

The client shares the process (and the GIL) with the server: figures are upper bounds. Client
sockets have TCP_NODELAY, as DESIGN.md asks of benchmarks (else each small message may wait
~40 ms for a delayed ACK).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pynetdicom import AE, evt  # noqa: E402

from pacs.cli.main import configure_pydicom  # noqa: E402
from pacs.config import Settings  # noqa: E402
from pacs.dimse.events import set_no_delay  # noqa: E402
from pacs.dimse.server import start_server  # noqa: E402
from pacs.index.worklist import WorklistItems  # noqa: E402
from pacs.services.context import open_services  # noqa: E402
from pacs.services.worklist import item_write  # noqa: E402
from tests.factory import CT_IMAGE_STORAGE, make_file, uid  # noqa: E402
from tests.integration.modality_support import (  # noqa: E402
    MPPS,
    MWL_FIND,
    STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
    completion,
    mpps_attributes,
    performed_series,
    worklist_item,
    write_item,
)

STATIONS = [f"CT{n}" for n in range(1, 11)]


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 2),
            "n": len(ordered)}


def worklist(assoc: AE, queries: int) -> dict[str, float]:
    """Median / p95 of a station's query for today's CT items."""
    times, matches = [], 0
    for _ in range(queries):
        identifier = Dataset()
        for keyword in ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID",
                        "RequestedProcedureID", "RequestedProcedureDescription"):
            setattr(identifier, keyword, "")
        step = Dataset()
        step.Modality = "CT"
        step.ScheduledStationAETitle = "CT3"
        step.ScheduledProcedureStepStartDate = "20240105"
        step.ScheduledProcedureStepStartTime = ""
        step.ScheduledProcedureStepID = ""
        identifier.ScheduledProcedureStepSequence = Sequence([step])
        started = time.perf_counter()
        matches = sum(1 for status, _ in assoc.send_c_find(identifier, MWL_FIND)
                      if status.Status in (0xFF00, 0xFF01))
        times.append(time.perf_counter() - started)
    return {**_summary(times), "matches": matches}


def mpps(assoc: AE, listed: int) -> dict[str, float]:
    """Median of N-CREATE + N-SET COMPLETED listing `listed` instances."""
    times = []
    for number in range(20):
        step = uid("measure-mpps", number)
        series = performed_series(uid("measure-series", number), *[
            (CT_IMAGE_STORAGE, uid("measure-image", number, n)) for n in range(listed)])
        started = time.perf_counter()
        assert assoc.send_n_create(mpps_attributes(), MPPS, step)[0].Status == 0
        assert assoc.send_n_set(completion("COMPLETED", series), MPPS, step)[0].Status == 0
        times.append(time.perf_counter() - started)
    return _summary(times)


def commitment(server_address: tuple[str, int], references: list[tuple[str, str]],
               ae_title: str) -> dict[str, float]:
    """Median of N-ACTION sent to N-EVENT-REPORT received, on the same association."""
    times = []
    for number in range(5):
        arrived = threading.Event()

        def report(event: object, arrived: threading.Event = arrived) -> tuple[int, None]:
            arrived.set()
            return 0, None

        ae = AE(ae_title="MEASURE")
        ae.add_requested_context(STORAGE_COMMITMENT)
        assoc = ae.associate(*server_address, ae_title=ae_title,
                             evt_handlers=[(evt.EVT_N_EVENT_REPORT, report)])
        set_no_delay(assoc.dul.socket.socket)  # as a modality should: no delayed-ACK waits
        information = Dataset()
        information.TransactionUID = uid("measure-commit", number, time.time())
        items = []
        for sop_class, sop_instance in references:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
            items.append(item)
        information.ReferencedSOPSequence = Sequence(items)
        started = time.perf_counter()
        status, _ = assoc.send_n_action(information, 1, STORAGE_COMMITMENT,
                                        STORAGE_COMMITMENT_INSTANCE)
        assert status.Status == 0 and arrived.wait(120)
        times.append(time.perf_counter() - started)
        time.sleep(0.2)  # let our answer leave before the release (not timed)
        assoc.release()
    return _summary(times)


def main() -> int:
    """Build the data, start a server, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--listed", type=int, default=100)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--database", default="")
    arguments = parser.parse_args()
    configure_pydicom()
    cluster = None
    if arguments.database == "postgresql":
        from pacs.bench.pgtemp import Databases, TemporaryCluster

        cluster = TemporaryCluster()
        arguments.database = Databases(cluster.url).new()
    try:
        return measure(arguments)
    finally:
        if cluster is not None:
            cluster.stop()


def measure(arguments: argparse.Namespace) -> int:
    """Build the data in a temp folder, start a server, measure, print JSON."""
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        (folder / "worklist").mkdir()
        database = arguments.database or f"sqlite:///{folder}/index.sqlite"
        settings = Settings(host="127.0.0.1", port=0, storage=folder / "archive",
                            database=database, worklist_folder=folder / "worklist",
                            log_level="WARNING")
        services = open_services(settings)
        items = WorklistItems(services.index)
        for number in range(arguments.items):
            pair = number // 2  # CT and MR items share stations and dates
            item = worklist_item(f"M{number:06d}", modality="CT" if number % 2 else "MR",
                                 station=STATIONS[pair % len(STATIONS)],
                                 date=f"202401{1 + pair % 28:02d}")
            if number % 2:
                write_item(item, folder / "worklist" / f"M{number:06d}.wl")
            else:
                items.put(item_write(item))
        references = []
        for number in range(arguments.instances):
            path = make_file(folder / "in", patient_id="MEASURE", instance=number, rows=64,
                             columns=64)
            references.append((CT_IMAGE_STORAGE, services.ingestor.store(path).sop_instance_uid))
        running = start_server(services)
        try:
            ae = AE(ae_title="MEASURE")
            ae.add_requested_context(MWL_FIND)
            ae.add_requested_context(MPPS)
            assoc = ae.associate(*running.address, ae_title=settings.ae_title)
            set_no_delay(assoc.dul.socket.socket)
            worklist(assoc, 1)  # the first query reads the folder into the index
            results = {"backend": database.split(":")[0], "items": arguments.items,
                       "worklist_find": worklist(assoc, arguments.queries),
                       "mpps_create_and_complete": {**mpps(assoc, arguments.listed),
                                                    "listed": arguments.listed},
                       "commitment_report": {**commitment(running.address, references,
                                                          settings.ae_title),
                                             "instances": arguments.instances}}
            assoc.release()
        finally:
            running.stop(grace=2)
            services.close()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
