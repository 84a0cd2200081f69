"""Garbage, absurd lengths, silence: the server aborts the connection and stays up."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import Verification

from pacs.dimse.server import RunningServer
from tests.conftest import scu
from tests.dcmtk import run_tool
from tests.factory import CT_IMAGE_STORAGE, make_dataset

A_ABORT = 0x07


def _raw(server: RunningServer) -> socket.socket:
    connection = socket.create_connection(server.address, timeout=20)
    return connection


def _answer(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def _still_serving(server: RunningServer) -> bool:
    host, port = server.address
    return run_tool("echoscu", ["-aec", "MINIPACS", host, str(port)]).returncode == 0


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_non_dicom_bytes_get_the_connection_closed(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    connection = _raw(server)
    connection.sendall(b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")
    answer = _answer(connection)
    assert answer == b"" or answer[0] == A_ABORT
    assert _still_serving(server)
    _no_traceback(caplog)


def test_absurd_pdu_length_is_aborted_without_reading_it(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    connection = _raw(server)
    # An A-ASSOCIATE-RQ header announcing a 4 GiB PDU, then a little data.
    connection.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0) + b"\x00" * 1000)
    answer = _answer(connection)
    assert answer == b"" or answer[0] == A_ABORT
    assert _still_serving(server)
    _no_traceback(caplog)


def test_malformed_associate_request_is_aborted(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    connection = _raw(server)
    body = b"\x00\x01\x00\x00" + b"MINIPACS".ljust(16) + b"ATTACKER".ljust(16) + b"\x00" * 32
    body += b"\x10\x00\xff\xff" + b"1.2.840.10008.3.1.1.1"  # item length past the end
    connection.sendall(struct.pack(">BBL", 0x01, 0, len(body)) + body)
    answer = _answer(connection)
    assert answer == b"" or answer[0] in (A_ABORT, 0x03)
    assert _still_serving(server)
    _no_traceback(caplog)


def test_half_open_connection_is_freed_after_the_timeout(
    server_factory: Callable[..., RunningServer],
) -> None:
    # A peer that connects and never sends an A-ASSOCIATE-RQ: the ARTIM/ACSE timer (1 s here)
    # closes it; _answer raises socket.timeout (20 s) if the server never does.
    server = server_factory(acse_timeout=1, network_timeout=1)
    connection = _raw(server)
    started = time.monotonic()
    answer = _answer(connection)
    assert answer in (b"", ) or answer[0] == A_ABORT
    assert time.monotonic() - started < 15
    assert _still_serving(server)


def test_silence_mid_transfer_aborts_and_discards_the_partial_instance(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = server_factory(network_timeout=1, dimse_timeout=1)
    ae = scu(CT_IMAGE_STORAGE, Verification, transfer_syntaxes=[ExplicitVRLittleEndian])
    host, port = server.address
    association = ae.associate(host, port, ae_title="MINIPACS")
    assert association.is_established
    context = association.accepted_contexts[0]
    dataset = make_dataset(rows=256, columns=256)
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = dataset.SOPClassUID
    request.AffectedSOPInstanceUID = dataset.SOPInstanceUID
    request.Priority = 0
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, False
    write_dataset(encoded, dataset)
    request.DataSet = BytesIO(encoded.getvalue())
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    fragments = list(message.encode_msg(context.context_id, 16384))
    # Send the command and only the first data fragments, then go silent.
    for primitive in fragments[:3]:
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        association.dul.socket.send(pdu.encode())  # type: ignore[union-attr]
    deadline = time.monotonic() + 20
    while association.is_established and time.monotonic() < deadline:
        time.sleep(0.1)
    assert association.is_aborted or not association.is_established
    deadline = time.monotonic() + 10
    while list(server.services.archive.iter_temp_files()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(server.services.archive.iter_temp_files()) == []
    assert server.services.index.stats().instances == 0
    assert _still_serving(server)
