"""A lean C-FIND SCU for `scripts/bench index`: PS3.8 PDUs written and read by hand on a raw
socket, reading only the Status of each response, so what it times is the server rather than a
DICOM toolkit's per-response decoding (pynetdicom's SCU spends ~0.3-0.4 ms on each).

Layer: tool (pacs.bench); standard library, pydicom and pynetdicom's public `encode`.
"""

from __future__ import annotations

import socket
import struct

from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

IMPLICIT_LE = "1.2.840.10008.1.2"
_CONTEXT_IDS = {PatientRootQueryRetrieveInformationModelFind: 1,
                StudyRootQueryRetrieveInformationModelFind: 3}


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    """An Implicit VR Little Endian command set, Command Group Length first (PS3.7 E)."""
    body = b"".join(struct.pack("<HHI", 0, number, len(value)) + value
                    for number, value in elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


class LeanSCU:
    """A C-FIND SCU on a raw socket (PS3.8 PDUs by hand): one association, Implicit VR Little
    Endian, reading only the Status of each response. What it costs per response is a few
    microseconds, so what it times is the server."""

    def __init__(self, port: int, called: str = "MINIPACS", calling: str = "BENCHLEAN"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = struct.pack(">HH", 1, 0) + called.encode().ljust(16) \
            + calling.encode().ljust(16) + bytes(32) + _item(0x10, b"1.2.840.10008.3.1.1.1")
        for sop_class, context_id in _CONTEXT_IDS.items():
            body += _item(0x20, bytes([context_id, 0, 0, 0]) + _item(0x30, sop_class.encode())
                          + _item(0x40, IMPLICIT_LE.encode()))
        body += _item(0x50, _item(0x51, struct.pack(">I", 1 << 20))
                      + _item(0x52, b"1.2.826.0.1.3680043.10.1071.99"))
        self.sock.sendall(struct.pack(">BBI", 1, 0, len(body)) + body)
        kind, _ = self._read_pdu()
        if kind != 0x02:
            raise RuntimeError(f"lean SCU: association refused (PDU type {kind:#x})")
        self.message_id = 0

    def _read_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise RuntimeError("lean SCU: connection closed")
            data += chunk
        return bytes(data)

    def _read_pdu(self) -> tuple[int, bytes]:
        kind, _, length = struct.unpack(">BBI", self._read_exact(6))
        return kind, self._read_exact(length)

    def find(self, sop_class: str, identifier: Dataset) -> tuple[int, int]:
        """(Pending responses, final status) of one C-FIND."""
        self.message_id += 1
        data = bytes(encode(identifier, True, True) or b"")
        uid = sop_class.encode() + b"\x00" * (len(sop_class) % 2)
        command = _command([(0x0002, uid), (0x0100, struct.pack("<H", 0x0020)),
                            (0x0110, struct.pack("<H", self.message_id)),
                            (0x0700, struct.pack("<H", 0)), (0x0800, struct.pack("<H", 1))])
        context_id = _CONTEXT_IDS[sop_class]
        pdus = b"".join(struct.pack(">BBIIBB", 4, 0, len(part) + 6, len(part) + 2, context_id,
                                    control) + part
                        for part, control in ((command, 0x03), (data, 0x02)))
        self.sock.sendall(pdus)
        pending, fragments = 0, b""
        while True:
            kind, body = self._read_pdu()
            if kind != 0x04:
                raise RuntimeError(f"lean SCU: PDU type {kind:#x} during a C-FIND")
            offset = 0
            while offset < len(body):
                length, _, control = struct.unpack_from(">IBB", body, offset)
                fragment = body[offset + 6:offset + 4 + length]
                offset += 4 + length
                if not control & 0x01:
                    continue  # an identifier: not read
                fragments += fragment
                if control & 0x02:
                    status = _status(fragments)
                    fragments = b""
                    if status not in (0xFF00, 0xFF01):
                        return pending, status
                    pending += 1

    def release(self) -> None:
        """A-RELEASE-RQ, wait for the RP, close."""
        try:
            self.sock.sendall(struct.pack(">BBI", 5, 0, 4) + bytes(4))
            self._read_pdu()
        finally:
            self.sock.close()


def _status(command: bytes) -> int:
    offset = 0
    while offset + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHI", command, offset)
        if (group, element) == (0x0000, 0x0900):
            return int(struct.unpack_from("<H", command, offset + 8)[0])
        offset += 8 + length
    return -1
