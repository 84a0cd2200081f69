"""Where C-STORE sub-operations go: a C-MOVE destination association, or the C-GET requester.

Room: dimse/ (pynetdicom), under dimse/retrieve.py. Sends one prepared data set at a time and
returns the peer's status; services/suboperations decides what to send and counts.

The lost-response guard. pynetdicom 3.0.4's `send_c_store` pauses the association's reactor
thread with a flag handshake (`_reactor_checkpoint.clear()`, then wait for `_is_paused`) that
has a window: when the reactor has just returned from `_reactor_checkpoint.wait()` (the event
was still set by the previous call) but not yet cleared `_is_paused`, `send_c_store` sees
"paused" and sends; the reactor then runs `dimse.get_msg(block=False)` once more and, if the
peer's answer has already arrived (a fast peer on loopback), serves it as a request, logs
"unexpected C-STORE service message" and drops it. `send_c_store` then waits the whole DIMSE
timeout and aborts the association. Measured: 1 of 3,000 back-to-back stores to storescp.
Here the reactor of a destination association is parked once, for the association's whole
life, and the handshake waits until the reactor thread is really blocked inside
`Event.wait()` (it is among the event's waiters), not merely flagged; our own
send/receive loop then is the only reader of the DIMSE queue. A C-GET runs inside the
requester association's reactor thread itself, so nothing else can read its queue. (The
parking itself is in dimse/pynetdicom_internals.)

Releasing a destination association waits for its A-RELEASE-RP, up to the ACSE timeout. That
happens in a thread of its own, after the final C-MOVE response: a destination slow to answer
(or never answering) A-RELEASE-RQ holds neither that response nor the requester's association.

Reuse (`retrieve.association_close_delay`, as Orthanc's DicomAssociationCloseDelay): after a
C-MOVE, a sound destination association waits that long, its reactor unparked (it answers a
peer that releases or aborts meanwhile), for the next C-MOVE of the same server to the same
destination with the same presentation contexts; that one parks it again and sends over it
instead of opening another (about 3 ms of association set-up and two threads each time, and
the peer's own set-up: storescp forks a process per association). PS3.4 C.4.2.3 asks for the
sub-operations to go over an association of their own, not for a new one per C-MOVE. A kept
association may have died unseen (the peer restarted, a firewall dropped the connection): a
link taken over is `reused` until a C-STORE is answered on it, and services/suboperations
sends a sub-operation lost on it again over a `fresh` one.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.presentation import build_context

from pacs.config import Settings
from pacs.dimse.events import set_no_delay
from pacs.dimse.pynetdicom_internals import (
    DATA_SET_PRESENT,
    association_alive,
    encode_command,
    expect_store_responses,
    next_message,
    park_reactor,
    raw_socket,
    send_message,
    send_primitive,
    unpark_reactor,
)
from pacs.dimse.tls import tls_client_context
from pacs.services.retrieve import AcceptedContext, ContextProposal, Endpoint
from pacs.services.suboperations import Originator, StoreResult

log = logging.getLogger("pacs.retrieve")
C_STORE_RQ = 0x0001  # Command Field (PS3.7 E.1-1)


class AssociationLink:
    """An established association on which we send C-STORE requests and await each answer."""

    def __init__(self, assoc: Any, timeout: float, description: str):
        self.assoc = assoc
        self.timeout = timeout
        self.description = description
        self.alive = True
        # Kept from an earlier C-MOVE, and whether a C-STORE has been answered on it since.
        self.reused = False
        self.answered = False
        self._message_id = 0
        expect_store_responses(assoc)  # their C-STORE-RSPs decoded the short way

    @functools.cached_property
    def accepted(self) -> list[AcceptedContext]:
        """Accepted contexts on which we may act as Storage SCU (role selection honoured)."""
        return [
            AcceptedContext(int(cx.context_id), str(cx.abstract_syntax),
                            str(cx.transfer_syntax[0]))
            for cx in self.assoc.accepted_contexts
            if cx.as_scu
        ]

    def _next_message_id(self) -> int:
        self._message_id = self._message_id % 65535 + 1
        return self._message_id

    def store(self, context: AcceptedContext, sop_instance_uid: str,
              data_set: bytes | memoryview, priority: int = 2,
              originator: Originator | None = None,
              while_waiting: Callable[[], None] | None = None) -> StoreResult:
        """Send one C-STORE request with `data_set` as its bytes; wait for its response.

        The bytes go straight from `data_set` to the socket (the send fast path) when it is
        open. `while_waiting` runs once the request is on its way (the peer is busy storing).
        """
        message_id = self._next_message_id()
        fields = {
            "CommandField": C_STORE_RQ, "CommandDataSetType": DATA_SET_PRESENT,
            "MessageID": message_id, "AffectedSOPClassUID": context.sop_class_uid,
            "AffectedSOPInstanceUID": sop_instance_uid,
            "Priority": priority if priority in (0, 1, 2) else 2,
        }
        if originator is not None:
            fields["MoveOriginatorApplicationEntityTitle"] = originator.ae_title
            fields["MoveOriginatorMessageID"] = originator.message_id
        try:
            # The command set encoded from its fields (PS3.7 9.3.1.1); a pynetdicom primitive
            # (validated UIDs, its own encoder) only when the fast path is closed.
            if not send_message(self.assoc, context.context_id, encode_command(fields),
                                data_set):
                send_primitive(self.assoc, _c_store_request(fields), context.context_id,
                               data_set)
            if while_waiting is not None:
                while_waiting()
            return self._await_response(message_id)
        except Exception as exc:  # noqa: BLE001 - mid-exchange, the association's state is unknown
            if self.may_be_stale():  # the retry's warning names it; no traceback for that
                log.debug("%s: C-STORE of %s broke off", self.description, sop_instance_uid,
                          exc_info=True)
            else:
                log.exception("%s: C-STORE of %s broke off", self.description, sop_instance_uid)
            if self.alive:
                self._lost("C-STORE exchange broke off")
            return StoreResult(None, f"C-STORE broke off: {type(exc).__name__}: {exc}")

    def _await_response(self, message_id: int) -> StoreResult:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._lost(f"no C-STORE response in {self.timeout:g} s")
                return StoreResult(None, "no response (DIMSE timeout)")
            arrived, message = next_message(self.assoc, left)
            if not arrived:
                continue
            if message is None:
                self.alive = False
                return StoreResult(None, "association closed by the peer")
            if isinstance(message, C_STORE) and message.MessageIDBeingRespondedTo == message_id:
                self.answered = True
                status = message.Status
                return StoreResult(int(status) if status is not None else None,
                                   "" if status is not None else "response without a status")
            log.warning("%s: ignoring unexpected %s while waiting for a C-STORE response",
                        self.description, type(message).__name__)

    def _lost(self, reason: str) -> None:
        log.log(logging.DEBUG if self.may_be_stale() else logging.WARNING,
                "%s: %s; aborting the association", self.description, reason)
        self.alive = False
        self.assoc.abort()

    def usable(self) -> bool:
        """Whether further C-STOREs can go over this association."""
        return self.alive and association_alive(self.assoc)

    def may_be_stale(self) -> bool:
        """Kept from an earlier C-MOVE and nothing answered on it yet in this one."""
        return self.reused and not self.answered

    def close(self, reusable: bool = True) -> None:
        """Done with the sub-operations on this association (nothing to do by default)."""


def _c_store_request(fields: dict[str, Any]) -> C_STORE:
    """The C-STORE-RQ primitive of these command fields, for pynetdicom's send path."""
    request = C_STORE()
    for keyword in ("MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Priority",
                    "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID"):
        if keyword in fields:
            setattr(request, keyword, fields[keyword])
    return request


