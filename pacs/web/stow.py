"""STOW-RS (PS3.18 10.5): `POST /studies[/{study}]` with multipart/related application/dicom
parts, each streamed to a temp file in the archive and stored through the C-STORE pipeline.

Room: web/. Imports services/store (the Ingestor), model/status, archive access through the
Services container, web/. A part that fails (not DICOM, wrong study, too large, refused by the
pipeline) is one item of FailedSOPSequence with its Failure Reason; the other parts are stored.
200 all stored, 202 some, 409 none (PS3.18 10.5.3). Complete parts are stored by one thread of
the request while the next part arrives, in order; the answer waits for every store.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pacs.model.status import DicomError, StoreStatus
from pacs.services.context import Services
from pacs.web.common import caller_name, handles_errors, note, path_uid, resource_url, url_root
from pacs.web.errors import WebError
from pacs.web.media import DICOM, DICOM_JSON
from pacs.web.multipart import MultipartReader, multipart_boundary
from pacs.web.threads import body_reader, call

log = logging.getLogger("pacs.stow")
_PREAMBLE = b"\x00" * 128 + b"DICM"
_AHEAD = 4  # complete parts waiting to be stored (on disk) before receiving pauses
_KEPT = 64 * 1024  # first bytes of a part kept for the store's header read


@dataclass
class PartOutcome:
    """What became of one part: stored (with UIDs) or failed (with a reason)."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    failure: int | None = None
    comment: str = ""


@dataclass
class PartsToArchive:
    """A multipart sink: each part to a temp file, then through the store pipeline."""

    services: Services
    study: str | None
    source: str
    outcomes: list[PartOutcome | Future[PartOutcome]] = field(default_factory=list)
    _storer: ThreadPoolExecutor | None = None
    _file: BinaryIO | None = None
    _path: Path | None = None
    _size: int = 0
    _refusal: DicomError | None = None
    _head: bytearray | None = None  # the first bytes, until we know whether a preamble is due
    # What was written, as written: hashed and its first bytes kept, so the store pipeline
    # reads neither back (as for a C-STORE's data set).
    _digest: Any = None
    _written: int = 0
    _kept: bytearray = field(default_factory=bytearray)

    def begin(self, headers: dict[str, str]) -> None:
        """A part starts: refuse a non-DICOM media type, else open its temp file."""
        self._size, self._refusal = 0, None
        media_type = headers.get("content-type", DICOM).split(";")[0].strip().lower()
        if media_type != DICOM:
            self._refusal = DicomError(StoreStatus.CANNOT_UNDERSTAND,
                                       f"part of type {media_type} is not application/dicom")
            return
        self._path = self.services.archive.new_temp_path()
        self._file = open(self._path, "wb")  # noqa: SIM115  (closed in end() or abort())
        self._head = bytearray()
        self._digest, self._written, self._kept = hashlib.sha256(), 0, bytearray()

    def _write(self, data: bytes | bytearray) -> None:
        assert self._file is not None
        self._file.write(data)
        self._digest.update(data)
        self._written += len(data)
        if len(self._kept) < _KEPT:
            self._kept += data[:_KEPT - len(self._kept)]

    def _write_head(self) -> None:
        """Some clients (pydicom's dcmwrite, so dicomweb-client) send the File Meta group
        without the 128-byte preamble and 'DICM': add them, so the part is Part 10."""
        assert self._file is not None and self._head is not None
        head, self._head = self._head, None
        if head[128:132] != b"DICM" and head[:2] == b"\x02\x00":
            self._write(_PREAMBLE)
        self._write(head)

    def data(self, chunk: bytes) -> None:
        """Append to the part's file, within the data set size limit."""
        if self._file is None:
            return
        self._size += len(chunk)
        limit = self.services.settings.max_dataset_size
        if limit and self._size > limit:
            self._refusal = DicomError(StoreStatus.OUT_OF_RESOURCES,
                                       f"data set larger than {limit} bytes")
            self._discard()
            return
        if self._head is None:
            self._write(chunk)
            return
        self._head += chunk
        if len(self._head) >= len(_PREAMBLE):
            self._write_head()

    def end(self) -> None:
        """The part is complete: queue it for storing (or record why not)."""
        number = len(self.outcomes) + 1
        if self._refusal is not None:
            self.outcomes.append(self._failed(number, self._refusal, None))
            return
        assert self._file is not None and self._path is not None
        if self._head is not None:
            self._write_head()
        self._file.close()
        self._file = None
        path, self._path = self._path, None
        received = (self._digest.hexdigest(), self._written, bytes(self._kept))
        if self._storer is None:
            self._storer = ThreadPoolExecutor(1, thread_name_prefix="stow-store")
        queued = [o for o in self.outcomes if isinstance(o, Future) and not o.done()]
        if len(queued) >= _AHEAD:
            wait_for(queued[:len(queued) - _AHEAD + 1])
        self.outcomes.append(self._storer.submit(self._store, number, path, received))

    def _store(self, number: int, path: Path, received: tuple[str, int, bytes]) -> PartOutcome:
        """Store one complete part through the C-STORE pipeline (in the storing thread)."""
        try:
            result = self.services.ingestor.store(
                path, expected_study_instance_uid=self.study, source_ae=self.source,
                received=received)
        except DicomError as error:
            return self._failed(number, error, path)
        finally:
            path.unlink(missing_ok=True)  # stored: already moved; failed: not kept
            self.services.index.end_operation()
        log.info("STOW-RS from %s: %s %s (%s)", self.source, result.outcome,
                 result.sop_instance_uid, result.study_instance_uid)
        return PartOutcome(result.sop_class_uid, result.sop_instance_uid,
                           result.study_instance_uid, result.series_instance_uid)

    def _failed(self, number: int, error: DicomError, path: Path | None) -> PartOutcome:
        uids = _uids(path) if path is not None else ("", "")
        log.warning("STOW-RS from %s: part %d failed: %s", self.source, number, error)
        return PartOutcome(*uids, failure=int(error.status), comment=error.comment)

    def results(self) -> list[PartOutcome]:
        """Every part's outcome, in order, once its store has finished."""
        return [o.result() if isinstance(o, Future) else o for o in self.outcomes]

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None

    def abort(self) -> None:
        """The body ended or broke off: remove an unfinished part's temp file and let the
        stores already queued finish."""
        self._discard()
        if self._storer is not None:
            self._storer.shutdown(wait=True)


