"""pynetdicom's DIMSE provider, hardened; the DIMSE queue, reactor parking and servers as
the rest of dimse/ needs them (see the package docstring for what and why).

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included), the
standard library, pynetdicom_internals.commands, .connection, .reactors, .sending and
.serving; nothing else of ours.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

from pynetdicom import acse as _acse_module
from pynetdicom import association as _association_module
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from pacs.dimse.pynetdicom_internals.commands import primitive_command
from pacs.dimse.pynetdicom_internals.connection import exception_text, note_problem
from pacs.dimse.pynetdicom_internals.reactors import ring_doorbell
from pacs.dimse.pynetdicom_internals.sending import send_message
from pacs.dimse.pynetdicom_internals.serving import DimseQueue, install_serving_hooks


def _misplaced_fragment(message: Any, primitive: Any) -> str | None:
    """Why the P-DATA's fragments break PS3.8 E.2 order given the message in progress."""
    expecting_data = message is not None and message.context_id is not None
    for _context_id, value in primitive.presentation_data_value_list:
        if not value:
            return "an empty presentation data value"
        is_command, is_last = bool(value[0] & 1), bool(value[0] & 2)
        if is_command and expecting_data:
            return "a command fragment where the announced data set was due"
        if not is_command and not expecting_data:
            return "a data set fragment without its command set"
        if is_command and is_last:
            return None  # whether a data set follows is known once pynetdicom decodes it
        if not is_command and is_last:
            expecting_data = False
    return None


def _message_parts(primitive: Any) -> list[Any]:
    """The P-DATA cut after each last fragment, so each part holds at most one message's end.

    pynetdicom stops reading a P-DATA at the fragment that completes a message and drops what
    follows (PS3.8 9.3.5 lets one PDU carry the end of a message and the start of the next);
    fed part by part, it reads everything.
    """
    values = primitive.presentation_data_value_list
    if len(values) < 2:
        return [primitive]
    parts: list[list[Any]] = [[]]
    for value in values:
        if not parts[-1] or parts[-1][-1][1][0] & 0x02 == 0:
            parts[-1].append(value)
        else:
            parts.append([value])
    if len(parts) == 1:
        return [primitive]
    cut = []
    for part in parts:
        piece = P_DATA()
        piece.presentation_data_value_list = [[context, bytes(value)] for context, value in part]
        cut.append(piece)
    return cut


