"""The benchmark's clients: DCMTK storescu, movescu, getscu and findscu as processes (one
association each), and a pynetdicom SCU for many C-FIND queries on one association.

Layer: tool (pacs.bench). Every call is bounded by a timeout and returns what it counted, so
the caller can compare counts with the data set's manifest. DCMTK tools run with
TCP_NODELAY=1 (DESIGN.md, "Measured pitfalls").
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from pacs.bench.peers import CALLING_AE
from pacs.bench.procs import (
    ClientResult,
    count_files,
    dcmtk_env,
    run_client,
    run_clients_parallel,
)

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
_STORE_OK = re.compile(r"Received Store Response \((Success|Warning)")
_FIND_PENDING = re.compile(r"Find Response: \d+ \(Pending")
_FIND_FINAL_OK = "Received Final Find Response (Success)"
_MOVE_FINAL = re.compile(r"Received Final Move Response \(([^)]*)\)")
_DCMTK_TIMEOUTS = ["-to", "30", "-ta", "30", "-td", "120"]

Query = list[tuple[str, str]]  # (keyword, value) pairs, QueryRetrieveLevel first


@dataclass
class Outcome:
    """What one client operation did: time taken, what it counted, and any error."""

    seconds: float
    count: int
    error: str | None = None
    samples: list[float] = field(default_factory=list)  # per-query seconds (C-FIND)

    @property
    def ok(self) -> bool:
        """True when the client finished without an error."""
        return self.error is None


def _describe_failure(result: ClientResult) -> str:
    if result.timed_out:
        return f"timed out after {result.seconds:.0f} s"
    lines = [line for line in result.output.splitlines()
             if line.startswith(("E:", "F:", "W:"))]
    if not lines:  # nothing flagged: the last words of the log say what happened
        lines = [line for line in result.output.splitlines() if line.strip()]
    return f"exit {result.returncode}: " + " | ".join(lines[-3:])[:300]


def store(host_port: tuple[str, int], called_ae: str, files: list[Path], associations: int,
          timeout: float) -> Outcome:
    """Push `files` with storescu over `associations` parallel associations (contiguous chunks).

    Returns the wall time from the first start to the last exit and the number of
    Success/Warning store responses.
    """
    host, port = host_port
    size = -(-len(files) // associations)
    chunks = [files[i:i + size] for i in range(0, len(files), size)]
    base = ["storescu", "-v", "-aet", CALLING_AE, "-aec", called_ae, *_DCMTK_TIMEOUTS,
            host, str(port)]
    start = time.perf_counter()
    results = run_clients_parallel([[*base, *map(str, chunk)] for chunk in chunks], timeout,
                                   env=dcmtk_env())
    seconds = time.perf_counter() - start
    count = sum(len(_STORE_OK.findall(result.output)) for result in results)
    failures = [_describe_failure(r) for r in results if r.returncode != 0 or r.timed_out]
    return Outcome(seconds, count, failures[0] if failures else None)


def write_move_queries(folder: Path, study_uids: list[str]) -> list[Path]:
    """One Study Root C-MOVE query file per study, for movescu to send on one association."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, study_uid in enumerate(study_uids):
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = study_uid
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = STUDY_ROOT_MOVE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.file_meta = meta
        path = folder / f"move{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def move(host_port: tuple[str, int], called_ae: str, destination_ae: str,
         query_files: list[Path], received: Path, timeout: float) -> Outcome:
    """C-MOVE with movescu (Study Root), one request per query file, all on one association.

    `count` is the number of files the destination holds afterwards (emptied first).
    """
    shutil.rmtree(received, ignore_errors=True)
    received.mkdir(parents=True)
    host, port = host_port
    command = ["movescu", "-v", "-aet", CALLING_AE, "-aec", called_ae, "-aem", destination_ae,
               "-S", *_DCMTK_TIMEOUTS, host, str(port), *map(str, query_files)]
    result = run_client(command, timeout, env=dcmtk_env())
    finals = _MOVE_FINAL.findall(result.output)
    error = None
    if result.returncode != 0 or result.timed_out:
        error = _describe_failure(result)
    elif len(finals) != len(query_files) or any(not s.startswith("Success") for s in finals):
        error = f"final move statuses: {', '.join(finals) or 'none'}"
    return Outcome(result.seconds, count_files(received), error)