_RELEASING: set[DestinationLink] = set()
_RELEASING_LOCK = threading.Lock()


class DestinationLink(AssociationLink):
    """Our association to a C-MOVE destination, its reactor parked while it carries a C-MOVE's
    sub-operations; between C-MOVEs it may wait, unparked, in `IDLE` for the next one."""

    key: Any = None  # what a later C-MOVE must match to take it over (open_destination)
    close_delay: float = 0.0

    def close(self, reusable: bool = True) -> None:
        """Keep the association for the next C-MOVE to the same destination for
        `close_delay` seconds when it is sound; otherwise release it in the background."""
        if reusable and self.close_delay > 0 and self.key is not None and self.usable() \
                and self.assoc.is_established:
            # Idle, the reactor answers what the peer may do meanwhile (A-RELEASE-RQ, abort).
            unpark_reactor(self.assoc)
            IDLE.keep(self)
            return
        self.release()

    def release(self) -> None:
        """Release the association in the background (abort it when it is already broken)."""
        with _RELEASING_LOCK:
            _RELEASING.add(self)
        threading.Thread(target=self._release, name=f"release {self.description}",
                         daemon=True).start()

    def _release(self) -> None:
        try:
            if self.usable() and self.assoc.is_established:
                self.assoc.release()  # pynetdicom aborts when no A-RELEASE-RP comes in time
            elif not (self.assoc.is_released or self.assoc.is_aborted):
                self.assoc.abort()
        finally:
            unpark_reactor(self.assoc)  # whatever happened, let the reactor run to its end
            with _RELEASING_LOCK:
                _RELEASING.discard(self)

    def abort(self) -> None:
        """Abort the association now (at shutdown, instead of waiting for the release)."""
        self.alive = False
        if not (self.assoc.is_released or self.assoc.is_aborted):
            self.assoc.abort()
        unpark_reactor(self.assoc)


