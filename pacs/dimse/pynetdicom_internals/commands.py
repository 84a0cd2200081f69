"""What the fast paths write: DIMSE command sets (PS3.7 6.3.1, Annex E) encoded from their
values, and data sets of raw little-endian elements written as pydicom writes them.

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom's DIMSE primitives and
`dsutils.encode`, pydicom and the standard library; nothing of ours. Used by sending.py (the
send fast path), messages.py (C-STORE responses) and the retrieve and C-FIND faces through the
package.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE, C_STORE
from pynetdicom.dsutils import encode

# --- command sets (PS3.7 Annex E), Implicit VR Little Endian --------------------------------------

# Command elements we write: keyword -> (element number in group 0000, VR).
_COMMAND_ELEMENTS: dict[str, tuple[int, str]] = {
    "AffectedSOPClassUID": (0x0002, "UI"),
    "CommandField": (0x0100, "US"),
    "MessageID": (0x0110, "US"),
    "MessageIDBeingRespondedTo": (0x0120, "US"),
    "MoveDestination": (0x0600, "AE"),
    "Priority": (0x0700, "US"),
    "CommandDataSetType": (0x0800, "US"),
    "Status": (0x0900, "US"),
    "OffendingElement": (0x0901, "AT"),
    "ErrorComment": (0x0902, "LO"),
    "ErrorID": (0x0903, "US"),
    "AffectedSOPInstanceUID": (0x1000, "UI"),
    "NumberOfRemainingSuboperations": (0x1020, "US"),
    "NumberOfCompletedSuboperations": (0x1021, "US"),
    "NumberOfFailedSuboperations": (0x1022, "US"),
    "NumberOfWarningSuboperations": (0x1023, "US"),
    "MoveOriginatorApplicationEntityTitle": (0x1030, "AE"),
    "MoveOriginatorMessageID": (0x1031, "US"),
}
NO_DATA_SET = 0x0101  # Command Data Set Type: no data set follows (PS3.7 E.1-1)
DATA_SET_PRESENT = 0x0001  # any other value means one follows; pynetdicom and DCMTK use 1


def _value_bytes(vr: str, value: Any) -> bytes:
    if vr == "US":
        return struct.pack("<H", int(value))
    if vr == "AT":
        tags = value if isinstance(value, (list, tuple)) else [value]
        return b"".join(struct.pack("<HH", int(tag) >> 16, int(tag) & 0xFFFF) for tag in tags)
    text = str(value).encode("ascii", "replace")
    if len(text) % 2:
        text += b"\x00" if vr == "UI" else b" "
    return text


def encode_command(fields: dict[str, Any]) -> bytes:
    """A command set from keyword -> value (None: absent), Command Group Length first."""
    elements = sorted((_COMMAND_ELEMENTS[keyword], value) for keyword, value in fields.items()
                      if value is not None)
    body = b"".join(struct.pack("<HHI", 0x0000, number, len(data)) + data
                    for (number, vr), value in elements
                    for data in (_value_bytes(vr, value),))
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


def _encode_command_dataset(command: Dataset) -> bytes:
    """A pydicom command set, encoded with a fresh Command Group Length."""
    rest = Dataset()
    for element in command:
        if element.tag != 0x00000000:
            rest.add(element)
    body = bytes(encode(rest, True, True) or b"")
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


# DIMSE primitive class -> (request Command Field, the keyword of its data set parameter).
_PRIMITIVES: dict[type, tuple[int, str]] = {
    C_STORE: (0x0001, "DataSet"), C_GET: (0x0010, "Identifier"),
    C_FIND: (0x0020, "Identifier"), C_MOVE: (0x0021, "Identifier"),
}
_RESPONSE_BIT = 0x8000


def primitive_command(primitive: Any, has_data: bool) -> bytes | None:
    """The command set of a C-STORE/C-FIND/C-GET/C-MOVE primitive (None: another kind)."""
    known = _PRIMITIVES.get(type(primitive))
    if known is None:
        return None
    is_response = primitive.MessageIDBeingRespondedTo is not None
    fields = {keyword: getattr(primitive, keyword, None) for keyword in _COMMAND_ELEMENTS
              if keyword not in ("CommandField", "CommandDataSetType")}
    if is_response:
        fields["MessageID"] = fields["Priority"] = fields["MoveDestination"] = None
        fields["AffectedSOPInstanceUID"] = (fields["AffectedSOPInstanceUID"]
                                            if isinstance(primitive, C_STORE) else None)
    else:
        fields["MessageIDBeingRespondedTo"] = fields["Status"] = None
    fields["CommandField"] = known[0] | (_RESPONSE_BIT if is_response else 0)
    fields["CommandDataSetType"] = DATA_SET_PRESENT if has_data else NO_DATA_SET
    return encode_command(fields)


# --- data sets of raw elements (PS3.5 7.1.2, 7.1.3) -----------------------------------------------

# Explicit VRs whose length takes 4 bytes after 2 reserved ones (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT",
                       "UV"})
_IMPLICIT_HEADER = struct.Struct("<HHI")
_SHORT_HEADER = struct.Struct("<HH2sH")
_LONG_HEADER = struct.Struct("<HH2s2xI")


def _tag_of(element: RawDataElement) -> int:
    return int(element.tag)


def encode_raw_dataset(dataset: Dataset, implicit: bool) -> bytes | None:
    """A data set whose elements are all raw little-endian values of even length (as C-FIND
    response identifiers are built) in Little Endian, tags and lengths written here and values
    copied: the bytes pydicom writes, without its per-element machinery. None when any element
    is not such a value (pydicom's `encode` then)."""
    elements = list(dataset.values())
    for element in elements:
        if type(element) is not RawDataElement or not element.is_little_endian:
            return None
    elements.sort(key=_tag_of)
    parts: list[bytes] = []
    for element in elements:
        tag, vr, value = int(element.tag), element.VR, element.value or b""
        if len(value) % 2:
            return None
        if implicit:
            parts.append(_IMPLICIT_HEADER.pack(tag >> 16, tag & 0xFFFF, len(value)))
        elif vr in _LONG_VRS:
            parts.append(_LONG_HEADER.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)))
        elif vr is not None and len(vr) == 2 and len(value) <= 0xFFFF:
            parts.append(_SHORT_HEADER.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)))
        else:
            return None
        parts.append(value)
    return b"".join(parts)