def _uids(path: Path) -> tuple[str, str]:
    """SOP Class and Instance UIDs of a refused part, when it has readable ones."""
    try:
        from pydicom import dcmread

        dataset = dcmread(path, stop_before_pixels=True, force=True,
                          specific_tags=["SOPClassUID", "SOPInstanceUID"])
        return str(dataset.get("SOPClassUID", "")), str(dataset.get("SOPInstanceUID", ""))
    except Exception:  # whatever the bytes are, the failure is reported without UIDs
        return "", ""


def receive_parts(services: Services, boundary: str, receive: Callable[[], bytes | None],
                  study: str | None, source: str) -> list[PartOutcome]:
    """Read the whole body part by part, storing each as it completes (worker thread)."""
    sink = PartsToArchive(services, study, source)
    reader = MultipartReader(boundary, sink)
    try:
        while (chunk := receive()) is not None:
            reader.feed(chunk)
        reader.close()
    finally:
        sink.abort()
    return sink.results()


def response_dataset(outcomes: list[PartOutcome], root: str, study: str | None) -> Dataset:
    """The STOW-RS response (PS3.18 10.5.3.2): Referenced SOP Sequence, Failed SOP Sequence."""
    answer = Dataset()
    stored = [o for o in outcomes if o.failure is None]
    failed = [o for o in outcomes if o.failure is not None]
    studies = {o.study_instance_uid for o in stored}
    if study or len(studies) == 1:
        answer.RetrieveURL = resource_url(root, study or studies.pop())
    if failed:
        items = []
        for outcome in failed:
            item = Dataset()
            item.ReferencedSOPClassUID = outcome.sop_class_uid or None
            item.ReferencedSOPInstanceUID = outcome.sop_instance_uid or None
            item.FailureReason = outcome.failure
            items.append(item)
        answer.FailedSOPSequence = DicomSequence(items)
    if stored:
        items = []
        for outcome in stored:
            item = Dataset()
            item.ReferencedSOPClassUID = outcome.sop_class_uid
            item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
            item.RetrieveURL = resource_url(root, outcome.study_instance_uid,
                                            outcome.series_instance_uid,
                                            outcome.sop_instance_uid)
            items.append(item)
        answer.ReferencedSOPSequence = DicomSequence(items)
    return answer


@handles_errors
async def store(request: Request) -> Response:
    """POST /studies or /studies/{study} (PS3.18 10.5.1)."""
    services = request.app.state.services
    study = path_uid(request, "study") if "study" in request.path_params else None
    boundary = multipart_boundary(request.headers.get("content-type"), DICOM)
    source = f"http:{caller_name(request)}"
    outcomes = await call(services, receive_parts, services, boundary,
                          body_reader(request.stream()), study, source)
    if not outcomes:
        raise WebError(400, "the body holds no parts")
    stored = sum(1 for o in outcomes if o.failure is None)
    note(request, stored=stored, failed=len(outcomes) - stored, study=study or "")
    status = 200 if stored == len(outcomes) else 202 if stored else 409
    answer = response_dataset(outcomes, url_root(request), study)
    return JSONResponse(answer.to_json_dict(), status, media_type=DICOM_JSON)


def stow_routes() -> list[BaseRoute]:
    """The two STOW-RS resources."""
    return [Route("/studies", store, methods=["POST"]),
            Route("/studies/{study}", store, methods=["POST"])]