class IdleLinks:
    """Destination associations between C-MOVEs: at most one per key, each released by one
    reaper thread once its close delay has passed without a C-MOVE taking it."""

    def __init__(self) -> None:
        self._links: dict[Any, tuple[DestinationLink, float]] = {}
        self._changed = threading.Condition()
        self._reaper: threading.Thread | None = None

    def keep(self, link: DestinationLink) -> None:
        """Keep `link` until its close delay passes (releasing one kept under its key)."""
        with self._changed:
            previous = self._links.pop(link.key, None)
            self._links[link.key] = (link, time.monotonic() + link.close_delay)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="release idle C-MOVE "
                                                "destinations", daemon=True)
                self._reaper.start()
            self._changed.notify()
        if previous is not None:
            previous[0].release()

    def take(self, key: Any) -> DestinationLink | None:
        """The link kept under `key`, if any, no longer kept."""
        with self._changed:
            entry = self._links.pop(key, None)
        return entry[0] if entry is not None else None

    def drain(self) -> list[DestinationLink]:
        """Every kept link, no longer kept."""
        with self._changed:
            links = [link for link, _ in self._links.values()]
            self._links.clear()
        return links

    def _reap(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                expired = [key for key, (_, until) in self._links.items() if until <= now]
                links = [self._links.pop(key)[0] for key in expired]
                if not links:
                    ends = [until for _, until in self._links.values()]
                    self._changed.wait(min(ends) - now if ends else None)
                    continue
            for link in links:
                link.release()


IDLE = IdleLinks()


def abort_releases(wait: float = 1.0) -> None:
    """At shutdown: release the idle destination associations, give releases `wait` seconds,
    then abort those still awaiting their A-RELEASE-RP."""
    for link in IDLE.drain():
        link.release()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with _RELEASING_LOCK:
            if not _RELEASING:
                break
        time.sleep(0.01)
    with _RELEASING_LOCK:
        links = list(_RELEASING)
    for link in links:
        link.abort()


def _idle_link(key: Any) -> DestinationLink | None:
    """The association a previous C-MOVE left open under `key`, parked again, if it is still
    sound; one that is not is released."""
    link = IDLE.take(key)
    if link is None:
        return None
    if link.usable() and link.assoc.is_established and park_reactor(link.assoc) \
            and link.usable() and link.assoc.is_established:
        # Sound as far as we can see; a peer gone without a word shows on the first C-STORE,
        # which then goes again on a new association (services/suboperations).
        link.reused, link.answered = True, False
        return link
    link.release()
    return None


def open_destination(settings: Settings, endpoints: Sequence[Endpoint], destination_ae: str,
                     proposals: Sequence[ContextProposal],
                     fresh: bool = False) -> tuple[DestinationLink | None, str]:
    """Associate with the first endpoint that accepts: our AE title, our maximum PDU,
    TCP_NODELAY. Returns the link, or None and why no endpoint accepted. Unless `fresh`, an
    association kept by an earlier C-MOVE with the same key is taken instead."""
    # Reused only for the same server, destination, addresses and contexts: what the peer
    # accepted then is what it would accept now.
    key = (id(settings), destination_ae, tuple(endpoints), tuple(proposals))
    reused = None if fresh else _idle_link(key)
    if reused is not None:
        log.debug("%s: reusing the association", reused.description)
        return reused, ""
    ae = AE(ae_title=settings.ae_title)
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.connection_timeout = settings.acse_timeout
    contexts = [build_context(p.sop_class_uid, list(p.transfer_syntaxes)) for p in proposals]
    reasons = []
    for endpoint in endpoints:
        where = f"{destination_ae}@{endpoint.host}:{endpoint.port}"
        tls_args = (tls_client_context(settings), endpoint.host) if endpoint.tls else None
        try:
            assoc = ae.associate(endpoint.host, endpoint.port, contexts=contexts,
                                 ae_title=destination_ae, max_pdu=settings.max_pdu,
                                 tls_args=tls_args)
        except (OSError, ValueError, RuntimeError) as exc:
            reasons.append(f"{where}: {exc}")
            continue
        if not assoc.is_established:
            reasons.append(f"{where}: " + ("association rejected" if assoc.is_rejected
                                           else "association aborted" if assoc.is_aborted
                                           else "cannot connect"))
            continue
        set_no_delay(raw_socket(assoc))
        link = DestinationLink(assoc, settings.dimse_timeout, f"C-MOVE to {where}")
        link.key, link.close_delay = key, settings.association_close_delay
        if not park_reactor(assoc):
            link.abort()
            reasons.append(f"{where}: association thread did not pause")
            continue
        return link, ""
    return None, "; ".join(reasons) or "no address to try"


class RequesterLink(AssociationLink):
    """The C-GET requester's own association: we run inside its reactor thread."""

    def close(self, reusable: bool = True) -> None:
        """Nothing to release: the association is the requester's."""

    def _lost(self, reason: str) -> None:
        # Aborting the requester's association from its own handler must not block.
        log.warning("%s: %s; aborting the association", self.description, reason)
        self.alive = False
        self.assoc.abort(block=False)
