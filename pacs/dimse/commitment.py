"""Storage Commitment Push Model over DIMSE (PS3.4 J.3): the N-ACTION handler, and the channel
that sends each result as an N-EVENT-REPORT.

Room: dimse/ (pynetdicom). Imports services/ (commitment, context), model/ (commitment,
status), config and dimse/ (events, destination, tls). The N-ACTION is answered once the
request is in the index; services/commitment then checks the instances and sends the report
through `DimseReportChannel`: on the requester's association when it is still established and
we act as SCP on its Storage Commitment context (PS3.4 J.3.3.1.2 note), otherwise on a new
association to the requester's AE from the AE table, proposing the SCP role (J.3.3.1.3 note).
Both ways park the association's reactor (dimse/destination.py) and read the N-EVENT-REPORT
response from the DIMSE queue ourselves, so pynetdicom's reactor cannot take it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import A_RELEASE

from pacs.config import Settings
from pacs.dimse.events import (
    calling_ae,
    normalized_error_dataset,
    peer,
    record_operation,
    require_permission,
    set_no_delay,
    status_dataset,
)
from pacs.dimse.pynetdicom_internals import (
    give_back_messages,
    park_reactor,
    take_message_entry,
    unpark_reactor,
)
from pacs.dimse.tls import tls_client_context
from pacs.model.commitment import (
    STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_PUSH_MODEL,
    parse_action,
)
from pacs.model.status import CommitmentStatus, DicomError
from pacs.services.commitment import CommitmentReporter
from pacs.services.context import Services

log = logging.getLogger("pacs.commitment")
_POLL = 0.05  # how often a wait for the N-EVENT-REPORT response looks at the association


def _commitment_context(assoc: Any, as_scp: bool) -> Any | None:
    """The accepted Storage Commitment context (one on which we act as SCP, if `as_scp`)."""
    for context in assoc.accepted_contexts:
        if str(context.abstract_syntax) == STORAGE_COMMITMENT_PUSH_MODEL \
                and (context.as_scp or not as_scp):
            return context
    return None


def handle_n_action(event: Any, services: Services) -> tuple[Dataset, Dataset | None]:
    """EVT_N_ACTION: check and keep the request, answer, then report in the background."""
    started = time.monotonic()
    transaction = ""
    try:
        require_permission(event, services, "commitment", CommitmentStatus.NOT_AUTHORIZED)
        try:
            information = event.action_information
        except Exception as exc:  # pydicom raises many types for undecodable bytes
            raise DicomError(CommitmentStatus.INVALID_ARGUMENT_VALUE,
                             f"action information cannot be decoded: {exc}") from None
        action = parse_action(str(event.request.RequestedSOPInstanceUID or ""),
                              event.action_type, information)
        transaction = action.transaction_uid
        record = services.commitments.accept(calling_ae(event), action)
    except DicomError as error:
        record_operation(event, services, "N-ACTION", error.status, started,
                         transaction_uid=transaction, error=error.comment)
        return normalized_error_dataset(error), None
    except Exception:  # the one broad catch: nothing may escape to pynetdicom
        log.exception("storage commitment from %s failed", peer(event))
        record_operation(event, services, "N-ACTION", CommitmentStatus.PROCESSING_FAILURE,
                         started, transaction_uid=transaction, error="internal error")
        return status_dataset(CommitmentStatus.PROCESSING_FAILURE,
                              "internal error while accepting the request"), None
    record_operation(event, services, "N-ACTION", CommitmentStatus.SUCCESS, started,
                     transaction_uid=transaction, instances=len(record.references))
    # The report thread parks the reactor, which waits for this answer to be sent first.
    same = event.assoc if _commitment_context(event.assoc, as_scp=True) is not None else None
    services.commitments.submit(record, same)
    return status_dataset(CommitmentStatus.SUCCESS), None


def _exchange(assoc: Any, context: Any, event_type: int, information: Dataset,
              timeout: float, give_up: Callable[[], str]) -> str:
    """Send one N-EVENT-REPORT on a parked association and wait for its response; "" when
    the peer answered Success, else why not. `give_up` says why to stop waiting, or ""."""
    syntax = context.transfer_syntax[0]
    encoded = encode(information, syntax.is_implicit_VR, syntax.is_little_endian,
                     syntax.is_deflated)
    if encoded is None:
        return "event information cannot be encoded"
    request = N_EVENT_REPORT()
    request.MessageID = 1
    request.AffectedSOPClassUID = STORAGE_COMMITMENT_PUSH_MODEL
    request.AffectedSOPInstanceUID = STORAGE_COMMITMENT_INSTANCE
    request.EventTypeID = event_type
    request.EventInformation = BytesIO(encoded)
    assoc.dimse.send_msg(request, context.context_id)
    held: list[Any] = []  # the peer's own requests meanwhile, for the reactor to serve
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if reason := give_up():
                return reason
            entry = take_message_entry(assoc, _POLL)
            if entry is None:
                continue
            message = entry[1]
            if message is None:
                return "association closed"
            if isinstance(message, N_EVENT_REPORT) and message.MessageIDBeingRespondedTo == 1:
                status = None if message.Status is None else int(message.Status)
                return "" if status == 0 else f"N-EVENT-REPORT answered with status {status}"
            held.append(entry)
        return f"no N-EVENT-REPORT response in {timeout:g} s"
    finally:
        give_back_messages(assoc, held)


def _gone(assoc: Any) -> str:
    """Why the association can no longer carry a report ("" while it can). A release request
    is only looked at: `acse.is_release_requested()` would take it from the reactor, which
    must answer it once unparked."""
    waiting = assoc.dul.peek_next_pdu()
    if isinstance(waiting, A_RELEASE) and waiting.result is None:
        return "the requester is releasing the association"
    if not assoc.is_established or assoc.acse.is_aborted() or not assoc.dul.is_alive():
        return "the association has ended"
    return ""


class DimseReportChannel:
    """Sends storage commitment results as N-EVENT-REPORT requests."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def on_association(self, association: Any, event_type: int, information: Dataset) -> str:
        """On the requester's own association; "" when delivered, else why not."""
        if reason := _gone(association):
            return reason
        context = _commitment_context(association, as_scp=True)
        if not park_reactor(association):
            unpark_reactor(association)
            return "association thread did not pause"
        try:
            return _exchange(association, context, event_type, information,
                             self.settings.dimse_timeout, lambda: _gone(association))
        finally:
            unpark_reactor(association)

    def to_requester(self, calling_ae: str, event_type: int, information: Dataset) -> str:
        """On a new association to `calling_ae` from the AE table; "" when delivered."""
        remote = self.settings.remote(calling_ae)
        if remote is None:
            return f"no [[remote]] entry for {calling_ae}"
        settings = self.settings
        ae = AE(ae_title=settings.ae_title)
        ae.acse_timeout = ae.connection_timeout = settings.acse_timeout
        ae.dimse_timeout = settings.dimse_timeout
        ae.network_timeout = settings.network_timeout
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL,
                                 [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        # J.3.3.1.3 note: the report's sender proposes the SCP role, the requester accepts.
        role = build_role(STORAGE_COMMITMENT_PUSH_MODEL, scu_role=False, scp_role=True)
        where = f"{remote.ae_title}@{remote.host}:{remote.port}"
        tls_args = (tls_client_context(settings), remote.host) if remote.tls else None
        try:
            assoc = ae.associate(remote.host, remote.port, ae_title=remote.ae_title,
                                 ext_neg=[role], max_pdu=settings.max_pdu, tls_args=tls_args)
        except (OSError, ValueError, RuntimeError) as exc:
            return f"{where}: {exc}"
        if not assoc.is_established:
            return f"{where}: " + ("association rejected" if assoc.is_rejected
                                   else "association aborted" if assoc.is_aborted
                                   else "cannot connect")
        try:
            set_no_delay(getattr(assoc.dul.socket, "socket", None))
            context = _commitment_context(assoc, as_scp=False)
            if context is None:
                return f"{where}: Storage Commitment context not accepted"
            if not park_reactor(assoc):
                return f"{where}: association thread did not pause"
            reason = _exchange(assoc, context, event_type, information,
                               settings.dimse_timeout, lambda: _gone(assoc))
            return f"{where}: {reason}" if reason else ""
        finally:
            if assoc.is_established and not _gone(assoc):
                assoc.release()
            elif not (assoc.is_released or assoc.is_aborted):
                assoc.abort()
            unpark_reactor(assoc)


def start_commitment_reports(services: Services) -> CommitmentReporter:
    """Deliver pending storage commitment reports (from earlier runs too) from now on."""
    services.commitments.start(DimseReportChannel(services.settings))
    return services.commitments
