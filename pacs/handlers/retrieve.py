"""C-MOVE and C-GET handlers: one sub-operation loop for both services (PS3.4 C.4.2, C.4.3).

Layer: protocol. The request is validated and the instance set planned by the domain
(pacs.retrieve_identifier, pacs.retrieve); C-STOREs go out through handlers.move_destination.

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

import functools
import logging
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import encode

from pacs.handlers.common import calling_ae, peer, record_operation, require_permission
from pacs.handlers.move_destination import (
    Originator,
    RequesterLink,
    StoreLink,
    open_destination,
)
from pacs.levels import model_for_sop_class
from pacs.retrieve import (
    AssociationPlan,
    ConversionError,
    Counts,
    InstanceUnavailable,
    Outcome,
    Retrieval,
    StoredInstance,
    choose_context,
    convert,
    failed_uid_list,
    find_instances,
    plan_associations,
    read_instance,
    resolve_destination,
    store_outcome,
)
from pacs.retrieve_identifier import RetrieveRequest, parse_retrieve_identifier
from pacs.services import Services
from pacs.status import DicomError, RetrieveStatus

log = logging.getLogger("pacs.retrieve")


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
        dimse = self.assoc.dimse
        # A drop left over from an earlier request whose trailing response never came.
        vars(dimse).pop("send_msg", None)
        self._send = functools.partial(type(dimse).send_msg, dimse)

    def _primitive(self, status: int) -> Any:
        response = self.primitive_class()
        response.MessageIDBeingRespondedTo = self.request.MessageID
        response.AffectedSOPClassUID = self.request.AffectedSOPClassUID
        response.Status = int(status)
        return response

    def pending(self, counts: Counts) -> None:
        """A Pending (0xFF00) response with the four counts."""
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
            self.assoc.dimse.send_msg = self._drop_trailing_response

    def _drop_trailing_response(self, primitive: Any, context_id: int) -> None:
        if (isinstance(primitive, self.primitive_class)
                and primitive.MessageIDBeingRespondedTo == self.request.MessageID):
            del self.assoc.dimse.send_msg  # back to the class's method
            return
        self._send(primitive, context_id)

    def error(self, error: DicomError) -> None:
        """A final failure response from a DicomError (before any sub-operation)."""
        self.final(error.status, comment=error.error_comment,
                   offending_element=error.offending_element)

    def requester_present(self) -> bool:
        """Whether the requester's association can still take responses."""
        return (self.assoc.is_established and not self.assoc.acse.is_aborted()
                and self.assoc.dul.is_alive())


def _request(event: Any, sop_class_role: str) -> RetrieveRequest:
    model = model_for_sop_class(str(event.request.AffectedSOPClassUID))
    if model is None:
        raise DicomError(RetrieveStatus.UNABLE_TO_PROCESS,
                         f"{sop_class_role}: unknown SOP class {event.request.AffectedSOPClassUID}")
    try:
        identifier = event.identifier
    except Exception as exc:  # noqa: BLE001 - pynetdicom/pydicom raise many kinds here
        raise DicomError(RetrieveStatus.UNABLE_TO_PROCESS,
                         f"cannot decode the identifier: {type(exc).__name__}") from exc
    return parse_retrieve_identifier(identifier, model)


class _DuePending:
    """The Pending response of the last sub-operation, sent while the next one is in flight
    (its encoding overlaps the peer's storing) or before anything else goes out."""

    def __init__(self, responder: Responder):
        self.responder = responder
        self.counts: Counts | None = None

    def flush(self) -> None:
        """Send the due Pending response, if any."""
        if self.counts is not None:
            counts, self.counts = self.counts, None
            self.responder.pending(counts)


class _Prefetch:
    """The next instance's file, read while the current C-STORE is in flight."""

    def __init__(self, archive: Any):
        self.archive = archive
        self.record: Any = None
        self.result: StoredInstance | Exception | None = None

    def load(self, record: Any) -> None:
        """Read `record`'s file now; any error is kept for `take` (this runs mid-C-STORE)."""
        if record is None or record is self.record:
            return
        self.record = record
        try:
            self.result = read_instance(self.archive, record)
        except Exception as exc:  # noqa: BLE001 - re-raised by take(), outside the C-STORE
            self.result = exc

    def take(self, record: Any) -> StoredInstance:
        """The stored instance of `record`, prefetched or read now."""
        if record is not self.record or self.result is None:
            return read_instance(self.archive, record)
        result, self.record, self.result = self.result, None, None
        if isinstance(result, Exception):
            raise result
        return result


def _sub_operation(services: Services, link: StoreLink, retrieval: Retrieval, record: Any,
                   priority: int, originator: Originator | None,
                   while_waiting: Callable[[], None], prefetch: _Prefetch) -> None:
    """Read, choose a context, convert if needed, send; count the outcome."""
    uid = record.sop_instance_uid
    try:
        stored = prefetch.take(record)
    except InstanceUnavailable as exc:
        log.warning("%s: %s failed: %s", link.description, uid, exc)
        retrieval.record(record, Outcome.FAILED)
        return
    delivery = choose_context(record.sop_class_uid, stored.transfer_syntax_uid, link.accepted)
    if delivery is None:
        log.warning("%s: %s failed: no accepted context for %s in %s or uncompressed",
                    link.description, uid, record.sop_class_uid, stored.transfer_syntax_uid)
        retrieval.record(record, Outcome.FAILED)
        return
    data_set, decompressed = stored.data_set, False
    if delivery.convert:
        try:
            converted = convert(stored, delivery.context.transfer_syntax_uid)
        except ConversionError as exc:
            log.warning("%s: %s failed: cannot convert %s to %s: %s", link.description, uid,
                        stored.transfer_syntax_uid, delivery.context.transfer_syntax_uid, exc)
            retrieval.record(record, Outcome.FAILED)
            return
        data_set, decompressed = converted.data_set, converted.decompressed
        log.log(logging.INFO if decompressed else logging.DEBUG,
                "%s: %s converted from %s to %s", link.description, uid,
                stored.transfer_syntax_uid, delivery.context.transfer_syntax_uid)
    result = link.store(delivery.context, uid, data_set, priority, originator, while_waiting)
    outcome = store_outcome(result.status, decompressed)
    if outcome is not Outcome.FAILED:
        services.metrics.add_bytes("sent", len(data_set))
    if outcome is not Outcome.COMPLETED:
        status = f"0x{result.status:04X}" if result.status is not None else result.detail
        log.warning("%s: %s %s (C-STORE %s)", link.description, uid, outcome.value, status)
    retrieval.record(record, outcome)