def get(host_port: tuple[str, int], called_ae: str, study_uid: str, output: Path,
        timeout: float) -> Outcome:
    """C-GET of one study with getscu (Study Root) into `output`; counts the files received."""
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    host, port = host_port
    command = ["getscu", "-v", "-aet", CALLING_AE, "-aec", called_ae, "-S", *_DCMTK_TIMEOUTS,
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
               "-od", str(output), host, str(port)]
    result = run_client(command, timeout, env=dcmtk_env())
    error = None
    if result.returncode != 0 or result.timed_out:
        error = _describe_failure(result)
    elif "Received C-GET Response (Success)" not in result.output:
        finals = re.findall(r"Received C-GET Response \(([^)]*)\)", result.output)
        error = f"final C-GET status: {finals[-1] if finals else 'none'}"
    return Outcome(result.seconds, count_files(output), error)


def find_processes(host_port: tuple[str, int], called_ae: str, query: Query, repeat: int,
                   deadline: float) -> Outcome:
    """`repeat` findscu runs (one association per query); per-query wall-clock samples.

    `count` is the number of matches of the last run; an error is kept from the first run
    that failed (exit code or a final status other than Success).
    """
    host, port = host_port
    keys = [arg for keyword, value in query for arg in ("-k", f"{keyword}={value}")]
    command = ["findscu", "-v", "-aet", CALLING_AE, "-aec", called_ae, "-S", *_DCMTK_TIMEOUTS,
               *keys, host, str(port)]
    samples: list[float] = []
    count, error = 0, None
    for _ in range(repeat):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            error = error or "time limit reached"
            break
        result = run_client(command, min(30.0, remaining), env=dcmtk_env())
        samples.append(result.seconds)
        count = len(_FIND_PENDING.findall(result.output))
        if error is None and (result.returncode != 0 or result.timed_out):
            error = _describe_failure(result)
        elif error is None and _FIND_FINAL_OK not in result.output:
            error = "final C-FIND status was not Success"
    return Outcome(sum(samples), count, error, samples)


def find_one_association(host_port: tuple[str, int], called_ae: str, query: Query,
                         repeat: int, deadline: float) -> Outcome:
    """`repeat` C-FIND requests on one pynetdicom association; per-query seconds as samples.

    The SCU sets TCP_NODELAY on its socket, as the DCMTK clients do with TCP_NODELAY=1. Before
    each request (untimed) its reactor is parked (pacs/bench/silent.py), so that only the
    request's own response loop reads the responses: with pynetdicom's pause alone, 5 queries
    of 4,000 lost a Pending response to the reactor. Every query must count as many
    matches as the first.
    """
    from pynetdicom import AE

    from pacs.bench.silent import park_reactor

    ae = AE(ae_title=CALLING_AE)
    ae.acse_timeout = ae.network_timeout = 30
    ae.dimse_timeout = 30
    ae.add_requested_context(STUDY_ROOT_FIND)
    identifier = Dataset()
    for keyword, value in query:
        setattr(identifier, keyword, value)
    assoc = ae.associate(*host_port, ae_title=called_ae)
    if not assoc.is_established:
        return Outcome(0.0, 0, "association with the pynetdicom SCU was not accepted")
    transport = getattr(assoc.dul.socket, "socket", None)
    if transport is not None:
        transport.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples: list[float] = []
    count, error = 0, None
    try:
        for _ in range(repeat):
            if time.monotonic() > deadline:
                error = error or "time limit reached"
                break
            if not park_reactor(assoc):
                error = error or "the SCU's reactor did not pause"
                break
            start = time.perf_counter()
            matches, final = 0, None
            for status, _identifier in assoc.send_c_find(identifier, STUDY_ROOT_FIND):
                if status is None or "Status" not in status:
                    final = None
                    break
                if status.Status in (0xFF00, 0xFF01):
                    matches += 1
                else:
                    final = int(status.Status)
            samples.append(time.perf_counter() - start)
            if len(samples) == 1:
                count = matches
            if error is None and final != 0x0000:
                error = ("no response (timeout or abort)" if final is None
                         else f"final C-FIND status 0x{final:04X}")
            elif error is None and matches != count:
                error = (f"query {len(samples)} counted {matches} matches, the first {count} "
                         "(a response lost?)")
            if not assoc.is_established:
                error = error or "association ended"
                break
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
    return Outcome(sum(samples), count, error, samples)
