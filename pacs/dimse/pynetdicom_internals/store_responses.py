"""C-STORE responses to our own sub-operations, decoded from their few bytes.

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included), the
standard library and pynetdicom_internals.messages (the DIMSE provider it extends); nothing
else of ours.

Why: every C-STORE sub-operation of a C-MOVE or C-GET waits for the peer's C-STORE-RSP, about
a hundred bytes. pynetdicom decodes it as it decodes any message: the command set through a
pydicom Dataset, then a primitive built attribute by attribute, each value validated, about
0.25 ms of the DUL thread's time (holding the GIL) per sub-operation, a third of the server's
CPU in a C-MOVE.

What it does (PS3.7 9.3.1.2 C-STORE-RSP, E.1 command set encoding; PS3.8 E.2 fragments): on
an association carrying our C-STORE requests (`expect_store_responses`), a P-DATA that holds
one complete command set and nothing else, while no message is in progress, is read directly
(Implicit VR Little Endian, group 0000). When it is a C-STORE-RSP with no data set and only
the elements a plain response has (Affected SOP Class and Instance UIDs, Message ID Being
Responded To, Status), the C_STORE primitive is made from those values and queued for the
waiting sub-operation. Anything else (another command, a data set, Error Comment, Offending
Element, a malformed command set, fragments) goes pynetdicom's way, untouched.
"""

from __future__ import annotations

import struct
from typing import Any

from pynetdicom.dimse_primitives import C_STORE

from pacs.dimse.pynetdicom_internals.messages import HardenedDIMSE

_ELEMENT = struct.Struct("<HHI")  # Implicit VR Little Endian: group, element, value length
_US = struct.Struct("<H")
_COMMAND_LAST = 0x03  # message control header: command information, last fragment
C_STORE_RSP = 0x8001
NO_DATA_SET = 0x0101
# Group 0000 elements of a plain C-STORE-RSP: Command Group Length, Affected SOP Class UID,
# Command Field, Message ID Being Responded To, Command Data Set Type, Status, Affected SOP
# Instance UID.
_PLAIN = frozenset({0x0000, 0x0002, 0x0100, 0x0120, 0x0800, 0x0900, 0x1000})
_REQUIRED = frozenset({0x0100, 0x0120, 0x0800, 0x0900})


def _command_elements(command: bytes) -> dict[int, bytes] | None:
    """The group 0000 elements of an encoded command set by element number; None when it is
    not one (another group, a length past the end, an element twice)."""
    elements: dict[int, bytes] = {}
    position, end = 0, len(command)
    while position < end:
        if position + 8 > end:
            return None
        group, element, length = _ELEMENT.unpack_from(command, position)
        position += 8
        if group != 0x0000 or position + length > end or element in elements:
            return None
        elements[element] = command[position:position + length]
        position += length
    return elements


def _uid(value: bytes | None) -> str | None:
    return None if value is None else value.rstrip(b"\x00 ").decode("ascii")


def decode_store_response(primitive: Any) -> tuple[int, C_STORE] | None:
    """(context ID, C_STORE response) of a P-DATA holding exactly one plain C-STORE-RSP
    command set; None for anything else."""
    values = primitive.presentation_data_value_list
    if len(values) != 1:
        return None
    context_id, value = values[0]
    if not value or value[0] & _COMMAND_LAST != _COMMAND_LAST:
        return None
    elements = _command_elements(value[1:])
    if elements is None or not _REQUIRED <= elements.keys() <= _PLAIN:
        return None
    words = {}
    for element in (0x0100, 0x0120, 0x0800, 0x0900):
        if len(elements[element]) != 2:
            return None
        words[element] = _US.unpack(elements[element])[0]
    if words[0x0100] != C_STORE_RSP or words[0x0800] != NO_DATA_SET:
        return None
    try:
        response = C_STORE()
        response.MessageIDBeingRespondedTo = words[0x0120]
        response.Status = words[0x0900]
        response.AffectedSOPClassUID = _uid(elements.get(0x0002))
        response.AffectedSOPInstanceUID = _uid(elements.get(0x1000))
    except (ValueError, TypeError, UnicodeDecodeError):
        return None  # pynetdicom's path decides what an odd value means
    return int(context_id), response


class StoreResponseDIMSE(HardenedDIMSE):
    """The DIMSE provider of an association that carries our C-STORE requests: their plain
    responses are decoded here, everything else as HardenedDIMSE does."""

    def receive_primitive(self, primitive: Any) -> None:
        """Queue a plain C-STORE-RSP at once; anything else goes pynetdicom's way."""
        if self.message is None:
            decoded = decode_store_response(primitive)
            if decoded is not None:
                self.msg_queue.put(decoded)
                return
        super().receive_primitive(primitive)


def expect_store_responses(assoc: Any) -> None:
    """Decode the C-STORE responses arriving on `assoc` the short way (it must be one of ours,
    with the hardened DIMSE provider; anything else is left as it is)."""
    if type(assoc.dimse) is HardenedDIMSE:
        assoc.dimse.__class__ = StoreResponseDIMSE
