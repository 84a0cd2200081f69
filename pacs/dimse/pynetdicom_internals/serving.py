"""C-STORE requests on associations we accepted: their primitive built from the command set's
values, and served in the DUL thread that completed them; the command set elements every
received message reads, read from their bytes.

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included),
pydicom, the standard library and pynetdicom_internals' commands, direct, reactors and sending;
messages.py's DIMSE provider uses `DimseQueue` as its message queue.

Why: after the receive fast path, a store's CPU in the DUL was mostly pynetdicom's handling of
the complete message: turning the command set into a C_STORE primitive (each element converted
by pydicom, each value through the primitive's validators) and handing it to the reactor
thread, which woke to serve it and handed the response back.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import _config
from pynetdicom import dimse_messages as _dimse_messages_module
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from pacs.dimse.pynetdicom_internals.commands import NO_DATA_SET, encode_command
from pacs.dimse.pynetdicom_internals.direct import direct_handler, serve_direct
from pacs.dimse.pynetdicom_internals.reactors import WakingQueue, doorbell
from pacs.dimse.pynetdicom_internals.sending import send_message, send_primitive


def _storage_context(assoc: Any, context_id: int, request: Any) -> Any:
    """The accepted context of a C-STORE request the Storage service class serves as
    pynetdicom's `_serve_request` would route it; None when anything is unusual (that path
    then handles it: release sent, an invalid request, an unknown context, another class)."""
    if assoc._sent_release or not request.is_valid_request:
        return None
    context = assoc._accepted_cx.get(context_id)
    if context is None:
        return None
    class_uid = request.AffectedSOPClassUID
    class_uid = assoc.acceptor.accepted_common_extended.get(class_uid, (class_uid,))[0]
    if (not _config.UNRESTRICTED_STORAGE_SERVICE
            and uid_to_service_class(class_uid) is not StorageServiceClass):
        return None
    return context


class DimseQueue(WakingQueue):
    """The DIMSE message queue, which serves a C-STORE request in the putting (DUL) thread
    when the association's reactor has nothing else to do.

    Why: handing each store to the reactor thread cost two thread wake-ups and the GIL
    hand-offs between them, about a sixth of a store's CPU. The peer waits for the response
    anyway (PS3.7 asynchronous operations are not negotiated), so the DUL has nothing to read
    meanwhile. Only on associations we accepted (a C-GET SCU of ours takes its sub-operations
    off this queue), and only when the queue is empty and the reactor is between requests,
    so requests are still served one at a time, in order.
    """

    def __init__(self, dimse: Any):
        super().__init__(doorbell(dimse.assoc).set)
        self.dimse = dimse

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Serve a C-STORE request here when the reactor is idle; queue anything else."""
        context_id, message = item
        if (type(message) is C_STORE and message.MessageIDBeingRespondedTo is None
                and not self.dimse.serving_request and not self.queue
                and self.dimse.assoc.is_acceptor and self._serve_store(context_id, message)):
            return
        super().put(item, block, timeout)

    def _serve_store(self, context_id: int, request: Any) -> bool:
        assoc = self.dimse.assoc
        context = _storage_context(assoc, context_id, request)
        if context is None:
            return False
        direct = direct_handler(assoc, request, context_id)
        # The reactor, free meanwhile, must not take a slow store for a silent peer.
        idle_timer = assoc.dul._idle_timer
        idle_timer.stop()
        try:
            if direct is not None:
                serve_direct(assoc, direct[0], request, direct[1], in_dul_thread=True)
            else:
                StorageServiceClass(assoc).SCP(request, context)
        finally:
            idle_timer.restart()
        return True


# --- the response of a C-STORE served directly (PS3.7 9.3.1.2) ------------------------------------

_C_STORE_RSP = 0x8001  # Command Field (PS3.7 E.1-1)


def discard_received_file(request: Any) -> None:
    """Close a C-STORE request's received file and remove it unless the handler moved it, as
    pynetdicom's Storage service class does after its handler."""
    received = request._dataset_file
    if received:
        received.close()
        with contextlib.suppress(OSError):
            os.unlink(received.name)


def answer_store(event: Any, status: int | Dataset) -> None:
    """Finish a C-STORE request served directly (direct.py): its received file discarded,
    then the response with `status` (an int, or a status Dataset whose elements the response
    carries, as pynetdicom's `validate_status` takes them). A bare status is encoded here;
    anything else, or a response the send fast path cannot take, pynetdicom's way."""
    request, assoc = event.request, event.assoc
    discard_received_file(request)
    if not assoc.is_established:
        return
    context_id = event.context.context_id
    if type(status) is int:
        command = encode_command({
            "AffectedSOPClassUID": request.AffectedSOPClassUID, "CommandField": _C_STORE_RSP,
            "MessageIDBeingRespondedTo": request.MessageID, "CommandDataSetType": NO_DATA_SET,
            "Status": status, "AffectedSOPInstanceUID": request.AffectedSOPInstanceUID})
        if send_message(assoc, context_id, command):
            return
    response = C_STORE()
    response.MessageIDBeingRespondedTo = request.MessageID
    response.AffectedSOPInstanceUID = request.AffectedSOPInstanceUID
    response.AffectedSOPClassUID = request.AffectedSOPClassUID
    send_primitive(assoc, StorageServiceClass(assoc).validate_status(status, response),
                   context_id)


