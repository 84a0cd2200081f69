"""The C-MOVE/C-GET sub-operation loop (PS3.4 C.4.2.3, C.4.3.3), whatever carries it.

Room: services/. Imports services/retrieve (instance sets, contexts, conversion) and the
Services container; no protocol. The face supplies where the C-STOREs go (a `StoreLink` per
planned association) and where the responses go (a `ResponseSink`); this module decides the
order: read the next file (in a worker thread) while the current C-STORE goes out, send
each Pending response while the next sub-operation is on the wire, count every outcome, send
the final response, and only then close the last link (a peer slow to release must not delay
the final response).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from pacs.model.status import RetrieveStatus
from pacs.services.context import Services
from pacs.services.retrieve import (
    AcceptedContext,
    AssociationPlan,
    ConversionError,
    Counts,
    InstanceUnavailable,
    Outcome,
    Retrieval,
    StoredInstance,
    choose_context,
    convert,
    read_instance,
    store_outcome,
)

log = logging.getLogger("pacs.retrieve")


@dataclass(frozen=True)
class StoreResult:
    """A C-STORE sub-operation's answer: the peer's status, or None (no valid response)."""

    status: int | None
    detail: str = ""


@dataclass(frozen=True)
class Originator:
    """Move Originator AE Title and Message ID for C-STOREs of a C-MOVE (PS3.7 9.1.1.1)."""

    ae_title: str
    message_id: int


class StoreLink(Protocol):
    """Where C-STORE sub-operations go: one association, one request at a time."""

    description: str

    @property
    def accepted(self) -> Sequence[AcceptedContext]:
        """The contexts on which we may send C-STORE requests."""

    def store(self, context: AcceptedContext, sop_instance_uid: str,
              data_set: bytes | memoryview, priority: int = 2,
              originator: Originator | None = None,
              while_waiting: Callable[[], None] | None = None) -> StoreResult:
        """Send one instance and wait for its answer."""

    def usable(self) -> bool:
        """Whether more C-STOREs can go this way."""

    def may_be_stale(self) -> bool:
        """Whether this association was kept from an earlier request and nothing has been
        answered on it yet in this one: losing it now may mean it was lost before we took it."""

    def close(self, reusable: bool = True) -> None:
        """Done with this link (what that takes, such as a release, may finish later);
        `reusable`: it may stay open a while for a later request, else it ends now."""


class ResponseSink(Protocol):
    """Where the C-MOVE/C-GET responses go."""

    def pending(self, counts: Counts) -> None:
        """A Pending response with the four counts."""

    def final(self, status: RetrieveStatus, counts: Counts | None = None,
              failed_uids: list[str] | None = None, comment: str = "",
              offending_element: int | None = None) -> None:
        """The final response."""

    def requester_present(self) -> bool:
        """Whether the requester can still take responses."""


class KeptAssociationLost(Exception):
    """A C-STORE got no status because an association kept from an earlier request is lost
    (no response, a transport error, an A-ABORT): the sub-operation goes again on a new one."""


class DuePending:
    """The Pending response of the last sub-operation, sent while the next one is in flight
    (its encoding overlaps the peer's storing) or before anything else goes out."""

    def __init__(self, responder: ResponseSink):
        self.responder = responder
        self.counts: Counts | None = None

    def flush(self) -> None:
        """Send the due Pending response, if any."""
        if self.counts is not None:
            counts, self.counts = self.counts, None
            self.responder.pending(counts)


# Threads that read the next file of each running retrieve; started when first needed, kept.
_READERS_LOCK = threading.Lock()
_READERS: ThreadPoolExecutor | None = None
READER_THREADS = 4


def _readers() -> ThreadPoolExecutor:
    global _READERS
    with _READERS_LOCK:
        if _READERS is None:
            _READERS = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="retrieve-read")
        return _READERS


