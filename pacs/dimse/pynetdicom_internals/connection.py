"""pynetdicom's connection machinery, hardened: transport reads and sends, the DUL thread,
its state machine, and its log lines (see the package docstring for what and why).

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included), the
standard library, pynetdicom_internals.reactors (the event-driven DUL loop it extends) and
.receiving (the receive fast path).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import threading
import time
from typing import Any

from pynetdicom import association as _association_module
from pynetdicom.association import Association
from pynetdicom.fsm import StateMachine
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import A_P_ABORT
from pynetdicom.transport import (
    AssociationSocket,
)

from pacs.dimse.pynetdicom_internals.reactors import EventDrivenDUL, end_broken_connection
from pacs.dimse.pynetdicom_internals.receiving import DataSetReceiver
from pacs.dimse.pynetdicom_internals.sending import send_lock

log = logging.getLogger("pacs.server")

# --- transport ----------------------------------------------------------------------------------

# The largest PDU a peer may send us. pynetdicom trusts the length field and keeps reading
# as long as the peer sends, so an absurd length would grow memory without bound.
PDU_LENGTH_LIMIT = 64 * 2**20
_NO_ASSOCIATION = ("Sta1", "Sta2", "Sta13")  # states in which the ARTIM timer bounds a wait
_pynetdicom_send = AssociationSocket.send


def _read_timeout(dul: Any) -> float | None:
    """How long one read may wait: the ARTIM timer's remainder while there is no association
    (PS3.8 9.1.5), otherwise the network timeout."""
    network = dul.network_timeout
    artim = dul.artim_timer
    if dul.state_machine.current_state not in _NO_ASSOCIATION or artim.timeout is None:
        return network
    remaining = max(artim.remaining, 0.001)
    return remaining if network is None else min(remaining, network)


def _bounded_recv(self: AssociationSocket, nr_bytes: int) -> bytearray:
    """AssociationSocket.recv: refuse absurd lengths, read into one buffer (not 4 KiB at a
    time), and give up on a peer that stops in the middle of a PDU. Bytes the receive fast
    path read and handed back (`pushback`) come first."""
    dul = self.assoc.dul
    if nr_bytes > PDU_LENGTH_LIMIT:
        note_problem(dul, f"a PDU of {nr_bytes} bytes announced, over the limit of "
                          f"{PDU_LENGTH_LIMIT}")
        _abort_now(dul, associated_only=False)
        # pynetdicom turns this into "connection closed" (Evt17): the association is aborted.
        raise OSError(f"peer announced a {nr_bytes}-byte PDU, over the {PDU_LENGTH_LIMIT} limit")
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    pending = getattr(dul, "pushback", b"")
    taken = 0
    if pending:
        taken = min(len(pending), nr_bytes)
        view[:taken] = pending[:taken]
        dul.pushback = pending[taken:]
    received = taken + receive_into(dul, view[taken:]) if taken < nr_bytes else taken
    return buffer if received == nr_bytes else buffer[:received]


def receive_into(dul: Any, view: memoryview) -> int:
    """Fill `view` from the association's socket; how many bytes came (fewer: the peer
    closed). A wait longer than the ARTIM timer (no association) or the network timeout
    raises TimeoutError, having noted why and sent an A-ABORT where one is due."""
    sock = dul.socket.socket
    assert sock is not None
    wanted = len(view)
    received = read_waiting(sock, view)
    while received < wanted:
        timeout = _read_timeout(dul)
        if sock.gettimeout() != timeout:  # settimeout costs system calls; most reads repeat it
            sock.settimeout(timeout)
        try:
            count = sock.recv_into(view[received:], wanted - received)
        except TimeoutError:
            _stalled(dul, f"{received} of {wanted} awaited bytes, then nothing for "
                          f"{timeout:g} s")
            raise
        if not count:
            break
        received += count
    return received


def read_waiting(sock: Any, view: memoryview) -> int:
    """Read what the socket already holds into `view`, without waiting; 0 when nothing (or the
    end: the caller's waiting read then says which).

    Why: with a timeout set, Python polls the socket before every recv, two system calls per
    read; the data is usually there already (the PDU header announced it). The descriptor of a
    socket with a timeout is non-blocking, so a plain read returns at once. TLS sockets are
    left to their own reads (the bytes on the wire are not the data).
    """
    if type(sock) is not socket.socket or not sock.gettimeout() or not len(view):
        return 0
    try:
        return os.readv(sock.fileno(), [view])
    except (BlockingIOError, InterruptedError):
        return 0


def _stalled(dul: Any, what: str) -> None:
    """A peer stopped mid-PDU: with an association, tell it (like pynetdicom's own network
    timeout does) before pynetdicom closes the connection; before one, ARTIM just closes."""
    note_problem(dul, f"incomplete PDU: {what}")
    _abort_now(dul, associated_only=True)


def _abort_now(dul: Any, associated_only: bool) -> None:
    """Send an A-ABORT (service provider) ahead of pynetdicom's Evt17, which closes without
    one; never in Sta13, where one went out already. The byte stream is unframed from here."""
    state = dul.state_machine.current_state
    if state == "Sta13" or (associated_only and state in _NO_ASSOCIATION):
        return
    abort = A_ABORT_RQ()
    abort.source, abort.reason_diagnostic = 0x02, 0x00
    dul._send(abort)
    dul.unframed = True


def _bounded_send(self: AssociationSocket, bytestream: bytes) -> None:
    """AssociationSocket.send, waiting no longer than the network timeout for a peer that does
    not read (pynetdicom turns the timeout into Evt17, connection closed)."""
    timeout = self.assoc.network_timeout
    if self.socket is not None and self.socket.gettimeout() != timeout:
        self.socket.settimeout(timeout)
    with send_lock(self.assoc):  # shared with the send fast path (sending.py)
        _pynetdicom_send(self, bytestream)


def _discard_readable(sock: Any) -> bool:
    """Read and drop what the peer has sent; False when nothing waits or the peer closed."""
    try:
        readable = select.select([sock], [], [], 0)[0]
        if not readable and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            return False
        sock.settimeout(0)
        return bool(sock.recv(65536))
    except (OSError, ValueError):
        return False


def raw_socket(assoc: Any) -> Any:
    """The association's socket.socket (None once closed)."""
    return getattr(getattr(assoc.dul, "socket", None), "socket", None)


def received_digest(assoc: Any, path: Any) -> tuple[str, int, bytes] | None:
    """The (SHA-256 hex, size, first bytes) the receive fast path kept of the data set file
    at `path`, taken once; None when it did not see all of the file."""
    receiver = getattr(assoc.dul, "receiver", None)
    return None if receiver is None else receiver.take_digest(path)


def close_transport(assoc: Any) -> None:
    """Shut the connection down under the association; its DUL sees Evt17 and ends."""
    sock = raw_socket(assoc)
    if sock is not None:
        try:
            sock.shutdown(2)  # SHUT_RDWR: wakes the DUL, which closes the socket itself
        except OSError:
            pass


def awaiting_request(assoc: Any) -> bool:
    """Whether an acceptor's peer has connected but sent no A-ASSOCIATE-RQ yet (Sta1/Sta2)."""
    return bool(assoc.is_acceptor and assoc.dul.state_machine.current_state in ("Sta1", "Sta2"))


# --- the DUL ------------------------------------------------------------------------------------

_DUL_ENDED = object()  # put on the DUL's to-user queue when its thread ends


class GuardedStateMachine(StateMachine):
    """pynetdicom's state machine; an exception in an action ends the connection instead of
    the DUL thread, and a peer that never sends its A-ASSOCIATE-RQ is noted."""

    def do_action(self, event: str) -> None:
        """Run the action of `event` in the current state (PS3.8 Table 9-10)."""
        if event == "Evt18" and self.current_state == "Sta2":
            note_problem(self.dul, f"no A-ASSOCIATE-RQ within {self.dul.artim_timer.timeout:g} s")
        try:
            super().do_action(event)
        except Exception as exc:  # noqa: BLE001 - pynetdicom has logged it and stopped the DUL
            note_problem(self.dul, f"{event} in {self.current_state}: {exception_text(exc)}",
                         replace=True)
            end_broken_connection(self.dul)


class HardenedDUL(EventDrivenDUL):
    """pynetdicom's DICOM Upper Layer provider with the repairs listed in the package docstring.
    `problem` says why the connection failed (first cause wins)."""

    def __init__(self, assoc: Any):
        super().__init__(assoc)
        self.state_machine = GuardedStateMachine(self)
        self.problem: str | None = None
        self.problem_detailed = False
        self.abort_sent = False
        self.unframed = False  # after bytes that were not a PDU: nothing more is parsed
        self.opened = time.monotonic()
        self.pushback = b""  # bytes of a PDU the receive fast path read, for pynetdicom to read
        self.receiver = DataSetReceiver(self, lambda view: receive_into(self, view),
                                        read_waiting, PDU_LENGTH_LIMIT)

    def run_reactor(self) -> None:
        """pynetdicom's loop; at its end, wake ACSE waiters and log a failure on one line."""
        try:
            super().run_reactor()
        finally:
            # This thread wrote the message in progress; nothing can complete it now.
            discard = getattr(self.assoc.dimse, "discard_message", None)
            partial = bool(discard and discard())
            discarded = " (partial data set discarded)" if partial else ""
            if self.problem is not None:
                ended = "A-ABORT sent, connection closed" if self.abort_sent else "closed"
                log.warning("%s: %s%s; %s after %.1f s", describe(self.assoc), self.problem,
                            discarded, ended, time.monotonic() - self.opened)
            elif partial:
                log.warning("%s: connection ended mid-transfer%s", describe(self.assoc),
                            discarded)
            self.to_user_queue.put(_DUL_ENDED)  # last: once the association ends, all is said

    def receive_pdu(self, wait: bool = False, timeout: float | None = None) -> Any:
        """The next ACSE primitive; None at once when the DUL has ended (not after the
        timeout: a connection closed before its A-ASSOCIATE-RQ frees its slot at once)."""
        primitive = super().receive_pdu(wait, timeout)
        if primitive is _DUL_ENDED:
            self.to_user_queue.put(_DUL_ENDED)  # later waits end at once too
            return None
        assoc = self.assoc
        if isinstance(primitive, A_P_ABORT) and assoc.is_acceptor \
                and assoc.requestor.primitive is None:
            # The connection broke before its A-ASSOCIATE-RQ: pynetdicom's acceptor would
            # take this indication for the request; "nothing came" ends it cleanly.
            return None
        return primitive

    def transport_failed(self, error: Exception) -> None:
        """Reading or sending raised: say why, then end the connection."""
        note_problem(self, f"transport failed: {exception_text(error)}")
        super().transport_failed(error)

    def _is_transport_event(self) -> bool:
        in_sta13 = self.state_machine.current_state == "Sta13"
        if not (in_sta13 or self.unframed):
            return super()._is_transport_event()
        # Sta13: the association is over and the peer should close. Whatever it still sends is
        # dropped unread (as it is from the first bytes that were not a PDU: the A-ABORT they
        # earn is still queued); the connection closes when the peer is quiet or closes, or
        # when ARTIM expires.
        transport = self.socket
        if transport is not None and transport.socket is not None:
            if _discard_readable(transport.socket):
                return True
            if in_sta13:
                transport.close()
        return in_sta13

    def _read_pdu_data(self) -> None:
        if self.receiver.receive():
            return
        super()._read_pdu_data()
        pending = self.event_queue.queue
        if pending and pending[-1] == "Evt19":  # an unknown PDU type, or undecodable
            self.unframed = True

    def _send(self, pdu: Any) -> None:
        if isinstance(pdu, A_ABORT_RQ):
            self.abort_sent = True
        super()._send(pdu)
        self._idle_timer.restart()  # what we send is network activity too (see HardenedDIMSE)


def exception_text(error: BaseException) -> str:
    """'Type: message' of an exception, or its type alone when it has no message."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def note_problem(dul: Any, text: str, replace: bool = False, detailed: bool = True) -> None:
    """Remember why a connection failed: the first cause, unless `replace`; a cause noted
    without its detail (`detailed` False) takes the next one's text as its detail."""
    if not isinstance(dul, HardenedDUL):
        return
    if dul.problem is None or replace:
        dul.problem, dul.problem_detailed = text, detailed
    elif not dul.problem_detailed:
        dul.problem, dul.problem_detailed = f"{dul.problem}: {text}", True


def describe(assoc: Any) -> str:
    """'AE@address:port' of the peer, or 'address:port (no association)' before one."""
    remote = assoc.requestor if assoc.is_acceptor else assoc.acceptor
    title = str(remote.ae_title or "").strip()
    where = f"{remote.address}:{remote.port}" if remote.address_info else "?"
    return f"{title}@{where}" if title else f"{where} (no association)"


def _current_dul() -> HardenedDUL | None:
    thread = threading.current_thread()
    if isinstance(thread, Association):
        thread = thread.dul
    return thread if isinstance(thread, HardenedDUL) else None


class PeerErrorsOnOneLine(logging.Filter):
    """pynetdicom's errors about a connection become its `problem`, logged on one line when it
    ends (`absorb`); anything else loses only its traceback. All of it shows at DEBUG."""

    def __init__(self, absorb: bool):
        super().__init__()
        self.absorb = absorb

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep, shorten or absorb one pynetdicom record."""
        if logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
            return True
        error = record.exc_info[1] if record.exc_info else None
        dul = _current_dul() if self.absorb and record.levelno >= logging.ERROR else None
        if dul is not None:
            if error is None:
                note_problem(dul, record.getMessage(), detailed=False)
            else:
                note_problem(dul, exception_text(error))
            return False
        if error is not None:
            message = record.getMessage()
            record.msg = f"{message + ': ' if message else ''}{exception_text(error)}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


# Loggers of pynetdicom's connection machinery; acse's also report our own handlers' errors.
_CONNECTION_LOGGERS = ("dul", "fsm", "dimse", "dimse_messages", "dimse_primitives", "utils",
                       "pdu", "pdu_items", "pdu_primitives", "transport", "association",
                       "dsutils")


def install_connection_hooks() -> tuple[str, ...]:
    """Put the transport, DUL and logging hooks in place; what they replace, for the record."""
    _association_module.DULServiceProvider = HardenedDUL  # type: ignore[misc]
    AssociationSocket.recv = _bounded_recv  # type: ignore[method-assign]
    AssociationSocket.send = _bounded_send  # type: ignore[method-assign]
    for name in _CONNECTION_LOGGERS:
        logging.getLogger(f"pynetdicom.{name}").addFilter(PeerErrorsOnOneLine(absorb=True))
    logging.getLogger("pynetdicom.acse").addFilter(PeerErrorsOnOneLine(absorb=False))
    return ("association.DULServiceProvider", "AssociationSocket.recv",
            "AssociationSocket.send")
