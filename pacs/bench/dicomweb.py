"""The benchmark's DICOMweb rows: STOW-RS store rate, QIDO-RS study search latency and WADO-RS
retrieval of one study, against every peer that serves DICOMweb (minipacs; Orthanc with its
DICOMweb plugin), with one client for all: the standard library's HTTP/1.1 on one keep-alive
connection.

Layer: tool (pacs.bench); standard library only, plus the measure module's helpers. Counts are
checked as everywhere: instances referenced in STOW-RS answers, matches per QIDO-RS answer,
parts of the WADO-RS multipart body.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

from pacs.bench.clients import Outcome
from pacs.bench.dataset import BASE_DATE, SURNAMES, Manifest
from pacs.bench.measure import (
    Context,
    Metric,
    _finish,
    _skipped,
    _timed,
    latency_metric,
    rate_metrics,
)
from pacs.bench.peers import Peer, Running
from pacs.bench.procs import RssSampler

MB = 1_000_000
DICOM_JSON = "application/dicom+json"
# The bench's files are Explicit VR Little Endian: asking for it is "as stored" on every peer.
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
_CHUNK = 1024 * 1024
_WADO_REPEATS = 5  # one study takes tens of milliseconds: the median of five tames the noise
_REFERENCED, _FAILED = "00081199", "00081198"


class Connection:
    """One keep-alive HTTP/1.1 connection to a DICOMweb root (`http://127.0.0.1:PORT/ROOT`)."""

    def __init__(self, port: int, root: str, timeout: float):
        self.root = root.rstrip("/")
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=max(timeout, 1.0))

    def close(self) -> None:
        """Close the connection."""
        self.http.close()

    def get_json(self, path: str) -> tuple[int, object]:
        """GET a DICOM JSON resource; (status, parsed body or the text of an error)."""
        self.http.request("GET", self.root + path, headers={"Accept": DICOM_JSON})
        response = self.http.getresponse()
        body = response.read()
        if response.status != 200:
            return response.status, body[:300].decode(errors="replace")
        return response.status, json.loads(body or b"[]")

    def get_parts(self, path: str, accept: str) -> tuple[int, int, int]:
        """GET a multipart/related resource, streamed; (status, parts, bytes received)."""
        self.http.request("GET", self.root + path, headers={"Accept": accept})
        response = self.http.getresponse()
        content_type = response.getheader("Content-Type", "")
        boundary = next((p.split("=", 1)[1].strip().strip('"') for p in content_type.split(";")
                         if p.strip().lower().startswith("boundary=")), "")
        delimiter = b"\r\n--" + boundary.encode()
        tail, count, size = b"\r\n", 0, 0  # the first delimiter may start the body
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            window = tail + chunk
            count += window.count(delimiter)
            # Shorter than a delimiter: one that spans two chunks is found once, next time.
            tail = window[-(len(delimiter) - 1):]
        # Each part opens with a delimiter; the closing one ends the body.
        return response.status, max(0, count - 1) if boundary else 0, size

    def stow(self, files: list[Path]) -> tuple[int, int, str | None]:
        """POST one multipart/related request of `files`; (status, referenced, failure)."""
        boundary = uuid.uuid4().hex
        heads = [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                 for _ in files]
        closing = f"--{boundary}--\r\n".encode()
        length = sum(len(h) + f.stat().st_size + 2 for h, f in zip(heads, files, strict=True))

        def body() -> Iterator[bytes]:
            for head, path in zip(heads, files, strict=True):
                yield head
                with open(path, "rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        yield chunk
                yield b"\r\n"
            yield closing

        self.http.request("POST", self.root + "/studies", body=body(), headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": DICOM_JSON, "Content-Length": str(length + len(closing))})
        response = self.http.getresponse()
        answer = response.read()
        try:
            document = json.loads(answer) if answer else {}
        except ValueError:
            return response.status, 0, answer[:300].decode(errors="replace")
        referenced = len(document.get(_REFERENCED, {}).get("Value", []))
        failed = len(document.get(_FAILED, {}).get("Value", []))
        problem = f"{failed} instances failed" if failed else None
        return response.status, referenced, problem


def study_files(ctx: Context) -> list[list[Path]]:
    """The data set's files grouped by study (the generator writes study k under sNNN/)."""
    groups: dict[str, list[Path]] = {}
    for name in ctx.manifest.files:
        groups.setdefault(name.split("/")[0], []).append(ctx.data_folder / name)
    return list(groups.values())


def stow(port: int, root: str, studies: list[list[Path]], timeout: float) -> Outcome:
    """STOW-RS every study, one request per study, on one connection."""
    connection = Connection(port, root, timeout)
    start = time.perf_counter()
    stored, error = 0, None
    try:
        for files in studies:
            status, referenced, problem = connection.stow(files)
            stored += referenced
            if error is None and (status != 200 or problem):
                error = f"HTTP {status}" + (f": {problem}" if problem else "")
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    return Outcome(time.perf_counter() - start, stored, error)


