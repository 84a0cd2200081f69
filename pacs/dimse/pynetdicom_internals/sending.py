"""The send fast path: DIMSE messages written straight to the association's socket, bypassing
pynetdicom's DIMSE/DUL queues (see the package docstring for why those cost what they do).

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included), pydicom,
the standard library, pynetdicom_internals.commands (what it writes) and (late: it imports this
module) pynetdicom_internals.connection; nothing else of ours.

What it does (PS3.8 9.3.5 P-DATA-TF, Annex E fragmentation; PS3.7 6.3.1 and Annex E command
sets): the command set is encoded once (Implicit VR Little Endian, Command Group Length first);
each P-DATA-TF PDU header and PDV header is built as a few bytes and the payload goes out as
memoryview slices with `socket.sendmsg` (several PDUs per call, partial sends resumed), so the
data set is neither re-encoded nor copied, and a message (a C-FIND response and its identifier,
a small C-STORE) goes out in one system call. PDUs respect the peer's maximum length (0:
unlimited, then we still cut at `_UNLIMITED_FRAGMENT`).

The command set and the data set travel in PDUs of their own, as pynetdicom and DCMTK send
them. PS3.8 9.3.5 allows both in one PDU (two PDVs), and that was tried: gdcmscu 3.0.21 then
took the Pending C-FIND responses for two and waited for an identifier that had already come.

Ordering and sharing the socket. Every write to an association's socket takes its send lock
(`send_lock`): ours hold it for a whole message, pynetdicom's transport send (connection.py)
for each PDU, and its DT-1 action (Sta6 + Evt9: send a queued P-DATA) from taking the P-DATA
off its queue until it is written, so "nothing queued" seen under the lock means nothing of
pynetdicom's is half-sent. A message goes the fast way only when the association is
established (Sta6) and pynetdicom's outgoing queue is empty; otherwise `send_message` returns
False and the caller queues it the pynetdicom way, behind what is queued, keeping the order.

TLS: the fast path declines. An OpenSSL connection must not be used by two threads at once,
and pynetdicom's DUL thread reads the socket whenever it is readable (CPython crashes in
concurrent SSLSocket send/recv are documented); on TLS every write stays in the DUL thread.
"""

from __future__ import annotations

import os
import ssl
import struct
import threading
from collections.abc import Sequence
from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import fsm as _fsm_module
from pynetdicom.dimse_primitives import C_FIND, C_STORE
from pynetdicom.dsutils import encode

from pacs.dimse.pynetdicom_internals.commands import (
    _PRIMITIVES,
    DATA_SET_PRESENT,
    NO_DATA_SET,
    _encode_command_dataset,
    encode_command,
    encode_raw_dataset,
    primitive_command,
)

# --- the per-association send lock ----------------------------------------------------------------

_LOCKS_LOCK = threading.Lock()
_LOCK_ATTRIBUTE = "pacs_send_lock"


def send_lock(assoc: Any) -> threading.RLock:
    """The association's send lock (made on first use); reentrant, because pynetdicom's DT-1
    action holds it while its transport send takes it again."""
    lock = getattr(assoc, _LOCK_ATTRIBUTE, None)
    if lock is None:
        with _LOCKS_LOCK:
            lock = getattr(assoc, _LOCK_ATTRIBUTE, None)
            if lock is None:
                lock = threading.RLock()
                setattr(assoc, _LOCK_ATTRIBUTE, lock)
    return lock


_pynetdicom_dt_1 = _fsm_module.DT_1


def _locked_dt_1(dul: Any) -> str:
    """PS3.8 DT-1 (send a queued P-DATA-TF), holding the send lock from taking the P-DATA off
    the queue until it is written."""
    with send_lock(dul.assoc):
        return str(_pynetdicom_dt_1(dul))


# --- P-DATA-TF PDUs -------------------------------------------------------------------------------

_PDU_HEADER = struct.Struct(">BBI")  # PDU type 04H, reserved, PDU length
_PDV_HEADER = struct.Struct(">IBB")  # item length, presentation context ID, control header
_COMMAND, _LAST = 0x01, 0x02  # message control header bits (PS3.8 E.2)
_UNLIMITED_FRAGMENT = 1 << 20  # fragment size when the peer announced no maximum
_PARTS_PER_CALL = 256  # iovecs per sendmsg call, well under Linux's IOV_MAX of 1024


