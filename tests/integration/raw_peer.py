"""A hostile or broken DICOM peer over raw TCP, for the transport tests (no tests here):
PDUs built by hand or with pynetdicom's encoders, command sets with any element missing, and
reading what the server sends until it closes the connection, timed."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    P_DATA,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context

from pacs.dimse.server import RunningServer

A_ABORT = 0x07
ABORT_PDU_LENGTH = 10  # PS3.8 9.3.8: 6-byte header, 4 bytes of source and reason
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


@dataclass(frozen=True)
class Closed:
    """What the server sent before it closed the connection, and after how long."""

    received: bytes
    seconds: float

    @property
    def pdu_types(self) -> list[int]:
        """The type of every PDU received, in order."""
        types, offset = [], 0
        while offset + 6 <= len(self.received):
            kind, _, length = struct.unpack(">BBL", self.received[offset:offset + 6])
            types.append(kind)
            offset += 6 + length
        return types


def connect(server: RunningServer) -> socket.socket:
    """A TCP connection to the server's DICOM port."""
    return socket.create_connection(server.address, timeout=30)


def read_until_closed(connection: socket.socket, limit: float = 30) -> Closed:
    """Everything the server sends until it closes; fails if it has not closed in `limit` s."""
    started = time.monotonic()
    connection.settimeout(limit)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass  # closed with unread data on its side: closed all the same
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {limit} s "
                             f"(received {received[:40]!r})") from None
    finally:
        connection.close()
    return Closed(received, time.monotonic() - started)


def wait_idle(server: RunningServer, within: float = 10) -> bool:
    """Whether the server holds no association (and so has logged all it will) in time."""
    deadline = time.monotonic() + within
    while server.ae.active_associations and time.monotonic() < deadline:
        time.sleep(0.01)
    return not server.ae.active_associations


def pdu(kind: int, body: bytes) -> bytes:
    """A PDU of `kind` around `body` (PS3.8 9.3: type, reserved, 32-bit length)."""
    return struct.pack(">BBL", kind, 0, len(body)) + body


def associate_request(sop_class: str, calling: str = "HOSTILE",
                      syntax: str = EXPLICIT_VR_LITTLE_ENDIAN) -> bytes:
    """An A-ASSOCIATE-RQ proposing `sop_class` in `syntax` as context 1."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = calling
    primitive.called_ae_title = "MINIPACS"
    context = build_context(sop_class, [syntax])
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = 16384
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.10.1071.99"
    primitive.user_information = [maximum, implementation]
    request = A_ASSOCIATE_RQ()
    request.from_primitive(primitive)
    return bytes(request.encode())


def associate(server: RunningServer, sop_class: str) -> socket.socket:
    """A raw connection on which the server accepted `sop_class` as context 1."""
    connection = connect(server)
    connection.sendall(associate_request(sop_class))
    header = read_exactly(connection, 6)
    body = read_exactly(connection, struct.unpack(">BBL", header)[2])
    assert header[0] == 0x02, f"association not accepted: PDU type {header[0]:#04x}"
    accepted = A_ASSOCIATE_AC()
    accepted.decode(header + body)
    assert [c.result for c in accepted.to_primitive().presentation_context_definition_results_list
            ] == [0], "context 1 not accepted"
    return connection


def read_exactly(connection: socket.socket, count: int) -> bytes:
    """`count` bytes from the connection; fails if the server closes first."""
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return data


def command_set(**elements: Any) -> bytes:
    """A command set with exactly `elements` (keywords), Implicit VR Little Endian, with its
    Command Group Length (PS3.7 6.3.1)."""
    dataset = Dataset()
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
    body = _implicit_little_endian(dataset)
    group = Dataset()
    group.CommandGroupLength = len(body)
    return _implicit_little_endian(group) + body


def _implicit_little_endian(dataset: Dataset) -> bytes:
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, True
    write_dataset(encoded, dataset)
    return bytes(encoded.getvalue())


def p_data(value: bytes, command: bool, last: bool = True, context_id: int = 1) -> bytes:
    """A P-DATA-TF PDU with one fragment (PS3.8 E.2: control header bit 0 command, bit 1
    last fragment)."""
    primitive = P_DATA()
    header = (1 if command else 0) | (2 if last else 0)
    primitive.presentation_data_value_list = [[context_id, bytes([header]) + value]]
    encoded = P_DATA_TF()
    encoded.from_primitive(primitive)
    return bytes(encoded.encode())
