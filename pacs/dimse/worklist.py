"""Modality Worklist C-FIND over DIMSE (PS3.4 K.4.1), and the one C-FIND entry point that
sends each request to its information model: the worklist here, Query/Retrieve to dimse/find.

Room: dimse/. Imports services/ (worklist, context), model/ (worklist, status) and dimse/
(events, find, searches). Event in -> permission -> services/worklist -> dimse/searches streams
one Pending response per item, checking for C-CANCEL between them; a `DicomError` becomes its
status, anything else 0xC000.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from pacs.dimse.events import require_permission
from pacs.dimse.find import handle_find
from pacs.dimse.searches import stream_search
from pacs.model.status import DicomError, WorklistStatus
from pacs.model.worklist import MODALITY_WORKLIST_FIND
from pacs.services.context import Services
from pacs.services.worklist import start_worklist_search

log = logging.getLogger("pacs.worklist")


def handle_c_find(event: Any, services: Services) -> Iterator[tuple[Any, Dataset | None]]:
    """EVT_C_FIND: the worklist model here, the Query/Retrieve models in dimse/find."""
    if str(event.context.abstract_syntax) == MODALITY_WORKLIST_FIND:
        yield from handle_worklist_find(event, services)
    else:
        yield from handle_find(event, services)


def _keys(search: Any) -> str:
    """The matching keys of a request, for the log line."""
    backslash = "\\"
    return " ".join(f"{v.key.keyword}={backslash.join(v.values)}" for v in search.request.values)


def handle_worklist_find(event: Any,
                         services: Services) -> Iterator[tuple[Any, Dataset | None]]:
    """A worklist C-FIND: yield (status, identifier) per item, then the final status."""

    def open_search(fields: dict[str, Any]) -> Any:
        require_permission(event, services, "worklist", WorklistStatus.NOT_AUTHORIZED)
        try:
            identifier = event.identifier
        except Exception as exc:  # pydicom raises many types for undecodable bytes
            raise DicomError(WorklistStatus.UNABLE_TO_PROCESS,
                             f"identifier cannot be decoded: {exc}") from None
        search = start_worklist_search(services, identifier)
        fields["keys"] = _keys(search)
        return search

    yield from stream_search(event, services, WorklistStatus, open_search, log,
                             "worklist C-FIND", "items", log_refusals=False,
                             record_fields={"model": "Modality Worklist"})
