"""Modality Worklist C-FIND over DIMSE (PS3.4 K.4.1), and the one C-FIND entry point that
sends each request to its information model: the worklist here, Query/Retrieve to dimse/find.

Room: dimse/. Imports services/ (worklist, context), model/ (worklist, status) and dimse/
(events, find). Event in -> permission -> services/worklist -> one Pending response per item,
checking for C-CANCEL between them; a `DicomError` becomes its status, anything else 0xC000.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from pacs.dimse.events import (
    error_dataset,
    peer,
    record_operation,
    require_permission,
    status_dataset,
    wait_until_sent,
)
from pacs.dimse.find import handle_find
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


def handle_worklist_find(event: Any,
                         services: Services) -> Iterator[tuple[Any, Dataset | None]]:
    """A worklist C-FIND: yield (status, identifier) per item, then the final status."""
    started = time.monotonic()
    fields: dict[str, Any] = {"matches": 0}
    final: int = WorklistStatus.SUCCESS
    try:
        for status, identifier in _search(event, services, fields):
            if identifier is None:
                final = int(status.Status) if isinstance(status, Dataset) else int(status)
                if isinstance(status, Dataset) and "ErrorComment" in status:
                    fields["error"] = str(status.ErrorComment)
            yield status, identifier
    finally:
        record_operation(event, services, "C-FIND", final, started, model="Modality Worklist",
                         **fields)


def _keys(search: Any) -> str:
    """The matching keys of a request, for the log line."""
    backslash = "\\"
    return " ".join(f"{v.key.keyword}={backslash.join(v.values)}" for v in search.request.values)


def _search(event: Any, services: Services,
            fields: dict[str, Any]) -> Iterator[tuple[Any, Dataset | None]]:
    try:
        require_permission(event, services, "worklist", WorklistStatus.NOT_AUTHORIZED)
        try:
            identifier = event.identifier
        except Exception as exc:  # pydicom raises many types for undecodable bytes
            raise DicomError(WorklistStatus.UNABLE_TO_PROCESS,
                             f"identifier cannot be decoded: {exc}") from None
        search = start_worklist_search(services, identifier)
        fields["keys"] = _keys(search)

        def is_cancelled() -> bool:
            wait_until_sent(event)
            return bool(event.is_cancelled)

        for response in search.responses(is_cancelled):
            yield search.pending_status, response
            fields["matches"] += 1
        if search.cancelled:
            log.info("worklist C-FIND from %s cancelled after %d items", peer(event),
                     fields["matches"])
            yield status_dataset(WorklistStatus.CANCEL), None
    except DicomError as error:
        yield error_dataset(error), None
    except Exception:  # the one broad catch: nothing may escape to pynetdicom's 0xC311
        log.exception("worklist C-FIND from %s failed", peer(event))
        yield status_dataset(WorklistStatus.UNABLE_TO_PROCESS,
                             "internal error while matching"), None