class Prefetch:
    """The next instance's file, read and checked (size, SHA-256) in a reader thread while the
    current one goes out: reading and hashing release the GIL, so they overlap the send, the
    Pending response and the peer's storing instead of following them."""

    def __init__(self, archive: Any):
        self.archive = archive
        self.record: Any = None
        self.future: Future[StoredInstance] | None = None

    def load(self, record: Any) -> None:
        """Start reading `record`'s file; any error is kept for `take`."""
        if record is None or record is self.record:
            return
        self.record = record
        self.future = _readers().submit(read_instance, self.archive, record)

    def take(self, record: Any) -> StoredInstance:
        """The stored instance of `record`, prefetched or read now; raises what reading it
        raised."""
        if record is not self.record or self.future is None:
            return read_instance(self.archive, record)
        future, self.record, self.future = self.future, None, None
        return future.result()

    def close(self) -> None:
        """Drop a read nobody will take (it finishes on its own)."""
        if self.future is not None:
            self.future.cancel()
        self.record = self.future = None


def _sub_operation(services: Services, link: StoreLink, retrieval: Retrieval, record: Any,
                   priority: int, originator: Originator | None,
                   while_waiting: Callable[[], None], prefetch: Prefetch,
                   upcoming: Any) -> None:
    """Read, choose a context, convert if needed, send; count the outcome. `upcoming` (the
    next sub-operation's record, or None) starts being read as soon as this one is."""
    uid = record.sop_instance_uid
    try:
        stored = prefetch.take(record)
    except InstanceUnavailable as exc:
        prefetch.load(upcoming)
        log.warning("%s: %s failed: %s", link.description, uid, exc)
        retrieval.record(record, Outcome.FAILED)
        return
    prefetch.load(upcoming)
    delivery = choose_context(record.sop_class_uid, stored.transfer_syntax_uid, link.accepted)
    if delivery is None:
        log.warning("%s: %s failed: no accepted context for %s in %s or uncompressed",
                    link.description, uid, record.sop_class_uid, stored.transfer_syntax_uid)
        retrieval.record(record, Outcome.FAILED)
        return
    # The stored bytes go out as a view (no copy); a conversion makes new bytes.
    data_set: bytes | memoryview = stored.data_view
    decompressed = False
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
    if result.status is None and link.may_be_stale() and not link.usable():
        raise KeptAssociationLost(result.detail)  # not counted: it goes again
    outcome = store_outcome(result.status, decompressed)
    if outcome is not Outcome.FAILED:
        services.metrics.add_bytes("sent", len(data_set))
    if outcome is not Outcome.COMPLETED:
        status = f"0x{result.status:04X}" if result.status is not None else result.detail
        log.warning("%s: %s %s (C-STORE %s)", link.description, uid, outcome.value, status)
    retrieval.record(record, outcome)


def run_sub_operations(services: Services, responder: ResponseSink, retrieval: Retrieval,
                       plans: list[AssociationPlan], open_link: Callable[..., Any],
                       originator: Originator | None, priority: int,
                       is_cancelled: Callable[[], bool], requester: str) -> None:
    """The sub-operation loop shared by C-MOVE and C-GET; sends Pending and final responses.

    `open_link(plan, fresh=False)` gives the StoreLink of each planned association (or None
    and why); with `fresh` it opens a new association rather than take a kept one.
    `is_cancelled` is asked before each sub-operation; `requester` names the caller in logs.
    """
    cancelled: bool | None = False
    due = DuePending(responder)
    prefetch = Prefetch(services.archive)
    link: StoreLink | None = None

    def reopen(plan: AssociationPlan, lost: StoreLink) -> StoreLink | None:
        # Once per kept association: a fresh one is never stale, so this cannot loop.
        nonlocal link
        lost.close(reusable=False)
        link, reason = open_link(plan, fresh=True)
        if link is None:
            log.warning("%s: %s: no new association: %s", requester, lost.description, reason)
        return link

    try:
        for plan in plans:
            if cancelled:
                break
            if link is not None:
                link.close(reusable=False)  # one association at a time
                link = None
            if plan.instances:
                prefetch.load(plan.instances[0])  # read while the association is opened
            link, reason = open_link(plan)
            if link is None:
                log.warning("%s: %d sub-operations failed: %s", requester,
                            len(plan.instances), reason)
                for record in plan.instances:
                    retrieval.record(record, Outcome.FAILED)
                continue
            try:
                cancelled = _run_plan(services, responder, retrieval, plan, link, due,
                                      prefetch, originator, priority, is_cancelled, requester,
                                      reopen)
            finally:
                due.flush()
            if cancelled is None:
                return  # the requester went away
        if not responder.requester_present():
            return
        status = retrieval.final_status(cancelled)
        responder.final(status, retrieval.counts(), retrieval.failed_uids)
    finally:
        prefetch.close()
        # After the final response: the last association's release (which a slow peer may
        # make last the whole ACSE timeout) must not delay it.
        if link is not None:
            link.close()


