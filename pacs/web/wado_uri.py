"""WADO-URI (PS3.18 9): `GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…`,
answered as application/dicom (streamed, converted when `transferSyntax` asks) or as a
rendered image/jpeg or image/png.

Room: web/. Imports services/ (retrieve, delivery, render), web/.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.uid import UID
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pacs.model.retrieve_identifier import RetrieveRequest
from pacs.services.context import Services
from pacs.services.delivery import converted_part10, open_stored
from pacs.services.render import RenderOptions
from pacs.services.retrieve import InstanceRecord, find_instances
from pacs.web.common import handles_errors, note, services_of
from pacs.web.errors import WebError
from pacs.web.media import DEFAULT_SYNTAX, DICOM, JPEG, PNG, choose_instance_syntax
from pacs.web.rendered import render_instance
from pacs.web.threads import call, stream


def _uid(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if not value or len(value) > 64 or not UID(value).is_valid:
        raise WebError(400, f"{name} {value[:70]!r} is missing or not a valid UID")
    return value


def _number(request: Request, name: str, low: float, high: float) -> float | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise WebError(400, f"{name} {text!r} is not a number") from None
    if not low <= value <= high:
        raise WebError(400, f"{name} {text!r} is out of range")
    return value


def _file(services: Services, record: InstanceRecord, syntax: str, as_stored: bool,
          ) -> Iterator[bytes]:
    archive = services.archive
    if as_stored:
        yield from open_stored(archive, record).chunks()
    else:
        yield converted_part10(archive, record, syntax)


@handles_errors
async def wado_uri(request: Request) -> Response:
    """One object by its three UIDs (PS3.18 9.1)."""
    if request.query_params.get("requestType") != "WADO":
        raise WebError(400, "requestType must be WADO")
    study, series, instance = (_uid(request, name)
                               for name in ("studyUID", "seriesUID", "objectUID"))
    content_type = request.query_params.get("contentType", JPEG).split(";")[0].strip().lower()
    if content_type not in (DICOM, JPEG, PNG):
        raise WebError(406, f"contentType {content_type!r}: application/dicom, image/jpeg or "
                            f"image/png")
    services = services_of(request)
    retrieve = RetrieveRequest("IMAGE", study_uids=(study,), series_uids=(series,),
                               sop_instance_uids=(instance,))
    records = await call(services, find_instances, services.index, retrieve)
    note(request, study=study, series=series, instance=instance, content_type=content_type)
    if not records:
        raise WebError(404, f"no object {instance} in series {series} of study {study}")
    record = records[0]
    if content_type == DICOM:
        wanted = request.query_params.get("transferSyntax") or DEFAULT_SYNTAX
        choice = choose_instance_syntax(record.transfer_syntax_uid, [wanted])
        if choice is None:
            raise WebError(406, f"the object is stored in {record.transfer_syntax_uid} and "
                                f"cannot be sent in {wanted}")
        return StreamingResponse(
            stream(services, lambda: _file(services, record, choice.transfer_syntax,
                                           choice.as_stored)),
            media_type=DICOM)
    frame = _number(request, "frameNumber", 1, 2**31)
    rows, columns = _number(request, "rows", 1, 65535), _number(request, "columns", 1, 65535)
    center, width = _number(request, "windowCenter", -2**31, 2**31), \
        _number(request, "windowWidth", 1, 2**32)
    if (center is None) != (width is None):
        raise WebError(400, "windowCenter and windowWidth go together")
    quality = _number(request, "imageQuality", 1, 100)
    viewport = (int(columns or rows or 0) or 65535, int(rows or columns or 0) or 65535) \
        if rows or columns else None
    options = RenderOptions(content_type, viewport, int(quality or 90),
                            (center, width) if center is not None and width else None)
    images = await call(services, render_instance, services, record,
                        [int(frame)] if frame else None, options)
    return Response(images[0], media_type=content_type)


def wado_uri_routes() -> list[BaseRoute]:
    """The WADO-URI endpoint."""
    return [Route("/wado", wado_uri, methods=["GET"])]
