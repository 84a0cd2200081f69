"""C-MOVE and C-GET handlers: one sub-operation loop for both services (PS3.4 C.4.2, C.4.3).

Room: dimse/. Imports services/ (retrieve: the instance set; suboperations: the loop), model/
and dimse/destination, through which the C-STOREs go out. This module is the DIMSE envelope:
permission, the identifier, and sending every response itself.

Why not pynetdicom's own C-MOVE/C-GET machinery (QueryRetrieveServiceClass._move_scp/_get_scp):
it opens one destination association with the handler's contexts (no more than 128 pairs, no
per-instance choice of the stored syntax), re-encodes yielded Datasets instead of sending the
stored bytes, sets Move Originator AE Title to our own title, counts only what its own
`send_c_store` reports (a missing file would be an empty UID in the failed list, a conversion
could not be a warning), answers a refusing destination with 0xA801, and goes through the lost
response race. So the handler sends every response itself (`Responder`): Pending after each
sub-operation, then the final one. pynetdicom insists on sending one more response after the
handler's generator ends; the handler yields what makes it a plain zero-count Success and the
Responder drops exactly that one message (it matches our Message ID Being Responded To and
arrives after our final response).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import encode

from pacs.dimse.destination import RequesterLink, open_destination
from pacs.dimse.events import calling_ae, peer, record_operation, require_permission
from pacs.dimse.pynetdicom_internals import (
    NO_DATA_SET,
    association_alive,
    drop_response,
    encode_command,
    send_message,
    send_primitive,
)
from pacs.model.levels import model_for_sop_class
from pacs.model.retrieve_identifier import RetrieveRequest, parse_retrieve_identifier
from pacs.model.status import DicomError, RetrieveStatus
from pacs.services.context import Services
from pacs.services.retrieve import (
    AssociationPlan,
    Counts,
    Retrieval,
    failed_uid_list,
    find_instances,
    plan_associations,
    resolve_destination,
)
from pacs.services.suboperations import (
    Originator,
    StoreLink,
    counts_fields,
    run_sub_operations,
)

log = logging.getLogger("pacs.retrieve")
# Command Field of the responses (PS3.7 E.1-1): C-GET-RSP, C-MOVE-RSP.
_RESPONSE_COMMAND_FIELDS = {C_GET: 0x8010, C_MOVE: 0x8021}


class Responder:
    """Sends the C-MOVE/C-GET responses of one request on the requester's association."""

    def __init__(self, event: Any, primitive_class: type):
        self.assoc = event.assoc
        self.primitive_class = primitive_class
        self.request = event.request
        self.context_id = int(event.context.context_id)
        self.transfer_syntax = event.context.transfer_syntax
        self.finished = False
        self.status: int = RetrieveStatus.UNABLE_TO_PROCESS
        self.fields: dict[str, Any] = {}
        self._pending_fields: dict[str, Any] = {
            "CommandField": _RESPONSE_COMMAND_FIELDS[primitive_class],
            "CommandDataSetType": NO_DATA_SET, "Status": int(RetrieveStatus.PENDING),
            "AffectedSOPClassUID": str(self.request.AffectedSOPClassUID),
            "MessageIDBeingRespondedTo": int(self.request.MessageID),
        }
        # A drop left over from an earlier request whose trailing response never came.
        drop_response(self.assoc, None)

    def _send(self, response: Any, context_id: int) -> None:
        # Straight to the socket when it is open: on a C-GET these responses and the C-STOREs
        # share the association, and go out in the order they are made.
        send_primitive(self.assoc, response, context_id)

    def _primitive(self, status: int) -> Any:
        response = self.primitive_class()
        response.MessageIDBeingRespondedTo = self.request.MessageID
        response.AffectedSOPClassUID = self.request.AffectedSOPClassUID
        response.Status = int(status)
        return response

    def pending(self, counts: Counts) -> None:
        """A Pending (0xFF00) response with the four counts."""
        fields = {**self._pending_fields,
                  "NumberOfRemainingSuboperations": counts.remaining,
                  "NumberOfCompletedSuboperations": counts.completed,
                  "NumberOfFailedSuboperations": counts.failed,
                  "NumberOfWarningSuboperations": counts.warning}
        # Encoded from its fields (one per sub-operation); the primitive when the fast path
        # is closed.
        if send_message(self.assoc, self.context_id, encode_command(fields)):
            return
        response = self._primitive(RetrieveStatus.PENDING)
        response.NumberOfRemainingSuboperations = counts.remaining
        response.NumberOfCompletedSuboperations = counts.completed
        response.NumberOfFailedSuboperations = counts.failed
        response.NumberOfWarningSuboperations = counts.warning
        self._send(response, self.context_id)

    def final(self, status: RetrieveStatus, counts: Counts | None = None,
              failed_uids: list[str] | None = None, comment: str = "",
              offending_element: int | None = None) -> None:
        """The final response; afterwards pynetdicom's own trailing response is dropped."""
        response = self._primitive(status)
        if counts is not None:
            if status == RetrieveStatus.CANCEL:
                response.NumberOfRemainingSuboperations = counts.remaining
            response.NumberOfCompletedSuboperations = counts.completed
            response.NumberOfFailedSuboperations = counts.failed
            response.NumberOfWarningSuboperations = counts.warning
        if failed_uids is not None and status != RetrieveStatus.SUCCESS:
            identifier = Dataset()
            identifier.FailedSOPInstanceUIDList = failed_uid_list(
                failed_uids, explicit_vr=not self.transfer_syntax.is_implicit_VR)
            response.Identifier = BytesIO(encode(
                identifier, self.transfer_syntax.is_implicit_VR,
                self.transfer_syntax.is_little_endian, self.transfer_syntax.is_deflated,
            ))
        if comment:
            response.ErrorComment = comment[:64]
        if offending_element is not None:
            response.OffendingElement = [offending_element]
        self._send(response, self.context_id)
        self.finished = True
        self.status = int(status)
        if comment:
            self.fields["error"] = comment
        if self.requester_present():
            drop_response(self.assoc, self.primitive_class, int(self.request.MessageID))

    def error(self, error: DicomError) -> None:
        """A final failure response from a DicomError (before any sub-operation)."""
        self.final(error.status, comment=error.error_comment,
                   offending_element=error.offending_element)

    def requester_present(self) -> bool:
        """Whether the requester's association can still take responses."""
        return bool(self.assoc.is_established and association_alive(self.assoc))