def qido(port: int, root: str, path: str, repeat: int, deadline: float) -> Outcome:
    """`repeat` QIDO-RS searches on one connection; per-search seconds as samples."""
    connection = Connection(port, root, max(1.0, deadline - time.monotonic()))
    samples: list[float] = []
    count, error = 0, None
    try:
        for _ in range(repeat):
            if time.monotonic() > deadline:
                error = error or "time limit reached"
                break
            start = time.perf_counter()
            status, answer = connection.get_json(path)
            samples.append(time.perf_counter() - start)
            count = len(answer) if isinstance(answer, list) else 0
            if error is None and status != 200:
                error = f"HTTP {status}: {answer}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = error or f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    return Outcome(sum(samples), count, error, samples)


def wado_study(port: int, root: str, study_uid: str, timeout: float) -> Outcome:
    """WADO-RS of one study, as stored; counts the parts received."""
    connection = Connection(port, root, timeout)
    start = time.perf_counter()
    try:
        status, parts, _size = connection.get_parts(f"/studies/{study_uid}", AS_STORED)
        error = None if status == 200 else f"HTTP {status}"
    except (OSError, http.client.HTTPException) as exc:
        parts, error = 0, f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    return Outcome(time.perf_counter() - start, parts, error)


def qido_shapes(manifest: Manifest) -> list[tuple[str, str, int]]:
    """(name, query string, expected matches): the C-FIND study shapes as QIDO-RS searches."""
    studies = manifest.studies
    patient = manifest.target_study.patient_id
    prefix = SURNAMES[0][:3]
    low, high = BASE_DATE, BASE_DATE + timedelta(days=9)
    return [
        ("study_by_patient_id", urlencode({"PatientID": patient}, safe="*"),
         sum(1 for s in studies if s.patient_id == patient)),
        # `*` unescaped: Orthanc's plugin does not percent-decode it (RFC 3986 allows both).
        ("study_by_name_prefix", urlencode({"PatientName": f"{prefix}*"}, safe="*"),
         sum(1 for s in studies if s.patient_name.startswith(prefix))),
        ("study_by_date_range",
         urlencode({"StudyDate": f"{low:%Y%m%d}-{high:%Y%m%d}"}, safe="*"),
         sum(1 for s in studies if f"{low:%Y%m%d}" <= s.date <= f"{high:%Y%m%d}")),
    ]


def measure_reads(running: Running, ctx: Context, results: dict[str, Metric]) -> None:
    """QIDO-RS latency per study shape and WADO-RS of the target study, on a populated peer."""
    if running.http_port is None:
        return
    port, root = running.http_port, running.dicomweb_root
    for name, query, expected in qido_shapes(ctx.manifest):
        key = f"qido_{name}"
        if ctx.timeout(1) <= 0:
            results[key] = _skipped("ms")
            continue
        deadline = time.monotonic() + ctx.timeout(120)
        outcome = qido(port, root, f"/studies?{query}", ctx.find_queries, deadline)
        results[key] = latency_metric(outcome, expected)
    target = ctx.manifest.target_study
    index = ctx.manifest.studies.index(target)
    study_bytes = sum(f.stat().st_size for f in study_files(ctx)[index])
    metric = _timed(ctx, target.instance_count, _WADO_REPEATS,
                    lambda timeout: wado_study(port, root, target.uid, timeout))
    if metric.ok and metric.value:
        metric = Metric(metric.value * study_bytes / target.instance_count / MB, "MB/s",
                        detail={**metric.detail, "bytes": study_bytes})
    else:
        metric.unit = "MB/s"
    results["wado_study_mbps"] = metric


def measure_stow(peer: Peer, ctx: Context, folder: Path, results: dict[str, Metric]) -> None:
    """A fresh server takes the data set by STOW-RS, one request per study."""
    if not getattr(peer, "dicomweb", False):
        return
    if ctx.timeout(1) <= 0:
        results["stow_rate"] = _skipped("instances/s")
        results["stow_mbps"] = _skipped("MB/s")
        return
    running = peer.start(folder, ctx.registry, ctx.destination)
    sampler = RssSampler(running.process.pid)
    try:
        if running.http_port is None:
            raise RuntimeError(f"{peer.name} started without its DICOMweb port")
        os.sync()
        outcome = stow(running.http_port, running.dicomweb_root, study_files(ctx),
                       ctx.bulk_timeout(ctx.manifest.instances))
        for name, metric in rate_metrics(outcome, ctx.manifest.instances,
                                         ctx.manifest.total_bytes).items():
            results[f"stow_{name}"] = metric
    finally:
        _finish(peer, running, sampler, ctx, results)
