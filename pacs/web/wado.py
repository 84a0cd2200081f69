"""WADO-RS (PS3.18 10.4): studies, series and instances as multipart/related application/dicom,
and their metadata as DICOM JSON; frames, bulk data and rendered images live beside it.

Room: web/. Imports services/ (retrieve, delivery), model/ and web/. The instance set is the
one a C-GET of the same UIDs reads (services/retrieve.find_instances); each file is streamed
as stored when the client accepts its transfer syntax, else converted (PS3.18 8.7.3.5).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pacs.model.retrieve_identifier import RetrieveRequest
from pacs.services.context import Services
from pacs.services.delivery import converted_part10, open_stored, read_dataset
from pacs.services.retrieve import (
    ConversionError,
    InstanceRecord,
    InstanceUnavailable,
    find_instances,
)
from pacs.web.common import handles_errors, note, path_uid, resource_url, services_of, url_root
from pacs.web.dicomjson import BULK_THRESHOLD, dataset_json
from pacs.web.errors import WebError
from pacs.web.media import (
    DICOM,
    DICOM_JSON,
    InstanceChoice,
    accept_of,
    choose_instance_syntax,
    dicom_syntaxes,
)
from pacs.web.multipart import MultipartWriter
from pacs.web.threads import call, stream

log = logging.getLogger("pacs.wado")
_JSON_CHUNK = 64 * 1024


def target_uids(request: Request) -> tuple[str, str, str]:
    """(study, series, instance) UIDs of the path; '' for the levels it does not name."""
    params = request.path_params
    return (path_uid(request, "study"),
            path_uid(request, "series") if "series" in params else "",
            path_uid(request, "instance") if "instance" in params else "")


async def instance_set(request: Request) -> tuple[Services, list[InstanceRecord], str]:
    """The instances a WADO request names, read from the index once; 404 when none."""
    services = services_of(request)
    study, series, instance = target_uids(request)
    level = "IMAGE" if instance else "SERIES" if series else "STUDY"
    retrieve = RetrieveRequest(level, study_uids=(study,),
                               series_uids=(series,) if series else (),
                               sop_instance_uids=(instance,) if instance else ())
    records = await call(services, find_instances, services.index, retrieve)
    note(request, study=study, series=series, instance=instance)
    if not records:
        raise WebError(404, f"no {level.lower()} {instance or series or study} here")
    return services, records, url_root(request)


def instance_url(root: str, record: InstanceRecord) -> str:
    """The WADO-RS URL of one instance."""
    return resource_url(root, record.study_instance_uid, record.series_instance_uid,
                        record.sop_instance_uid)


def _parts(services: Services, plan: list[tuple[InstanceRecord, InstanceChoice]],
           writer: MultipartWriter, root: str, tally: dict[str, int]) -> Iterator[bytes]:
    for record, choice in plan:
        try:
            if choice.as_stored:
                body: Iterator[bytes] = open_stored(services.archive, record).chunks()
            else:
                body = iter([converted_part10(services.archive, record,
                                              choice.transfer_syntax)])
        except (InstanceUnavailable, ConversionError) as exc:
            # PS3.18 10.4.3: the others are still sent; this one is logged as failed.
            log.warning("WADO-RS: instance %s not sent: %s", record.sop_instance_uid, exc)
            tally["failed"] += 1
            continue
        headers = {"Content-Type": f"{DICOM}; transfer-syntax={choice.transfer_syntax}",
                   "Content-Location": instance_url(root, record)}
        yield from writer.part(body, headers)
        tally["sent"] += 1
    yield writer.close()


@handles_errors
async def retrieve(request: Request) -> Response:
    """GET a study, series or instance (PS3.18 10.4.1.1.1-3)."""
    accept = accept_of(request.headers.get("accept"), request.query_params.get("accept"))
    acceptable = dicom_syntaxes(accept)
    if acceptable is None:
        raise WebError(406, 'WADO-RS sends multipart/related; type="application/dicom" here')
    services, records, root = await instance_set(request)
    plan = []
    for record in records:
        choice = choose_instance_syntax(record.transfer_syntax_uid, acceptable)
        if choice is None:
            raise WebError(406, f"instance {record.sop_instance_uid} is stored in "
                                f"{record.transfer_syntax_uid}; none of the acceptable "
                                f"transfer syntaxes ({', '.join(acceptable)}) can carry it")
        plan.append((record, choice))
    writer = MultipartWriter(DICOM)
    tally = {"sent": 0, "failed": 0}
    note(request, instances=len(records), delivered=tally)
    return StreamingResponse(stream(services, lambda: _parts(services, plan, writer, root,
                                                             tally)),
                             media_type=writer.content_type)


def _metadata(services: Services, records: list[InstanceRecord], root: str) -> Iterator[bytes]:
    buffer = bytearray(b"[")
    separator = b""  # not from the buffer's length: it is emptied after each chunk
    for record in records:
        try:
            dataset = read_dataset(services.archive, record, BULK_THRESHOLD)
        except InstanceUnavailable as exc:
            log.warning("WADO-RS metadata: instance %s skipped: %s", record.sop_instance_uid,
                        exc)
            continue
        buffer += separator
        separator = b","
        document = dataset_json(dataset, instance_url(root, record) + "/bulkdata")
        buffer += json.dumps(document, ensure_ascii=False).encode()
        if len(buffer) >= _JSON_CHUNK:
            yield bytes(buffer)
            buffer.clear()
    buffer += b"]"
    yield bytes(buffer)


@handles_errors
async def metadata(request: Request) -> Response:
    """GET the metadata of a study, series or instance (PS3.18 10.4.1.1.4)."""
    accept = accept_of(request.headers.get("accept"), request.query_params.get("accept"))
    if not any(r.matches(DICOM_JSON) or r.matches("application/json") for r in accept):
        raise WebError(406, "metadata is sent as application/dicom+json")
    services, records, root = await instance_set(request)
    return StreamingResponse(stream(services, lambda: _metadata(services, records, root)),
                             media_type=DICOM_JSON)


def wado_routes() -> list[BaseRoute]:
    """WADO-RS resources: retrieve and metadata at three levels, frames, bulk data, rendered."""
    from pacs.web.frames import frame_routes
    from pacs.web.rendered import rendered_routes

    levels = ("/studies/{study}", "/studies/{study}/series/{series}",
              "/studies/{study}/series/{series}/instances/{instance}")
    routes: list[BaseRoute] = []
    for path in levels:
        routes.append(Route(path, retrieve, methods=["GET"]))
        routes.append(Route(path + "/metadata", metadata, methods=["GET"]))
    return [*routes, *frame_routes(), *rendered_routes()]
