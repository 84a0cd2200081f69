"""What every DICOMweb endpoint shares: error handling, path UIDs, the URL root we hand out,
and running the blocking part of a request off the event loop.

Room: web/. Imports Starlette, services/ (the container), model/ and web/errors.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable

from pydicom.uid import UID
from starlette.requests import Request
from starlette.responses import Response

from pacs.services.context import Services
from pacs.web.errors import WebError, response_for

log = logging.getLogger("pacs.web")
DICOMWEB_PREFIX = "/dicom-web"
DEFAULT_PORTS = {"http": 80, "https": 443}

Endpoint = Callable[[Request], Awaitable[Response]]


def services_of(request: Request) -> Services:
    """The Services container the app was built with."""
    return request.app.state.services  # type: ignore[no-any-return]


def caller_name(request: Request) -> str:
    """The HTTP user of the request (set by the access middleware), for log lines."""
    caller = request.scope.get("state", {}).get("caller")
    return getattr(caller, "name", "anonymous")


def note(request: Request, **fields: object) -> None:
    """Add fields (UIDs, counts, an error's reason) to the request's one log line."""
    request.scope.setdefault("state", {}).setdefault("log_fields", {}).update(fields)


def handles_errors(endpoint: Endpoint) -> Endpoint:
    """Turn WebError, DicomError and anything unexpected into an HTTP answer with one log
    line, inside the CORS middleware (so error responses carry CORS headers too)."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as error:  # the one broad catch of an endpoint: answer, never crash
            note(request, error=getattr(error, "reason", None) or getattr(error, "comment", None)
                 or type(error).__name__)
            return response_for(error)

    return wrapper


def path_uid(request: Request, name: str) -> str:
    """A UID from the URL path, checked before use (PS3.5 9.1); 400 when it is not one."""
    value = str(request.path_params.get(name, ""))
    if not value or len(value) > 64 or not UID(value).is_valid:
        raise WebError(400, f"{name} {value[:70]!r} is not a valid UID")
    return value


def url_root(request: Request) -> str:
    """The DICOMweb root URL as the client reached us (or the configured public root)."""
    configured = services_of(request).settings.http_public_root
    if configured:
        return configured + DICOMWEB_PREFIX
    scheme = request.url.scheme
    host = request.headers.get("host", "")
    server = request.scope.get("server") or ("127.0.0.1", None)
    if not host:
        host = str(server[0])
    if not re.search(r":\d+$", host) and server[1] not in (None, DEFAULT_PORTS[scheme]):
        # Some clients (dicomweb-client) send Host without the port they connected to.
        host = f"{host}:{server[1]}"
    return f"{scheme}://{host}{DICOMWEB_PREFIX}"


def resource_url(root: str, study: str, series: str = "", instance: str = "") -> str:
    """The URL of a study, series or instance under `root`."""
    url = f"{root}/studies/{study}"
    if series:
        url += f"/series/{series}"
        if instance:
            url += f"/instances/{instance}"
    return url
