"""HTTP statuses: the one table from a service's `DicomError` to an HTTP status, and the
errors of the web face itself (not found, not acceptable, unsupported media type).

Room: web/. Imports model/status and Starlette's responses. The DIMSE status table lives in
model/status.py; this is its HTTP twin (PS3.18 8.6, 10.4.3, 10.5.3, 10.6.3).
"""

from __future__ import annotations

import json
import logging
from enum import IntEnum

from starlette.responses import Response

from pacs.model.status import DicomError, FindStatus, RetrieveStatus, StoreStatus

log = logging.getLogger("pacs.web")

# (status class, code) -> HTTP status. Keyed by class too: IntEnum members of different
# classes with the same number compare equal, and 0xC000 means different things per service.
HTTP_STATUS: dict[tuple[type[IntEnum], int], int] = {
    (FindStatus, FindStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS): 400,
    (FindStatus, FindStatus.UNABLE_TO_PROCESS): 400,
    (FindStatus, FindStatus.NOT_AUTHORIZED): 403,
    (FindStatus, FindStatus.OUT_OF_RESOURCES): 503,
    (RetrieveStatus, RetrieveStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS): 400,
    (RetrieveStatus, RetrieveStatus.NOT_AUTHORIZED): 403,
    (RetrieveStatus, RetrieveStatus.OUT_OF_RESOURCES_MATCHES): 413,
    (RetrieveStatus, RetrieveStatus.OUT_OF_RESOURCES_SUB_OPERATIONS): 503,
    (RetrieveStatus, RetrieveStatus.UNABLE_TO_PROCESS): 503,
    (StoreStatus, StoreStatus.CANNOT_UNDERSTAND): 400,
    (StoreStatus, StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS): 409,
    (StoreStatus, StoreStatus.DUPLICATE_SOP_INSTANCE): 409,
    (StoreStatus, StoreStatus.SOP_CLASS_NOT_SUPPORTED): 409,
    (StoreStatus, StoreStatus.NOT_AUTHORIZED): 403,
    (StoreStatus, StoreStatus.OUT_OF_RESOURCES): 503,
}


def http_status(error: DicomError) -> int:
    """The HTTP status of a service's DicomError (500 for one the table does not name)."""
    return HTTP_STATUS.get((type(error.status), int(error.status)), 500)


class WebError(Exception):
    """A refusal of the web face with its HTTP status and a reason for the client."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def error_response(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    """An error body a person and a script can read: JSON with the status and the reason.

    The reason also goes into a Warning header (PS3.18 8.6.3 uses 299 for such text).
    """
    body = json.dumps({"status": status, "reason": reason}).encode()
    warning = reason.encode("ascii", "replace").decode().replace('"', "'")
    return Response(body, status, {**(headers or {}), "Warning": f'299 minipacs "{warning}"'},
                    media_type="application/json")


def response_for(error: Exception) -> Response:
    """The HTTP answer to an error raised while serving a request."""
    if isinstance(error, WebError):
        return error_response(error.status, error.reason, error.headers)
    if isinstance(error, DicomError):
        return error_response(http_status(error), error.comment)
    log.exception("internal error", exc_info=error)
    return error_response(500, "internal error")