def _request(event: Any, sop_class_role: str, services: Services) -> RetrieveRequest:
    model = model_for_sop_class(str(event.request.AffectedSOPClassUID))
    if model is None:
        raise DicomError(RetrieveStatus.UNABLE_TO_PROCESS,
                         f"{sop_class_role}: unknown SOP class {event.request.AffectedSOPClassUID}")
    try:
        identifier = event.identifier
    except Exception as exc:  # noqa: BLE001 - pynetdicom/pydicom raise many kinds here
        raise DicomError(RetrieveStatus.UNABLE_TO_PROCESS,
                         f"cannot decode the identifier: {type(exc).__name__}") from exc
    return parse_retrieve_identifier(identifier, model, services.settings.strict_hierarchy)


def _priority(event: Any) -> int:
    return int(getattr(event.request, "Priority", 2) or 0)


def _move(event: Any, services: Services, responder: Responder) -> None:
    settings = services.settings
    caller = calling_ae(event)
    destination_ae = str(event.request.MoveDestination or "").strip()
    responder.fields["destination"] = destination_ae
    try:
        require_permission(event, services, "move", RetrieveStatus.NOT_AUTHORIZED)
        endpoints = resolve_destination(settings, destination_ae, caller,
                                        str(event.assoc.requestor.address))
        request = _request(event, "C-MOVE", services)
        retrieval = Retrieval(find_instances(services.index, request))
    except DicomError as error:
        log.warning("C-MOVE from %s to %s refused: %s", peer(event), destination_ae, error)
        responder.error(error)
        return
    responder.fields["level"] = request.level
    log.info("C-MOVE from %s to %s: %s, %d instances", peer(event), destination_ae,
             request.describe(), retrieval.total)
    originator = Originator(caller, int(event.request.MessageID))

    def open_link(plan: AssociationPlan, fresh: bool = False) -> tuple[StoreLink | None, str]:
        return open_destination(settings, endpoints, destination_ae, plan.contexts, fresh)

    run_sub_operations(services, responder, retrieval, plan_associations(retrieval.instances),
                       open_link, originator, _priority(event),
                       lambda: bool(event.is_cancelled), peer(event))
    responder.fields.update(counts_fields(retrieval))


def _get(event: Any, services: Services, responder: Responder) -> None:
    try:
        require_permission(event, services, "get", RetrieveStatus.NOT_AUTHORIZED)
        request = _request(event, "C-GET", services)
        retrieval = Retrieval(find_instances(services.index, request))
    except DicomError as error:
        log.warning("C-GET from %s refused: %s", peer(event), error)
        responder.error(error)
        return
    responder.fields["level"] = request.level
    log.info("C-GET from %s: %s, %d instances", peer(event), request.describe(),
             retrieval.total)
    link = RequesterLink(event.assoc, services.settings.dimse_timeout, f"C-GET by {peer(event)}")

    def open_link(plan: AssociationPlan, fresh: bool = False) -> tuple[StoreLink | None, str]:
        return link, ""  # the requester's own association: never kept, never stale

    plans = [AssociationPlan([], list(retrieval.instances))] if retrieval.instances else []
    run_sub_operations(services, responder, retrieval, plans, open_link, None,
                       _priority(event), lambda: bool(event.is_cancelled), peer(event))
    responder.fields.update(counts_fields(retrieval))


def _guarded(operation: str, body: Any, event: Any, services: Services,
             responder: Responder) -> None:
    """Run the operation, answer UNABLE_TO_PROCESS if it breaks, log and count it once."""
    started = time.monotonic()
    try:
        body(event, services, responder)
    except Exception:  # the one broad catch: nothing may escape to pynetdicom's 0xC5xx/0xC4xx
        log.exception("%s from %s failed", operation, peer(event))
        if not responder.finished and responder.requester_present():
            responder.final(RetrieveStatus.UNABLE_TO_PROCESS,
                            comment=f"internal error during {operation}")
    if not responder.finished:
        responder.fields["error"] = "requester went away"
    record_operation(event, services, operation, responder.status, started, **responder.fields)


def handle_move(event: Any, services: Services) -> Iterator[Any]:
    """C-MOVE: every response is sent by the Responder; the yields feed pynetdicom a
    zero-count Success, which the Responder drops."""
    _guarded("C-MOVE", _move, event, services, Responder(event, C_MOVE))
    yield "127.0.0.1", 0
    yield 0


def handle_get(event: Any, services: Services) -> Iterator[Any]:
    """C-GET: every response is sent by the Responder (see handle_move)."""
    _guarded("C-GET", _get, event, services, Responder(event, C_GET))
    yield 0
