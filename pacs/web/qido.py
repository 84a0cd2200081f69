"""QIDO-RS (PS3.18 10.6): searches for studies, series and instances, answered in DICOM JSON.

Room: web/. Imports services/find (the C-FIND use case), model/ (levels, keys) and web/.
A search is a C-FIND in another envelope: the query parameters become a Study Root request
identifier (relational, since /series and /instances need no study), validated and matched by
the same code, streamed from the same cursor; limit/offset page through it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import chain, islice

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from pacs.model.levels import STUDY_ROOT, keys_at
from pacs.services.context import Services
from pacs.services.find import FindFeatures, start_search
from pacs.web.common import (
    handles_errors,
    note,
    path_uid,
    resource_url,
    services_of,
    url_root,
)
from pacs.web.errors import WebError
from pacs.web.media import DICOM_JSON, accept_of
from pacs.web.threads import stream

log = logging.getLogger("pacs.qido")

STUDY, SERIES, IMAGE = "STUDY", "SERIES", "IMAGE"
_RESERVED = {"limit", "offset", "includefield", "fuzzymatching", "accept", "charset"}
# PS3.18 Tables 10.6.3-3 to -5: what a search returns without includefield. Keys we do not
# index (BitsAllocated) are left out rather than returned empty.
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    STUDY: ("StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
            "ReferringPhysicianName", "TimezoneOffsetFromUTC", "PatientName", "PatientID",
            "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID", "StudyDescription",
            "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    SERIES: ("Modality", "TimezoneOffsetFromUTC", "SeriesDescription", "SeriesInstanceUID",
             "SeriesNumber", "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate",
             "PerformedProcedureStepStartTime", "RequestAttributesSequence"),
    IMAGE: ("SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "TimezoneOffsetFromUTC",
            "InstanceNumber", "Rows", "Columns", "NumberOfFrames"),
}
_LEVELS = (STUDY, SERIES, IMAGE)
_CHUNK = 64 * 1024
_LOOKAHEAD = 100  # matches read before answering, to tell "more than the cap" without a count
_NUMERIC_VRS = {"US": int, "SS": int, "UL": int, "SL": int, "UV": int, "SV": int,
                "FL": float, "FD": float}
TOO_MANY = ('299 minipacs "The number of results exceeded the maximum supported by the '
            'server. Additional results can be requested."')


def attribute_tag(name: str) -> int | None:
    """A keyword or an 8-digit hex tag; None when it names no attribute."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        tag = int(name, 16)
        return tag if keyword_for_tag(tag) or tag >> 16 & 1 else None
    return tag_for_keyword(name)


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def _value(tag: int, vr: str, text: str) -> object:
    """A query value as pydicom holds it: lists for UID lists and multi-valued keys."""
    if text == "":
        return None
    key = next((keys_at(STUDY_ROOT, level).get(tag) for level in _LEVELS
                if tag in keys_at(STUDY_ROOT, level)), None)
    # PS3.18 8.3.4.1: UIDs (and values of multi-valued keys) may be listed with commas.
    values = text.replace(",", "\\").split("\\") if vr == "UI" or (key and key.multi) \
        else text.split("\\")
    if vr in _NUMERIC_VRS:
        try:
            values = [_NUMERIC_VRS[vr](v) for v in values]  # type: ignore[misc]
        except ValueError:
            raise WebError(400, f"{keyword_for_tag(tag) or hex(tag)}: {text!r} is not a "
                                f"number") from None
    return values if len(values) > 1 else values[0]


def _put(dataset: Dataset, path: list[int], text: str | None) -> None:
    """Set the attribute at a (sequence) path; None: include it, empty, for return."""
    tag, rest = path[0], path[1:]
    vr = _vr(tag)
    if rest:
        if vr != "SQ":
            raise WebError(400, f"{keyword_for_tag(tag) or hex(tag)} is not a sequence")
        if tag not in dataset or not dataset[tag].value:
            dataset.add_new(tag, "SQ", DicomSequence([Dataset()]))
        _put(dataset[tag].value[0], rest, text)
    elif vr == "SQ":
        if tag not in dataset:
            dataset.add_new(tag, "SQ", DicomSequence([]))
    elif text is not None or tag not in dataset:
        dataset.add_new(tag, vr, _value(tag, vr, text or ""))


def _path(name: str) -> list[int] | None:
    tags = [attribute_tag(part) for part in name.split(".")]
    return None if any(tag is None for tag in tags) else tags  # type: ignore[return-value]


def _whole(request: Request, name: str, default: int | None) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.strip().isdigit():
        raise WebError(400, f"{name} {text!r} is not a non-negative whole number")
    return int(text)