def _run_plan(services: Services, responder: ResponseSink, retrieval: Retrieval,
              plan: AssociationPlan, link: StoreLink, due: DuePending, prefetch: Prefetch,
              originator: Originator | None, priority: int, is_cancelled: Callable[[], bool],
              requester: str,
              reopen: Callable[[AssociationPlan, StoreLink], StoreLink | None]) -> bool | None:
    """The sub-operations of one planned association: True when cancelled, None when the
    requester went away, False otherwise.

    A kept association found lost before anything was answered on it (the peer restarted, a
    firewall dropped the connection) is replaced by a new one, and the sub-operation in
    flight goes again: a destination takes a second C-STORE of one SOP Instance as a re-send
    (PS3.4 B.2.3), and nothing is counted twice."""
    position = 0
    while position < len(plan.instances):
        record = plan.instances[position]
        if is_cancelled():
            log.info("%s: C-CANCEL after %d of %d sub-operations", requester,
                     retrieval.total - retrieval.remaining, retrieval.total)
            return True
        if not responder.requester_present():
            log.warning("%s went away during the retrieve", requester)
            return None
        if not link.usable() and link.may_be_stale():
            log.warning("%s: %s: the association kept from an earlier request is lost; "
                        "opening a new one", requester, link.description)
            replacement = reopen(plan, link)
            link = replacement if replacement is not None else link
        if not link.usable():
            log.warning("%s: association lost; %d sub-operations failed",
                        link.description, len(plan.instances) - position)
            for rest in plan.instances[position:]:
                retrieval.record(rest, Outcome.FAILED)
            return False
        upcoming = plan.instances[position + 1] if position + 1 < len(plan.instances) \
            else None
        done = retrieval.total - retrieval.remaining
        try:
            _sub_operation(services, link, retrieval, record, priority, originator,
                           due.flush, prefetch, upcoming)
        except KeptAssociationLost as lost:
            log.warning("%s: %s: the association kept from an earlier request is lost (%s); "
                        "sending %s again on a new one", requester, link.description, lost,
                        record.sop_instance_uid)
            replacement = reopen(plan, link)
            if replacement is None:
                for rest in plan.instances[position:]:
                    retrieval.record(rest, Outcome.FAILED)
                return False
            link = replacement
            continue  # the same sub-operation, on the new association
        except Exception:  # noqa: BLE001 - one instance must not end the request
            log.exception("%s: sub-operation for %s failed", link.description,
                          record.sop_instance_uid)
            if retrieval.total - retrieval.remaining == done:
                retrieval.record(record, Outcome.FAILED)
        due.flush()  # when the sub-operation failed before reaching the wire
        if retrieval.remaining:
            due.counts = retrieval.counts()
        position += 1
    return False


def counts_fields(retrieval: Retrieval) -> dict[str, int]:
    return {"instances": retrieval.total, "completed": retrieval.completed,
            "warning": retrieval.warning, "failed": retrieval.failed,
            "remaining": retrieval.remaining}
