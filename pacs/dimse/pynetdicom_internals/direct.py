"""Requests served without pynetdicom's service class: the association's reactor (or, for a
C-STORE, the DUL thread: serving.py) hands a request (a C-FIND, a C-STORE) straight to a
handler of ours, with an event that decodes its identifier once.

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included), pydicom
and the standard library; nothing else of ours.

Why: for each C-FIND pynetdicom picks a service class, builds a response primitive (validating
its UIDs), wraps the handler in its error machinery, builds an Event, walks the generator,
validates each status and sends a final response of its own, which the handler has already
sent the fast way and has to have dropped. The handler sends every response itself
(sending.py), so none of that is needed.

What stays pynetdicom's: a request during release, an invalid one, one on a context that was
not accepted, one whose SOP class differs from its context's or was mapped by SOP Class Common
Extended Negotiation, every request over TLS (the send fast path declines there), and every
other kind of request. Those go through `Association._serve_request` as before, so what
pynetdicom answers or logs for them is unchanged. As pynetdicom does around a service class:
C-CANCELs received before the request are forgotten, the reactor counts as paused while the
handler runs, and an exception that escapes the handler aborts the association.
"""

from __future__ import annotations

import logging
import select
import ssl
import time
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import C_FIND, C_STORE
from pynetdicom.dsutils import decode
from pynetdicom.presentation import PresentationContextTuple

_ASSOCIATION_LOG = logging.getLogger("pynetdicom.association")
_HANDLERS_ATTRIBUTE = "minipacs_direct_handlers"
_CONTEXTS_ATTRIBUTE = "minipacs_context_tuples"

DirectHandler = Callable[["DirectEvent"], None]


_PRIMITIVES = {"C-FIND": C_FIND, "C-STORE": C_STORE}


def serve_directly(ae: Any, service: str, handler: DirectHandler) -> None:
    """Have the associations of `ae` hand their `service` requests ("C-FIND", "C-STORE") to
    `handler`, which gets a `DirectEvent` and sends every response itself."""
    handlers = ae.__dict__.setdefault(_HANDLERS_ATTRIBUTE, {})
    handlers[_PRIMITIVES[service]] = handler


def _plain_socket(assoc: Any) -> bool:
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    return sock is not None and not isinstance(sock, ssl.SSLSocket)


def direct_handler(assoc: Any, message: Any, context_id: int) -> tuple[DirectHandler, Any] | None:
    """(handler, accepted presentation context) when `message` is served directly, else None
    (pynetdicom's `_serve_request` serves it)."""
    handlers = getattr(assoc.ae, _HANDLERS_ATTRIBUTE, None)
    handler = handlers.get(type(message)) if handlers else None
    if handler is None or assoc._sent_release or not message.is_valid_request:
        return None
    context = assoc._accepted_cx.get(context_id)
    if context is None or not _plain_socket(assoc):
        return None
    sop_class = message.AffectedSOPClassUID
    if sop_class != context.abstract_syntax \
            or sop_class in (assoc.acceptor.accepted_common_extended or {}):
        return None
    return handler, context


def serve_direct(assoc: Any, handler: DirectHandler, message: Any, context: Any,
                 in_dul_thread: bool = False) -> None:
    """Run `handler` on `message` the way pynetdicom runs a service class (see the module
    docstring). `in_dul_thread`: the DUL thread runs it, so an abort must not wait for that
    thread to end."""
    dimse = assoc.dimse
    dimse.cancel_req = {}  # C-CANCELs that came before this request cancel nothing
    assoc._is_paused = True  # as in pynetdicom, in case the handler sends requests itself
    try:
        handler(DirectEvent(assoc, message, _context_tuple(assoc, context)))
    except Exception as exc:  # noqa: BLE001 - as pynetdicom: log it and abort
        _ASSOCIATION_LOG.exception(exc)
        assoc.abort(block=not in_dul_thread)
        return
    assoc._is_paused = False
    dimse.cancel_req = {}


def is_direct(event: Any) -> bool:
    """Whether a handler's event is a request served directly (no pynetdicom service class)."""
    return isinstance(event, DirectEvent)


def _context_tuple(assoc: Any, context: Any) -> PresentationContextTuple:
    """`context.as_tuple`, made once per association and context."""
    made = assoc.__dict__.setdefault(_CONTEXTS_ATTRIBUTE, {})
    found = made.get(context.context_id)
    if found is None:
        found = made[context.context_id] = context.as_tuple
    return found


class DirectEvent:
    """What our handlers read of pynetdicom's `Event`, for a request served directly: the
    association, the request primitive, the presentation context (as a tuple), the decoded
    identifier and whether a C-CANCEL came for the request."""

    def __init__(self, assoc: Any, request: Any, context: PresentationContextTuple):
        self.assoc = assoc
        self.request = request
        self.context = context
        self._identifier: Dataset | None = None

    @property
    def dataset_path(self) -> Any:
        """Where a C-STORE request's data set was received to (as pynetdicom's Event has it)."""
        return self.request._dataset_path

    @property
    def identifier(self) -> Dataset:
        """The request's Identifier, decoded once (raises what pydicom raises)."""
        if self._identifier is None:
            stream = getattr(self.request, "Identifier", None)
            data = stream.getvalue() if stream is not None else b""
            syntax = self.context.transfer_syntax
            implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
            if not data:
                self._identifier = Dataset()
            else:
                decoded = decode(stream, implicit, little, syntax.is_deflated)
                decoded.set_original_encoding(implicit, little)  # as pynetdicom's Event does
                self._identifier = decoded
        return self._identifier

    @property
    def is_cancelled(self) -> bool:
        """Whether a C-CANCEL for this request has come (it is taken off the list). What the
        peer has sent is read first (see `let_the_dul_read`)."""
        cancels = self.assoc.dimse.cancel_req
        message_id = self.request.MessageID
        if message_id not in cancels:
            let_the_dul_read(self.assoc)
        if message_id in cancels:
            del cancels[message_id]
            return True
        return False


_READ_WAIT = 0.02  # longest wait for the DUL thread to read what the peer sent, s


def let_the_dul_read(assoc: Any) -> None:
    """When the peer has sent something (a C-CANCEL, most likely) and the DUL thread has not
    read it yet, wait until it has (at most `_READ_WAIT`). Responses stream from this thread
    in a tight loop that gives up the GIL only to write; the DUL thread, woken by the C-CANCEL,
    could wait milliseconds for the GIL and read it only after hundreds more responses (or
    none: all of them written into the socket buffer first). One select() per response when
    nothing came."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    lock = getattr(assoc.dul, "step_lock", None)
    if sock is None:
        return
    deadline = 0.0
    while True:
        try:
            readable = bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return
        if not readable and not (lock is not None and lock.locked()):
            return
        now = time.monotonic()
        deadline = deadline or now + _READ_WAIT
        if now > deadline:
            return
        time.sleep(0.0002)