# --- the C_STORE primitive of a request (PS3.7 9.3.1.1) --------------------------------------

# Command elements of a C-STORE-RQ -> (primitive attribute, kind); anything else present, or a
# value not of the plain form read here, leaves the message to pynetdicom's conversion.
_STORE_REQUEST_ELEMENTS: dict[int, tuple[str | None, str]] = {
    0x00000000: (None, "UL"), 0x00000100: (None, "US"), 0x00000800: (None, "US"),
    # The one setter that validates (a UID through pynetdicom's validators) is bypassed.
    0x00000002: ("_affected_sop_class_uid", "UI"), 0x00000110: ("MessageID", "US"),
    0x00000700: ("Priority", "US"), 0x00001000: ("AffectedSOPInstanceUID", "UI"),
}
# A UID as PS3.5 9.1 writes it; pynetdicom accepts these without a word, and a UID of any
# other form goes its way, to be warned about or refused there.
_CONFORMANT_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_US = struct.Struct("<H")


def _plain_value(element: Any, kind: str) -> Any:
    """The element's value as the primitive holds it, or None when it is not plain."""
    if type(element) is not RawDataElement:
        value = element.value  # already converted by pynetdicom's decoding
        if kind == "UI":
            return value if isinstance(value, str) and _is_plain_uid(value) else None
        return value if isinstance(value, int) else None
    data = element.value
    if kind == "UI":
        text = data.rstrip(b"\x00 ").decode("ascii", "replace") if data else ""
        return UID(text) if _is_plain_uid(text) else None
    if kind == "US" and data is not None and len(data) == 2:
        return _US.unpack(data)[0]
    return None if kind != "UL" else 0


def _is_plain_uid(text: str) -> bool:
    return 0 < len(text) <= 64 and _CONFORMANT_UID.fullmatch(text) is not None


# The command elements pynetdicom's `decode_msg` reads while a message arrives -> their kind.
_READ_WHILE_RECEIVING: dict[str, tuple[int, str]] = {
    "CommandField": (0x00000100, "US"), "CommandDataSetType": (0x00000800, "US"),
    "AffectedSOPClassUID": (0x00000002, "UI"), "AffectedSOPInstanceUID": (0x00001000, "UI"),
}


class CommandSet(Dataset):
    """A decoded command set whose few elements `decode_msg` reads for every message are read
    from their raw bytes when of the plain form (a US of two bytes, a conformant UID), instead
    of through pydicom's conversion (~15 µs each); anything else reads as any Dataset."""

    def __getattr__(self, name: str) -> Any:
        known = _READ_WHILE_RECEIVING.get(name)
        if known is not None:
            element = self._dict.get(known[0])
            if type(element) is RawDataElement:
                value = _plain_value(element, known[1])
                if value is not None:
                    return value
        return Dataset.__getattr__(self, name)


_pynetdicom_decode = _dimse_messages_module.decode


def decode_command_set(encoded: Any, is_implicit_vr: bool, is_little_endian: bool,
                       *args: Any, **kwargs: Any) -> Dataset:
    """pynetdicom's `decode`, the result a `CommandSet` (a command set is always Implicit VR
    Little Endian, PS3.7 6.3.1)."""
    decoded = _pynetdicom_decode(encoded, is_implicit_vr, is_little_endian, *args, **kwargs)
    if type(decoded) is Dataset and is_implicit_vr and is_little_endian:
        decoded.__class__ = CommandSet
    return decoded


_pynetdicom_message_to_primitive = _dimse_messages_module.C_STORE_RQ.message_to_primitive


def store_request_primitive(message: Any) -> Any:
    """The C_STORE primitive of a complete C-STORE-RQ message: the command set's values set
    as pynetdicom's conversion sets them, without pydicom's per-element conversion and the
    setters' validation, for a command of the plain form every storage SCU sends; any other
    goes pynetdicom's way (where a value can be warned about, truncated or refused)."""
    primitive = C_STORE()
    for element in message.command_set.elements():
        known = _STORE_REQUEST_ELEMENTS.get(int(element.tag))
        value = None if known is None else _plain_value(element, known[1])
        if value is None:
            return _pynetdicom_message_to_primitive(message)
        if known[0] is not None:
            setattr(primitive, known[0], value)
    primitive.DataSet = message.data_set
    primitive._context_id = message.context_id
    primitive._dataset_path = message._data_set_path
    primitive._dataset_file = message._data_set_file
    return primitive


def install_serving_hooks() -> tuple[str, ...]:
    """Build C-STORE request primitives here; what it replaces, for the record."""
    _dimse_messages_module.C_STORE_RQ.message_to_primitive = (  # type: ignore[method-assign]
        store_request_primitive)
    _dimse_messages_module.decode = decode_command_set  # type: ignore[assignment]
    return ("dimse_messages.C_STORE_RQ.message_to_primitive", "dimse_messages.decode")