def _fragments(payload: memoryview, size: int, command: bool) -> list[tuple[int, memoryview]]:
    """(control header, slice) fragments of one command set or data set."""
    base = _COMMAND if command else 0
    count = max(1, -(-len(payload) // size))
    return [(base | (_LAST if index == count - 1 else 0),
             payload[index * size:(index + 1) * size]) for index in range(count)]


def pdu_parts(context_id: int, command: bytes, data: bytes | memoryview | None,
              max_pdu: int) -> list[bytes | memoryview]:
    """The P-DATA-TF PDUs of one DIMSE message as header bytes and payload slices, in order:
    the command set, then the data set, each cut into fragments of at most `max_pdu` - 6
    bytes (an even number), one PDV per PDU (PS3.8 E.2)."""
    command_view = memoryview(command)
    data_view = memoryview(data).cast("B") if data is not None and len(data) else None
    size = (max_pdu - 6 if max_pdu else _UNLIMITED_FRAGMENT) & ~1
    fragments = _fragments(command_view, size, True)
    if data_view is not None:
        fragments += _fragments(data_view, size, False)
    parts: list[bytes | memoryview] = []
    for control, fragment in fragments:
        parts += [_PDU_HEADER.pack(0x04, 0, len(fragment) + 6)
                  + _PDV_HEADER.pack(len(fragment) + 2, context_id, control), fragment]
    return parts


def _send_parts(sock: Any, views: list[memoryview]) -> int:
    """Send what the socket takes now with one writev (its descriptor is non-blocking under a
    timeout); only when it takes nothing, sendmsg, which first polls until it can, within
    the timeout. (Python polls before every send on a socket with a timeout: two system calls
    where the buffer has room, which it nearly always has for a response.)"""
    if sock.gettimeout():
        try:
            return os.writev(sock.fileno(), views)
        except (BlockingIOError, InterruptedError):
            pass
    return int(sock.sendmsg(views))


def _write_all(sock: Any, parts: Sequence[bytes | memoryview]) -> None:
    """Write every part, resuming after partial sends (slices, not copies)."""
    views = [memoryview(part) for part in parts]
    index = 0
    while index < len(views):
        sent = _send_parts(sock, views[index:index + _PARTS_PER_CALL])
        while sent and index < len(views):
            length = len(views[index])
            if sent >= length:
                sent -= length
                index += 1
            else:
                views[index] = views[index][sent:]
                sent = 0


# --- sending --------------------------------------------------------------------------------------

def _usable_socket(assoc: Any) -> Any:
    """The plain socket to write on, or None when the fast path must not be taken."""
    dul = assoc.dul
    transport = getattr(dul, "socket", None)
    sock = getattr(transport, "socket", None)
    if sock is None or isinstance(sock, ssl.SSLSocket) or not hasattr(sock, "sendmsg"):
        return None
    if dul.state_machine.current_state != "Sta6" or dul.to_provider_queue.queue:
        return None
    return sock


def send_message(assoc: Any, context_id: int, command: Dataset | bytes,
                 data: bytes | memoryview | None = None, max_pdu: int | None = None) -> bool:
    """Send one DIMSE message on an established association, straight to its socket.

    `command` is an encoded command set (see `encode_command`) or a pydicom one; `data` the
    data set bytes as they go on the wire (already in the context's transfer syntax). Returns
    False, having sent nothing, when the fast path is not open (not Sta6, TLS, pynetdicom has
    messages queued): send it the pynetdicom way then. Raises OSError when the connection
    fails mid-message; the DUL is told the connection closed (Evt17), as pynetdicom's own
    send does.
    """
    encoded = command if isinstance(command, (bytes, bytearray)) else (
        _encode_command_dataset(command))
    if max_pdu is None:  # the peer's maximum (0: none), unless the caller read it already
        max_pdu = int(assoc.dimse.maximum_pdu_size or 0)
    if 0 < max_pdu <= 8:
        return False
    parts = pdu_parts(context_id, bytes(encoded), data, max_pdu)
    dul = assoc.dul
    with send_lock(assoc):
        sock = _usable_socket(assoc)
        if sock is None:
            return False
        timeout = assoc.network_timeout
        try:
            if sock.gettimeout() != timeout:
                sock.settimeout(timeout)
            _write_all(sock, parts)
        except OSError as exc:
            # Imported here: connection.py imports this module for `send_lock`.
            from pacs.dimse.pynetdicom_internals.connection import exception_text, note_problem
            note_problem(dul, f"sending a DIMSE message failed: {exception_text(exc)}")
            dul.event_queue.put("Evt17")  # PS3.8: transport connection closed
            raise
    # The peer hears from us: network activity, as for pynetdicom's own sends (HardenedDIMSE).
    dul._idle_timer.restart()
    return True


def send_primitive(assoc: Any, primitive: Any, context_id: int,
                   data: bytes | memoryview | None = None) -> None:
    """Send a C-STORE/C-FIND/C-GET/C-MOVE primitive the fast way when it is open, else through
    pynetdicom's DIMSE provider. `data` (when given) replaces the primitive's data set."""
    if data is None:
        keyword = _PRIMITIVES.get(type(primitive), (0, ""))[1]
        stream = getattr(primitive, keyword, None) if keyword else None
        data = stream.getvalue() if isinstance(stream, BytesIO) else None
    command = primitive_command(primitive, bool(data))
    if command is not None and send_message(assoc, context_id, command, data):
        return
    if data is not None and isinstance(primitive, C_STORE):
        primitive.DataSet = BytesIO(bytes(data))
    assoc.dimse.send_msg(primitive, context_id)


# transfer syntax UID -> (implicit VR, little endian, deflated): pydicom's UID properties look
# the syntax up each time they are read.
_ENCODINGS: dict[str, tuple[bool, bool, bool]] = {}


def _encoding(syntax: Any) -> tuple[bool, bool, bool]:
    found = _ENCODINGS.get(str(syntax))
    if found is None:
        found = _ENCODINGS[str(syntax)] = (bool(syntax.is_implicit_VR),
                                          bool(syntax.is_little_endian),
                                          bool(syntax.is_deflated))
    return found


_MESSAGE_ID_HEADER = struct.pack("<HHI", 0x0000, 0x0120, 2)  # Message ID Being Responded To
# (SOP class, status, data set follows) -> (command set with Message ID Being Responded To 0,
# the offset of that value): the C-FIND responses without comments, encoded once per process.
_FIND_COMMANDS: dict[tuple[str, int, bool], tuple[bytes, int]] = {}


def _find_command(sop_class: str, status: int, has_data: bool, message_id: int) -> bytes:
    """The command set of a C-FIND response carrying only its status (PS3.7 9.3.2.2)."""
    key = (sop_class, status, has_data)
    template = _FIND_COMMANDS.get(key)
    if template is None:
        encoded = encode_command({
            "AffectedSOPClassUID": sop_class, "CommandField": 0x8020,
            "CommandDataSetType": DATA_SET_PRESENT if has_data else NO_DATA_SET,
            "MessageIDBeingRespondedTo": 0, "Status": status})
        template = _FIND_COMMANDS[key] = (encoded, encoded.index(_MESSAGE_ID_HEADER) + 8)
    encoded, offset = template
    command = bytearray(encoded)
    struct.pack_into("<H", command, offset, message_id)
    return bytes(command)


class FindResponses:
    """The responses of one C-FIND, sent the fast way: the Pending command set is the same for
    every one (PS3.7 9.3.2.2), so it is encoded once; each identifier once, by pydicom; command
    and identifier in one system call. The final response too (`finish`): through pynetdicom it
    waited for a DIMSE encode, a queue hop and the DUL thread's wake-up (~0.5 ms).

    `direct`: the request is served without pynetdicom's service class (direct.py), so there is
    no response of pynetdicom's to drop, and a response the fast path declines goes to
    pynetdicom's DIMSE queue from here instead of back to the caller."""

    def __init__(self, event: Any, direct: bool = False):
        self.assoc = event.assoc
        self.direct = direct
        self.context_id = int(event.context.context_id)
        self._encoding = _encoding(event.context.transfer_syntax)
        self._fields = {
            "AffectedSOPClassUID": str(event.request.AffectedSOPClassUID),
            "CommandField": 0x8020, "CommandDataSetType": DATA_SET_PRESENT,
            "MessageIDBeingRespondedTo": int(event.request.MessageID),
        }
        self._commands: dict[int, bytes] = {}
        self._max_pdu = int(self.assoc.dimse.maximum_pdu_size or 0)

    def _command(self, status: int, has_data: bool) -> bytes:
        return _find_command(self._fields["AffectedSOPClassUID"], int(status), has_data,
                             self._fields["MessageIDBeingRespondedTo"])

    def send(self, status: int, identifier: Dataset) -> bool:
        """Send one Pending response; False when it must go pynetdicom's way instead (direct:
        when the identifier cannot be encoded, and nothing was sent)."""
        command = self._commands.get(status)
        if command is None:
            command = self._commands[status] = self._command(status, True)
        if _usable_socket(self.assoc) is None and not self.direct:
            return False  # checked first, so nothing is encoded twice
        implicit, little, deflated = self._encoding
        data = encode_raw_dataset(identifier, implicit) if little and not deflated else None
        try:
            data = data or encode(identifier, *self._encoding)
        except Exception:  # noqa: BLE001 - pynetdicom encodes it again and answers 0xC312
            return False
        if not data:
            return False
        if send_message(self.assoc, self.context_id, command, data, self._max_pdu):
            return True
        if not self.direct:
            return False
        self.assoc.dimse.send_msg(self._primitive(status, data), self.context_id)
        return True

    def finish(self, status: Dataset | int) -> bool:
        """Send the final response (status, Error Comment, Offending Element, Error ID; no
        identifier) the fast way and have pynetdicom drop the next final response it sends for
        this request; False when it must go pynetdicom's way instead."""
        fields: dict[str, Any] = {**self._fields, "CommandDataSetType": NO_DATA_SET}
        if isinstance(status, Dataset):
            fields["Status"] = int(status.Status)
            for keyword in ("ErrorComment", "ErrorID"):
                if keyword in status:
                    fields[keyword] = status[keyword].value
            if "OffendingElement" in status:
                value = status.OffendingElement
                fields["OffendingElement"] = list(value) if status["OffendingElement"].VM > 1 \
                    else [value]
        else:
            fields["Status"] = int(status)
        plain = len(fields) == len(self._fields) + 1  # the status alone: no comment, no ID
        command = self._command(fields["Status"], False) if plain else encode_command(fields)
        if send_message(self.assoc, self.context_id, command, None, self._max_pdu):
            if not self.direct:
                self.assoc.dimse.drop_response(C_FIND, self._fields["MessageIDBeingRespondedTo"])
            return True
        if not self.direct:
            return False
        primitive = self._primitive(fields["Status"])
        for keyword in ("ErrorComment", "ErrorID", "OffendingElement"):
            if keyword in fields:
                setattr(primitive, keyword, fields[keyword])
        self.assoc.dimse.send_msg(primitive, self.context_id)
        return True

    def _primitive(self, status: int, data: bytes | None = None) -> C_FIND:
        """The response as a pynetdicom primitive, for its DIMSE queue."""
        primitive = C_FIND()
        primitive.MessageIDBeingRespondedTo = self._fields["MessageIDBeingRespondedTo"]
        primitive.AffectedSOPClassUID = self._fields["AffectedSOPClassUID"]
        primitive.Status = int(status)
        if data is not None:
            primitive.Identifier = BytesIO(bytes(data))
        return primitive


def install_sending_hooks() -> tuple[str, ...]:
    """Put the locked DT-1 action in place; what it replaces, for the record."""
    description, _action, next_state = _fsm_module.ACTIONS["DT-1"]
    _fsm_module.ACTIONS["DT-1"] = (description, _locked_dt_1, next_state)
    return ("fsm.ACTIONS['DT-1']",)
