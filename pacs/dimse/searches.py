"""Streaming the answer of one C-FIND, whatever information model it searches: Pending
responses from a search's cursor, C-CANCEL checked between them, the final status, and one
operation record after the cursor is closed.

Room: dimse/. Imports dimse/events, dimse/pynetdicom_internals (the send fast path) and
model/status; the Query/Retrieve handler (dimse/find) and the worklist handler (dimse/worklist)
open their searches and hand them here.

Pending responses go straight to the socket (`FindResponses`: one command set per C-FIND, each
identifier encoded once, command and identifier in one system call) and are not yielded to
pynetdicom. The final status goes the same way and ends the generator (pynetdicom's own final
Success is dropped), so the peer has it before the operation record is written. When the fast
path is closed (TLS, something queued) a response is yielded for pynetdicom to send, as before.

Served directly (`serve_find`, without pynetdicom's service class: every request on a plain
socket) nothing is yielded for pynetdicom to send: a response the fast path declines goes to
pynetdicom's DIMSE queue, and there is no final response of pynetdicom's to drop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import Any, Protocol

from pydicom.dataset import Dataset

from pacs.dimse.events import (
    error_dataset,
    peer,
    record_operation,
    status_dataset,
    wait_until_sent,
)
from pacs.dimse.pynetdicom_internals import FindResponses, is_direct
from pacs.model.status import DicomError


class StreamedSearch(Protocol):
    """What services/find and services/worklist hand back: responses from a cursor."""

    cancelled: bool

    @property
    def pending_status(self) -> int:
        """0xFF00, or 0xFF01 when some requested keys are not supported."""

    def responses(self, is_cancelled: Callable[[], bool]) -> Iterator[Dataset]:
        """One identifier per match; stops early when `is_cancelled` says so."""


def stream_search(event: Any, services: Any, statuses: type[IntEnum],
                  open_search: Callable[[dict[str, Any]], StreamedSearch],
                  log: logging.Logger, what: str, unit: str,
                  log_refusals: bool, record_fields: dict[str, Any] | None = None,
                  ) -> Iterator[tuple[Any, Dataset | None]]:
    """EVT_C_FIND's generator: (status, identifier) per match, then the final status.

    `open_search` checks permission, decodes the identifier and starts the search (raising
    DicomError to refuse); it may add fields to the operation record. `statuses` is the
    service's status table (SUCCESS, CANCEL and UNABLE_TO_PROCESS are read from it);
    `record_fields` lead the operation record.
    """
    started = time.monotonic()
    fields: dict[str, Any] = {**(record_fields or {}), "matches": 0}
    final = int(statuses["SUCCESS"])
    fast = FindResponses(event, direct=is_direct(event))
    try:
        for status, identifier in _responses(event, fast, statuses, open_search, fields, log,
                                             what, unit, log_refusals):
            if identifier is None:
                final = int(status.Status) if isinstance(status, Dataset) else int(status)
                if isinstance(status, Dataset) and "ErrorComment" in status:
                    fields["error"] = str(status.ErrorComment)
                if _finish(fast, status):
                    # Sent: the generator ends without yielding it, and pynetdicom's own final
                    # response is dropped. (Yielded, pynetdicom would first look for an
                    # A-RELEASE-RQ, and take it off the queue: the peer has its answer and
                    # may release at once, and the reactor would never see the request.)
                    return
            yield status, identifier
    finally:
        # One record per C-FIND, after the cursor is closed (it also returns a pooled
        # PostgreSQL connection).
        record_operation(event, services, "C-FIND", final, started, **fields)


def _finish(fast: FindResponses, status: Any) -> bool:
    """Send the final status the fast way when it is open (pynetdicom's copy is dropped);
    False when pynetdicom must send it."""
    try:
        return fast.finish(status)
    except OSError:  # the connection broke (logged once as it ends)
        return False


def _responses(event: Any, fast: FindResponses, statuses: type[IntEnum],
               open_search: Callable[[dict[str, Any]], StreamedSearch], fields: dict[str, Any],
               log: logging.Logger, what: str, unit: str,
               log_refusals: bool) -> Iterator[tuple[Any, Dataset | None]]:
    try:
        search = open_search(fields)

        def is_cancelled() -> bool:
            wait_until_sent(event)
            return bool(event.is_cancelled)

        for response in search.responses(is_cancelled):
            try:
                sent = fast.send(search.pending_status, response)
            except OSError as exc:  # the connection broke under a response
                log.warning("%s from %s: connection lost after %d %s: %s", what, peer(event),
                            fields["matches"], unit, exc)
                yield status_dataset(statuses["UNABLE_TO_PROCESS"], "connection lost"), None
                return
            if not sent and fast.direct:
                log.error("%s from %s: a response identifier cannot be encoded", what,
                          peer(event))
                yield status_dataset(statuses["UNABLE_TO_PROCESS"],
                                     "a response cannot be encoded"), None
                return
            if not sent:
                yield search.pending_status, response
            fields["matches"] += 1
        if search.cancelled:
            log.info("%s from %s cancelled after %d %s", what, peer(event), fields["matches"],
                     unit)
            yield status_dataset(statuses["CANCEL"]), None
        else:
            yield int(statuses["SUCCESS"]), None
    except DicomError as error:
        if log_refusals:
            log.warning("%s from %s refused: %s", what, peer(event), error)
        yield error_dataset(error), None
    except Exception:  # the one broad catch: nothing may escape to pynetdicom's 0xC311
        log.exception("%s from %s failed", what, peer(event))
        yield status_dataset(statuses["UNABLE_TO_PROCESS"],
                             "internal error while matching"), None


FindHandler = Callable[[Any, Any], Iterator[tuple[Any, "Dataset | None"]]]


def serve_find(event: Any, services: Any, handler: FindHandler) -> None:
    """Serve a C-FIND without pynetdicom's service class: `handler` (an EVT_C_FIND handler)
    sends every response itself; what it yields came after the connection broke, and is tried
    once more (a log line said what happened)."""
    fast = FindResponses(event, direct=True)
    responses = handler(event, services)
    try:
        for status, identifier in responses:
            if identifier is None:
                fast.finish(status)
            else:
                fast.send(status, identifier)
    except OSError:
        pass
    finally:
        responses.close()  # (its operation record is written as it closes)