class HardenedDIMSE(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider; malformed messages abort the association (PS3.8 AA-8)."""

    def __init__(self, assoc: Any):
        super().__init__(assoc)
        self._drop: tuple[type, int] | None = None
        self.serving_request = False  # the reactor took a request and has not asked again
        self.msg_queue = DimseQueue(self)  # a complete message wakes the reactor

    def receive_primitive(self, primitive: Any) -> None:
        """Add a P-DATA to the message in progress; abort on a malformed one."""
        try:
            problem = _misplaced_fragment(self.message, primitive)
            if problem is None:
                for part in _message_parts(primitive):
                    super().receive_primitive(part)
                return
        except Exception as exc:  # noqa: BLE001 - pynetdicom raises many kinds while decoding
            problem = exception_text(exc)
        self._refuse(f"invalid DIMSE message: {problem}")

    def get_msg(self, block: bool = False) -> Any:
        """The next decoded message; one that is neither a valid request nor a valid response
        (a required command element missing) aborts the association."""
        self.serving_request = False  # asked again: what it took before has been served
        context_id, message = super().get_msg(block)
        self.serving_request = message is not None
        if message is not None and not (message.is_valid_request
                                        or message.is_valid_response):
            path = getattr(message, "_dataset_path", None)
            if isinstance(path, Path):
                path.unlink(missing_ok=True)
            self._refuse(f"invalid {message.msg_type} message: a required element is missing")
            return None, None
        return context_id, message

    def _refuse(self, problem: str) -> None:
        self.discard_message()
        note_problem(self.dul, problem)
        self.dul.event_queue.put("Evt19")  # PS3.8: A-ABORT, A-P-ABORT indication, Sta13

    def discard_message(self) -> bool:
        """Drop a message in progress and its partial data set file; whether there was one."""
        message, self.message = self.message, None
        partial = getattr(message, "_data_set_file", None)
        if partial is None:
            return False
        partial.close()
        Path(partial.name).unlink(missing_ok=True)
        return True

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """Send a DIMSE message, unless it is the one response `drop_response` named."""
        if (self._drop is not None and isinstance(primitive, self._drop[0])
                and primitive.MessageIDBeingRespondedTo == self._drop[1]):
            self._drop = None
            return
        # The peer was waiting for us, not silent: without this, a handler slower than the
        # network timeout (a C-STORE under heavy load, a long C-MOVE) had its association
        # aborted by the reactor's idle check right after answering.
        self.dul._idle_timer.restart()
        if isinstance(primitive, C_STORE) and primitive.MessageIDBeingRespondedTo is not None:
            # A C-STORE response (one every store) goes the send fast path when it is open.
            command = primitive_command(primitive, has_data=False)
            if command is not None and send_message(self.assoc, context_id, command):
                return
        super().send_msg(primitive, context_id)

    def drop_response(self, primitive_class: type | None, message_id: int = 0) -> None:
        """Drop the next `primitive_class` response to `message_id` (None: drop nothing)."""
        self._drop = None if primitive_class is None else (primitive_class, message_id)


def drop_response(assoc: Any, primitive_class: type | None, message_id: int = 0) -> None:
    """Let the association drop the next `primitive_class` response to `message_id`."""
    assoc.dimse.drop_response(primitive_class, message_id)


def outgoing_pending(assoc: Any) -> bool:
    """Whether messages wait in the DUL's outgoing queue."""
    outgoing = getattr(getattr(assoc, "dul", None), "to_provider_queue", None)
    return outgoing is not None and not outgoing.empty()


def next_message(assoc: Any, timeout: float) -> tuple[bool, Any]:
    """(True, message) off the association's DIMSE queue, (True, None) when it closed,
    (False, None) when nothing came within `timeout`."""
    try:
        _, message = assoc.dimse.msg_queue.get(timeout=timeout)
    except queue.Empty:
        return False, None
    return True, message


def take_message_entry(assoc: Any, timeout: float) -> Any:
    """The next (context id, message) entry of the association's DIMSE queue, whole, so it
    can be given back; None when nothing came within `timeout`."""
    try:
        return assoc.dimse.msg_queue.get(timeout=timeout)
    except queue.Empty:
        return None


def give_back_messages(assoc: Any, held: list[Any]) -> None:
    """Put entries taken by `take_message_entry` back at the head of the DIMSE queue, in
    order, so the unparked reactor serves them."""
    if not held:
        return
    messages = assoc.dimse.msg_queue
    with messages.mutex:
        messages.queue.extendleft(reversed(held))
        messages.not_empty.notify(len(held))


def association_alive(assoc: Any) -> bool:
    """Neither aborted nor with its DUL thread ended."""
    return bool(not assoc.acse.is_aborted() and assoc.dul.is_alive())


# --- reactor parking (dimse/destination.py explains the race it closes) ---------------------------

def _has_waiter(event: threading.Event) -> bool | None:
    """Whether a thread is blocked in `event.wait()`; None when CPython internals differ."""
    condition = getattr(event, "_cond", None)
    waiters = getattr(condition, "_waiters", None)
    return None if waiters is None else len(waiters) > 0


def park_reactor(assoc: Any, timeout: float = 5.0) -> bool:
    """Stop the association's reactor thread from reading the DIMSE queue until
    `unpark_reactor`. Returns once it is blocked on its checkpoint (or ended); False on
    timeout."""
    checkpoint: threading.Event = assoc._reactor_checkpoint
    checkpoint.clear()
    deadline = time.monotonic() + timeout
    seen_paused_at: float | None = None
    while time.monotonic() < deadline:
        if not assoc.is_alive():
            return True
        waiting = _has_waiter(checkpoint)
        if waiting:
            return True
        # A reactor asleep between rounds goes to its checkpoint. Rung again each turn: one
        # just let through its checkpoint clears the doorbell before its round (an unparked
        # idle destination association, taken over by the next C-MOVE at once).
        ring_doorbell(assoc)
        if waiting is None:
            # Fallback without the waiter list: paused, and still paused a while later.
            if assoc._is_paused:
                seen_paused_at = seen_paused_at or time.monotonic()
                if time.monotonic() - seen_paused_at > 0.05:
                    return True
            else:
                seen_paused_at = None
        time.sleep(0.0002)
    return False


def unpark_reactor(assoc: Any) -> None:
    """Let a parked reactor thread run (to its end, once the association is over)."""
    assoc._reactor_checkpoint.set()


class SharedContexts(list):  # type: ignore[type-arg]
    """The server's supported contexts, shared read-only by every association.

    pynetdicom deep-copies them for each association (170 storage classes x 45 transfer
    syntaxes): 44 ms of a 50 ms association set-up, measured. Negotiation only reads them.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedContexts:
        return self

    def for_syntaxes(self, abstract_syntaxes: set[str]) -> list[Any]:
        """The contexts of these abstract syntaxes, in order (an index built on first use)."""
        index: dict[str, list[tuple[int, Any]]] | None = self.__dict__.get("_index")
        if index is None:
            index = {}
            for position, context in enumerate(self):
                index.setdefault(str(context.abstract_syntax), []).append((position, context))
            self.__dict__["_index"] = index
        found = [entry for syntax in abstract_syntaxes for entry in index.get(str(syntax), ())]
        return [context for _, context in sorted(found, key=lambda entry: entry[0])]


_pynetdicom_negotiate_as_acceptor = _acse_module.negotiate_as_acceptor


def _negotiate_requested(rq_contexts: Any, ac_contexts: Any, roles: Any = None) -> Any:
    """presentation.negotiate_as_acceptor over our supported contexts of the requested abstract
    syntaxes only: it indexes every supported context (170 storage classes and more) by
    abstract syntax on each association, and looks up only the requested ones. (With none of
    them supported it gets the whole list, as an empty one takes another path.)"""
    if isinstance(ac_contexts, SharedContexts):
        wanted = ac_contexts.for_syntaxes({str(cx.abstract_syntax) for cx in rq_contexts})
        ac_contexts = wanted or ac_contexts
    return _pynetdicom_negotiate_as_acceptor(rq_contexts, ac_contexts, roles)


def register_server(ae: Any, server: Any) -> None:
    """Let `ae.shutdown()` stop a server we started ourselves."""
    ae._servers.append(server)


def install_message_hooks() -> tuple[str, ...]:
    """Put the DIMSE hook in place; what it replaces, for the record."""
    _association_module.DIMSEServiceProvider = HardenedDIMSE  # type: ignore[misc]
    _acse_module.negotiate_as_acceptor = _negotiate_requested  # type: ignore[attr-defined]
    return ("association.DIMSEServiceProvider", "acse.negotiate_as_acceptor",
            *install_serving_hooks())
