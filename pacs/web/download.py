"""Downloads for the browse page: a study or a series as one streamed ZIP of the stored files,
and one instance as its stored file, each with a file name a person can read.

Room: web/. Imports services/ (find, delivery), model/ (levels) and web/. The instance set is
WADO-RS's (web/wado.instance_set, the C-GET set); member names come from one IMAGE-level
search of the same study (patient, study, series and instance attributes, read relationally).
Files go out byte for byte as stored; one that is missing is left out and listed in
`MISSING.txt`; one whose bytes no longer match their SHA-256 cuts the download (never a
silently wrong archive).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pacs.model.levels import STUDY_ROOT
from pacs.services.context import Services
from pacs.services.delivery import open_stored
from pacs.services.find import FindFeatures, start_search
from pacs.services.retrieve import InstanceRecord, InstanceUnavailable
from pacs.web.common import handles_errors, note
from pacs.web.errors import WebError
from pacs.web.threads import call, stream
from pacs.web.wado import instance_set
from pacs.web.zipstream import ZipStream

log = logging.getLogger("pacs.download")
ZIP = "application/zip"
_UNSAFE = re.compile(r"[^\w .,()+=@#&'-]+")
_LABEL_KEYS = ("PatientName", "PatientID", "StudyDate", "StudyDescription", "AccessionNumber",
               "SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription",
               "SOPInstanceUID", "InstanceNumber")


def clean(text: str, limit: int = 64) -> str:
    """A file or folder name from a DICOM value: no separators, control or shell-hostile
    characters, no leading dots, at most `limit` characters."""
    text = _UNSAFE.sub("_", text.replace("^", " ")).strip(" ._")
    return re.sub(r"\s+", " ", text)[:limit].rstrip(" ._")


@dataclass(frozen=True)
class Labels:
    """What a member's path is made of, for one instance."""

    study_folder: str
    series_folder: str
    instance_number: str


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()


def labels(services: Services, study: str, series: str) -> dict[str, Labels]:
    """Readable path parts of every instance of a study (or of one of its series), by SOP
    Instance UID: "<patient> <date> <description>/<modality><number> <series>/<number>"."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    for keyword in _LABEL_KEYS:
        setattr(identifier, keyword, "")
    identifier.StudyInstanceUID = study
    if series:
        identifier.SeriesInstanceUID = series
    search = start_search(services, STUDY_ROOT, identifier, FindFeatures(relational=True),
                          enforce_cap=False)
    found = {}
    for response in search.responses():
        date = _text(response, "StudyDate")
        date = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else date
        patient = _text(response, "PatientName") or _text(response, "PatientID")
        study_folder = clean(" ".join(part for part in (
            patient, date, _text(response, "StudyDescription")
            or _text(response, "AccessionNumber")) if part)) or "study"
        number = _text(response, "SeriesNumber")
        series_folder = clean(" ".join(part for part in (
            _text(response, "Modality") + (number.zfill(3) if number.isdigit() else number),
            _text(response, "SeriesDescription")) if part)) or "series"
        instance = _text(response, "InstanceNumber")
        found[_text(response, "SOPInstanceUID")] = Labels(
            study_folder, series_folder, instance.zfill(5) if instance.isdigit() else instance)
    return found


def attachment(filename: str) -> str:
    """A Content-Disposition that saves as `filename` (RFC 6266; UTF-8 names per RFC 8187)."""
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "")
    return f'attachment; filename="{ascii_name}"; filename*=UTF-8\'\'{quote(filename)}'


def _archive(services: Services, records: list[InstanceRecord], named: dict[str, Labels],
             study: str, tally: dict[str, int]) -> Iterator[bytes]:
    archive = ZipStream()
    missing: list[str] = []
    for record in records:
        label = named.get(record.sop_instance_uid)
        try:
            opened = open_stored(services.archive, record)
        except InstanceUnavailable as exc:
            log.warning("ZIP of study %s: instance %s left out: %s", study,
                        record.sop_instance_uid, exc)
            missing.append(f"{record.sop_instance_uid}: {exc}")
            continue
        if label is None:  # stored after the search started: still sent, named by its UID
            path = f"{record.series_instance_uid}/{record.sop_instance_uid}.dcm"
        else:
            path = f"{label.study_folder}/{label.series_folder}/" \
                   f"{label.instance_number or record.sop_instance_uid}.dcm"
        yield from archive.member(archive.unique(path), opened.chunks(), record.file_size)
        tally["sent"] += 1
    if missing:
        tally["missing"] = len(missing)
        text = ("These instances are in the index but their files could not be read:\n"
                + "\n".join(missing) + "\n").encode()
        yield from archive.member(archive.unique("MISSING.txt"), [text], len(text))
    yield archive.close()


@handles_errors
async def download_zip(request: Request) -> Response:
    """GET a study or a series as a ZIP of its stored files."""
    services, records, _ = await instance_set(request)
    study = records[0].study_instance_uid
    series = records[0].series_instance_uid if "series" in request.path_params else ""
    named = await call(services, labels, services, study, series)
    tally = {"sent": 0}
    note(request, instances=len(records), delivered=tally)
    first = named.get(records[0].sop_instance_uid)
    name = (first.study_folder + (f" {first.series_folder}" if series else "")) if first \
        else clean(records[0].patient_id) or "study"
    return StreamingResponse(
        stream(services, lambda: _archive(services, records, named, study, tally)),
        media_type=ZIP, headers={"Content-Disposition": attachment(name + ".zip")})


@handles_errors
async def download_instance(request: Request) -> Response:
    """GET one instance as its stored Part 10 file."""
    services, records, _ = await instance_set(request)
    record = records[0]
    try:
        opened = await call(services, open_stored, services.archive, record)
    except InstanceUnavailable as exc:
        raise WebError(500, f"instance {record.sop_instance_uid}: {exc}") from None
    return StreamingResponse(
        stream(services, opened.chunks),
        media_type="application/dicom",
        headers={"Content-Disposition": attachment(record.sop_instance_uid + ".dcm"),
                 "Content-Length": str(record.file_size)})


def download_routes() -> list[BaseRoute]:
    """`/download/studies/{study}[/series/{series}]` (ZIP) and `…/instances/{instance}`."""
    study = "/download/studies/{study}"
    return [Route(study, download_zip, methods=["GET"]),
            Route(study + "/series/{series}", download_zip, methods=["GET"]),
            Route(study + "/series/{series}/instances/{instance}", download_instance,
                  methods=["GET"])]