def _run(event: Any, services: Services, responder: Responder, retrieval: Retrieval,
         plans: list[AssociationPlan], open_link: Any, originator: Originator | None) -> None:
    """The sub-operation loop shared by C-MOVE and C-GET; sends Pending and final responses."""
    priority = int(getattr(event.request, "Priority", 2) or 0)
    cancelled = False
    due = _DuePending(responder)
    prefetch = _Prefetch(services.archive)
    for plan in plans:
        if cancelled:
            break
        link, reason = open_link(plan)
        if link is None:
            log.warning("%s: %d sub-operations failed: %s", peer(event), len(plan.instances),
                        reason)
            for record in plan.instances:
                retrieval.record(record, Outcome.FAILED)
            continue
        try:
            for position, record in enumerate(plan.instances):
                if event.is_cancelled:
                    log.info("%s: C-CANCEL after %d of %d sub-operations", peer(event),
                             retrieval.total - retrieval.remaining, retrieval.total)
                    cancelled = True
                    break
                if not responder.requester_present():
                    log.warning("%s went away during the retrieve", peer(event))
                    return
                if not link.usable():
                    log.warning("%s: association lost; %d sub-operations failed",
                                link.description, len(plan.instances) - position)
                    for rest in plan.instances[position:]:
                        retrieval.record(rest, Outcome.FAILED)
                    break
                upcoming = plan.instances[position + 1:position + 2]

                def while_waiting(upcoming: list[Any] = upcoming) -> None:
                    due.flush()
                    prefetch.load(upcoming[0] if upcoming else None)

                done = retrieval.total - retrieval.remaining
                try:
                    _sub_operation(services, link, retrieval, record, priority, originator,
                                   while_waiting, prefetch)
                except Exception:  # noqa: BLE001 - one instance must not end the request
                    log.exception("%s: sub-operation for %s failed", link.description,
                                  record.sop_instance_uid)
                    if retrieval.total - retrieval.remaining == done:
                        retrieval.record(record, Outcome.FAILED)
                due.flush()  # when the sub-operation failed before reaching the wire
                if retrieval.remaining:
                    due.counts = retrieval.counts()
        finally:
            link.close()
            due.flush()
    if not responder.requester_present():
        return
    status = retrieval.final_status(cancelled)
    responder.final(status, retrieval.counts(), retrieval.failed_uids)


def _counts_fields(retrieval: Retrieval) -> dict[str, int]:
    return {"instances": retrieval.total, "completed": retrieval.completed,
            "warning": retrieval.warning, "failed": retrieval.failed,
            "remaining": retrieval.remaining}


def _move(event: Any, services: Services, responder: Responder) -> None:
    settings = services.settings
    caller = calling_ae(event)
    destination_ae = str(event.request.MoveDestination or "").strip()
    responder.fields["destination"] = destination_ae
    try:
        require_permission(event, services, "move", RetrieveStatus.NOT_AUTHORIZED)
        endpoints = resolve_destination(settings, destination_ae, caller,
                                        str(event.assoc.requestor.address))
        request = _request(event, "C-MOVE")
        retrieval = Retrieval(find_instances(services.index, request))
    except DicomError as error:
        log.warning("C-MOVE from %s to %s refused: %s", peer(event), destination_ae, error)
        responder.error(error)
        return
    responder.fields["level"] = request.level
    log.info("C-MOVE from %s to %s: %s, %d instances", peer(event), destination_ae,
             request.describe(), retrieval.total)
    originator = Originator(caller, int(event.request.MessageID))

    def open_link(plan: AssociationPlan) -> tuple[StoreLink | None, str]:
        return open_destination(settings, endpoints, destination_ae, plan.contexts)

    _run(event, services, responder, retrieval, plan_associations(retrieval.instances),
         open_link, originator)
    responder.fields.update(_counts_fields(retrieval))


def _get(event: Any, services: Services, responder: Responder) -> None:
    try:
        require_permission(event, services, "get", RetrieveStatus.NOT_AUTHORIZED)
        request = _request(event, "C-GET")
        retrieval = Retrieval(find_instances(services.index, request))
    except DicomError as error:
        log.warning("C-GET from %s refused: %s", peer(event), error)
        responder.error(error)
        return
    responder.fields["level"] = request.level
    log.info("C-GET from %s: %s, %d instances", peer(event), request.describe(),
             retrieval.total)
    link = RequesterLink(event.assoc, services.settings.dimse_timeout, f"C-GET by {peer(event)}")

    def open_link(plan: AssociationPlan) -> tuple[StoreLink | None, str]:
        return link, ""

    plans = [AssociationPlan([], list(retrieval.instances))] if retrieval.instances else []
    _run(event, services, responder, retrieval, plans, open_link, None)
    responder.fields.update(_counts_fields(retrieval))


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
