"""WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.7-8, 8.3.5.1): frames as JPEG or
PNG, windowed from the data set (or `window=`), fit to `viewport=`, at `quality=`.

Room: web/. Imports services/render, services/delivery, web/. An instance or frames answer
one image (several frames: multipart/related); a series or study answers one part per
instance; a thumbnail is one small image of a representative frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pacs.services.context import Services
from pacs.services.delivery import number_of_frames, read_dataset
from pacs.services.render import FORMATS, RenderError, RenderOptions, render_frame
from pacs.services.retrieve import InstanceRecord, InstanceUnavailable
from pacs.web.common import handles_errors, note
from pacs.web.errors import WebError
from pacs.web.frames import INSTANCE, frame_numbers
from pacs.web.media import JPEG, MULTIPART, MediaRange, accept_of
from pacs.web.multipart import MultipartWriter
from pacs.web.threads import call, stream
from pacs.web.wado import instance_set, instance_url

log = logging.getLogger("pacs.wado")
THUMBNAIL_SIZE = (128, 128)


def rendered_type(ranges: list[MediaRange]) -> str:
    """The image type to render: the first acceptable of JPEG and PNG (either as itself or as
    the parts of multipart/related); 406 when neither is acceptable."""
    for entry in ranges:
        candidate = (entry.part_type or "*/*") if entry.media_type == MULTIPART \
            else entry.media_type
        for media_type in (JPEG, *FORMATS):
            if MediaRange(candidate).matches(media_type):
                return media_type
    raise WebError(406, "rendered resources are image/jpeg or image/png")


def _numbers(request: Request, name: str, count: int) -> list[float] | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",")[:count]]
    except ValueError:
        raise WebError(400, f"{name} {text!r} is not a list of numbers") from None
    if len(values) < count:
        raise WebError(400, f"{name} {text!r} needs {count} numbers")
    return values


def render_options(request: Request, thumbnail: bool = False) -> RenderOptions:
    """The rendering parameters of PS3.18 8.3.5.1: viewport, quality, window, accept."""
    accept = accept_of(request.headers.get("accept"), request.query_params.get("accept"))
    media_type = rendered_type(accept)
    viewport = _numbers(request, "viewport", 2)
    if viewport is not None and (viewport[0] < 1 or viewport[1] < 1):
        raise WebError(400, "viewport width and height must be at least 1")
    quality = _numbers(request, "quality", 1)
    if quality is not None and not 1 <= quality[0] <= 100:
        raise WebError(400, "quality must be 1-100")
    window = _numbers(request, "window", 2)
    size = (int(viewport[0]), int(viewport[1])) if viewport else \
        THUMBNAIL_SIZE if thumbnail else None
    return RenderOptions(media_type, size, int(quality[0]) if quality else 90,
                         (window[0], window[1]) if window else None)


def render_instance(services: Services, record: InstanceRecord, frames: list[int] | None,
            options: RenderOptions, middle: bool = False) -> list[bytes]:
    """The frames (1-based; None: the first, or the middle one) of an instance, rendered."""
    try:
        dataset = read_dataset(services.archive, record, None)
    except InstanceUnavailable as exc:
        raise WebError(500, f"instance {record.sop_instance_uid}: {exc}") from None
    return _render_dataset(dataset, frames, options, middle)


def _render_dataset(dataset: Dataset, frames: list[int] | None, options: RenderOptions,
                    middle: bool) -> list[bytes]:
    count = number_of_frames(dataset)
    if count == 0:
        raise WebError(406, "the instance has no pixel data to render")
    if frames is None:
        frames = [count // 2 + 1 if middle else 1]
    missing = [n for n in frames if n > count]
    if missing:
        raise WebError(404, f"frame {missing[0]} does not exist (the instance has {count})")
    try:
        return [render_frame(dataset, number - 1, options) for number in frames]
    except RenderError as exc:
        raise WebError(406, str(exc)) from None


def _one_or_multipart(images: list[bytes], media_type: str) -> Response:
    if len(images) == 1:
        return Response(images[0], media_type=media_type)
    writer = MultipartWriter(media_type)
    body = b"".join(part for image in images
                    for part in writer.part([image], {"Content-Type": media_type}))
    return Response(body + writer.close(), media_type=writer.content_type)


def _series_parts(services: Services, records: list[InstanceRecord], options: RenderOptions,
                  writer: MultipartWriter, root: str) -> Iterator[bytes]:
    for record in records:
        try:
            image = render_instance(services, record, None, options)[0]
        except WebError as exc:
            log.warning("rendered: instance %s skipped: %s", record.sop_instance_uid,
                        exc.reason)
            continue
        yield from writer.part([image], {"Content-Type": options.media_type,
                                         "Content-Location": instance_url(root, record)
                                         + "/rendered"})
    yield writer.close()


@handles_errors
async def rendered(request: Request) -> Response:
    """GET a rendered study, series, instance or frames (PS3.18 10.4.1.1.7)."""
    options = render_options(request)
    frames = frame_numbers(str(request.path_params["frames"])) \
        if "frames" in request.path_params else None
    services, records, root = await instance_set(request)
    note(request, rendered=options.media_type)
    if "instance" in request.path_params:
        images = await call(services, render_instance, services, records[0], frames, options)
        return _one_or_multipart(images, options.media_type)
    writer = MultipartWriter(options.media_type)
    return StreamingResponse(
        stream(services, lambda: _series_parts(services, records, options, writer, root)),
        media_type=writer.content_type)


@handles_errors
async def thumbnail(request: Request) -> Response:
    """GET a thumbnail of a study, series, instance or frame (PS3.18 10.4.1.1.8): one image
    of the middle instance (of the first series) and its middle frame."""
    options = render_options(request, thumbnail=True)
    frames = frame_numbers(str(request.path_params["frames"]))[:1] \
        if "frames" in request.path_params else None
    services, records, _ = await instance_set(request)
    first_series = [r for r in records if r.series_instance_uid
                    == records[0].series_instance_uid]
    chosen = first_series[len(first_series) // 2]
    images = await call(services, render_instance, services, chosen, frames, options, True)
    return Response(images[0], media_type=options.media_type)


def rendered_routes() -> list[BaseRoute]:
    """Rendered and thumbnail at every level."""
    routes: list[BaseRoute] = []
    for path in ("/studies/{study}", "/studies/{study}/series/{series}", INSTANCE,
                 INSTANCE + "/frames/{frames}"):
        routes.append(Route(path + "/rendered", rendered, methods=["GET"]))
        routes.append(Route(path + "/thumbnail", thumbnail, methods=["GET"]))
    return routes