def build_identifier(request: Request, level: str, fixed: dict[str, str]) -> Dataset:
    """The C-FIND identifier of a QIDO-RS request (PS3.18 8.3.4): match keys, includefield,
    the defaults of the level and, unscoped, of the levels above it."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    identifier.SpecificCharacterSet = "ISO_IR 192"  # query values arrive as UTF-8 text
    for name, value in request.query_params.multi_items():
        if name.lower() in _RESERVED:
            continue
        path = _path(name)
        if path is None:
            log.debug("QIDO-RS: ignored unknown parameter %r", name)
            continue
        _put(identifier, path, value)
    for keyword, uid in fixed.items():
        _put(identifier, [tag_for_keyword(keyword)], uid)  # type: ignore[list-item]
    include: list[str] = []
    for value in request.query_params.getlist("includefield"):
        include += [part.strip() for part in value.split(",") if part.strip()]
    depth = _LEVELS.index(level)
    scoped_levels = {level for level, keyword in ((STUDY, "StudyInstanceUID"),
                                                  (SERIES, "SeriesInstanceUID"))
                     if keyword in fixed}
    for upper in _LEVELS[:depth + 1]:
        if upper not in scoped_levels:
            include += DEFAULT_KEYS[upper]
    if "all" in include:
        include.remove("all")
        include += [key.keyword for key in keys_at(STUDY_ROOT, level).values()]
    for name in include:
        path = _path(name)
        if path is None:
            raise WebError(400, f"includefield {name!r} names no attribute")
        _put(identifier, path, None)
    return identifier


def _json(dataset: Dataset, root: str) -> dict[str, object]:
    del dataset.QueryRetrieveLevel
    study = str(dataset.get("StudyInstanceUID", ""))
    series = str(dataset.get("SeriesInstanceUID", "")) if "SeriesInstanceUID" in dataset else ""
    instance = str(dataset.get("SOPInstanceUID", "")) if "SOPInstanceUID" in dataset else ""
    if study:
        dataset.add_new(0x00081190, "UR", resource_url(root, study, series, instance))
    return dict(sorted(dataset.to_json_dict().items()))


def _page(responses: Iterable[Dataset], limit: int, root: str) -> Iterator[bytes]:
    buffer = bytearray(b"[")
    separator = b""  # not from the buffer's length: it is emptied after each chunk
    for response in islice(responses, limit):
        buffer += separator
        separator = b","
        buffer += json.dumps(_json(response, root), ensure_ascii=False).encode()
        if len(buffer) >= _CHUNK:
            yield bytes(buffer)
            buffer.clear()
    buffer += b"]"
    yield bytes(buffer)


def _answer(services: Services, identifier: Dataset, features: FindFeatures, offset: int,
            limit: int, check_more: bool, root: str, found: dict[str, bool]) -> Iterator[bytes]:
    """The page of a search as DICOM JSON, in the producer thread. With `check_more`, whether
    more matched than the page holds is in `found["more"]` before the first byte: read ahead
    when the page is short (no count), counted when it is long."""
    search = start_search(services, STUDY_ROOT, identifier, features, enforce_cap=False)
    responses = islice(search.responses(), offset, None)
    if check_more:
        ahead = list(islice(responses, min(limit, _LOOKAHEAD) + 1))
        if len(ahead) > limit:
            found["more"] = True
        elif len(ahead) > _LOOKAHEAD:  # a long page: count rather than hold it
            found["more"] = search.query.count(offset + limit + 1) > offset + limit
        responses = chain(ahead, responses)
    yield from _page(responses, limit, root)


def search_endpoint(level: str, scope: tuple[str, ...]) -> Route:
    """The QIDO-RS endpoint of one level, scoped by the path's UIDs (`scope` keywords)."""

    @handles_errors
    async def search(request: Request) -> Response:
        services = services_of(request)
        accept = accept_of(request.headers.get("accept"), request.query_params.get("accept"))
        if not any(r.matches(DICOM_JSON) or r.matches("application/json") for r in accept):
            raise WebError(406, "QIDO-RS answers application/dicom+json")
        names = {"StudyInstanceUID": "study", "SeriesInstanceUID": "series"}
        fixed = {keyword: path_uid(request, names[keyword]) for keyword in scope}
        identifier = build_identifier(request, level, fixed)
        cap = services.settings.max_find_results
        asked = _whole(request, "limit", None)
        limit = min(asked, cap) if asked is not None else cap
        offset = _whole(request, "offset", 0) or 0
        fuzzy = request.query_params.get("fuzzymatching", "false").lower()
        if fuzzy not in ("true", "false"):
            raise WebError(400, f"fuzzymatching {fuzzy!r} is not true or false")
        features = FindFeatures(relational=True, fuzzy_names=fuzzy == "true")
        root = url_root(request)
        note(request, level=level, query=request.url.query, **fixed)
        found = {"more": False}
        body = stream(services, lambda: _answer(services, identifier, features, offset, limit,
                                                asked is None or asked > cap, root, found))
        # The first piece comes after the search was validated and `found` settled: an
        # invalid identifier raises here and is answered with its status.
        first = await anext(body)
        headers = {"Warning": TOO_MANY} if found["more"] else {}
        return StreamingResponse(_after(first, body), headers=headers, media_type=DICOM_JSON)

    return Route("/", search, methods=["GET"], name=f"qido-{level.lower()}")


async def _after(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for piece in rest:
            yield piece
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


def qido_routes() -> list[Route]:
    """The six QIDO-RS resources (PS3.18 Table 10.6.1-2)."""
    table = [
        ("/studies", STUDY, ()),
        ("/series", SERIES, ()),
        ("/instances", IMAGE, ()),
        ("/studies/{study}/series", SERIES, ("StudyInstanceUID",)),
        ("/studies/{study}/instances", IMAGE, ("StudyInstanceUID",)),
        ("/studies/{study}/series/{series}/instances", IMAGE,
         ("StudyInstanceUID", "SeriesInstanceUID")),
    ]
    routes = []
    for path, level, scope in table:
        endpoint = search_endpoint(level, scope)
        routes.append(Route(path, endpoint.endpoint, methods=["GET"], name=endpoint.name))
    return routes
