"""WADO-RS frames and bulk data (PS3.18 10.4.1.1.5-6): pixel frames as stored or decoded,
other large values as application/octet-stream, each as one part of multipart/related.

Room: web/. Imports services/delivery, web/. One instance is read per request (memory is
bounded by that instance).
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pacs.services.delivery import (
    PIXEL_DATA,
    decoded_frame,
    number_of_frames,
    read_dataset,
    stored_frame,
)
from pacs.services.retrieve import InstanceUnavailable
from pacs.web.common import handles_errors, note
from pacs.web.dicomjson import BINARY_VRS
from pacs.web.errors import WebError
from pacs.web.media import OCTET_STREAM, FrameChoice, accept_of, choose_frame_type
from pacs.web.multipart import MultipartWriter
from pacs.web.threads import call
from pacs.web.wado import instance_set, instance_url

log = logging.getLogger("pacs.wado")
INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"


def frame_numbers(text: str) -> list[int]:
    """`1,3,5` -> [1, 3, 5]; 400 for anything but positive whole numbers."""
    numbers = []
    for part in text.split(","):
        if not part.strip().isdigit() or int(part) < 1:
            raise WebError(400, f"frame list {text!r}: {part.strip()!r} is not a frame number")
        numbers.append(int(part))
    return numbers


async def read_one(request: Request) -> tuple[Dataset, str, str]:
    """The one instance of the path, read whole; (data set, its URL, stored syntax)."""
    services, records, root = await instance_set(request)
    record = records[0]
    try:
        dataset = await call(services, read_dataset, services.archive, record, None)
    except InstanceUnavailable as exc:
        raise WebError(500, f"instance {record.sop_instance_uid} cannot be read: {exc}") \
            from None
    return dataset, instance_url(root, record), record.transfer_syntax_uid


def _frames_response(dataset: Dataset, numbers: list[int], choice: FrameChoice,
                     base_url: str) -> Response:
    writer = MultipartWriter(choice.media_type)
    parts: list[bytes] = []
    for number in numbers:
        data = decoded_frame(dataset, number - 1) if choice.decode \
            else stored_frame(dataset, number - 1)
        headers = {"Content-Type": f"{choice.media_type}; transfer-syntax="
                                   f"{choice.transfer_syntax}",
                   "Content-Location": f"{base_url}/frames/{number}"}
        parts += writer.part([data], headers)
    parts.append(writer.close())
    return Response(b"".join(parts), media_type=writer.content_type)


def _choice(request: Request, stored: str) -> FrameChoice:
    accept = accept_of(request.headers.get("accept"), request.query_params.get("accept"))
    choice = choose_frame_type(accept, stored)
    if choice is None:
        raise WebError(406, f"frames stored in {stored} can be sent as "
                            f"application/octet-stream or as stored; neither is acceptable")
    return choice


@handles_errors
async def frames(request: Request) -> Response:
    """GET frames of an instance (PS3.18 10.4.1.1.6)."""
    numbers = frame_numbers(str(request.path_params["frames"]))
    dataset, url, stored = await read_one(request)
    count = number_of_frames(dataset)
    if count == 0:
        raise WebError(404, "the instance has no pixel data")
    missing = [n for n in numbers if n > count]
    if missing:
        raise WebError(404, f"frame {missing[0]} does not exist (the instance has {count})")
    choice = _choice(request, stored)
    note(request, frames=",".join(map(str, numbers)))
    services = request.app.state.services
    return await call(services, _frames_response, dataset, numbers, choice, url)


@handles_errors
async def bulkdata(request: Request) -> Response:
    """GET a bulk data value named by a BulkDataURI (PS3.18 10.4.1.1.5)."""
    text = str(request.path_params["tag"])
    if len(text) != 8 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise WebError(400, f"{text!r} is not an 8-digit hexadecimal tag")
    tag = int(text, 16)
    dataset, url, stored = await read_one(request)
    if tag not in dataset:
        raise WebError(404, f"the instance has no ({text[:4]},{text[4:]})")
    services = request.app.state.services
    if tag == PIXEL_DATA:
        numbers = list(range(1, number_of_frames(dataset) + 1))
        return await call(services, _frames_response, dataset, numbers,
                          _choice(request, stored), url)
    element = dataset[tag]
    if element.VR not in BINARY_VRS or not isinstance(element.value, bytes):
        raise WebError(404, f"({text[:4]},{text[4:]}) is not bulk data")
    writer = MultipartWriter(OCTET_STREAM)
    body = b"".join([*writer.part([element.value], {"Content-Type": OCTET_STREAM}),
                     writer.close()])
    return Response(body, media_type=writer.content_type)


def frame_routes() -> list[BaseRoute]:
    """Frames and bulk data of an instance."""
    return [Route(INSTANCE + "/frames/{frames}", frames, methods=["GET"]),
            Route(INSTANCE + "/bulkdata/{tag}", bulkdata, methods=["GET"])]
