"""Garbage, absurd lengths, silence, probes: PS3.8 protocol errors end the connection (with an
A-ABORT where PS3.8 says so) within the ARTIM or network timeout, free the association slot,
log one line and no traceback, and the server carries on."""

from __future__ import annotations

import logging
import socket
import struct
import tempfile
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
from tests.conftest import ServerProcess, scu
from tests.dcmtk import run_tool
from tests.factory import CT_IMAGE_STORAGE, make_dataset, make_file
from tests.integration.raw_peer import (
    A_ABORT,
    Closed,
    associate,
    associate_request,
    connect,
    pdu,
    read_until_closed,
    wait_idle,
)

# A thread that dies of an exception (pynetdicom's DUL did) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

# 67 bytes: not a whole number of 6-byte "PDU headers", so a reader that parses on (as stock
# pynetdicom did) ends up waiting for bytes that never come.
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: pacs\r\nUser-Agent: probe/1.00\r\nAccept: */*\r\n\r\n"
TRUNCATED_ITEMS = pdu(0x01, b"\x00\x01\x00\x00" + b"MINIPACS".ljust(16) + b"ATTACKER".ljust(16)
                      + b"\x00" * 32 + b"\x10\x00\xff\xff" + b"1.2.840.10008.3.1.1.1")


def _still_serving(server: RunningServer) -> bool:
    host, port = server.address
    return run_tool("echoscu", ["-aec", "MINIPACS", host, str(port)]).returncode == 0


def _lines_about(caplog: pytest.LogCaptureFixture, connection_port: int) -> list[str]:
    """The server's warnings about the connection from `connection_port`."""
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("pacs") and r.levelno >= logging.WARNING
            and f":{connection_port} " in r.getMessage() + " "
            or f":{connection_port}:" in r.getMessage()]


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r.getMessage() for r in caplog.records
                if r.name.startswith("pynetdicom") and r.levelno >= logging.ERROR]


def _garbage_then_closed(server: RunningServer, caplog: pytest.LogCaptureFixture,
                         garbage: bytes, limit: float = 15) -> tuple[Closed, list[str]]:
    connection = connect(server)
    port = connection.getsockname()[1]
    connection.sendall(garbage)
    closed = read_until_closed(connection, limit)
    assert wait_idle(server)
    return closed, _lines_about(caplog, port)


# PS3.8 9.2, Sta2 + Evt17 (AA-5): a health check's connect-and-close frees its slot at once,
# not after the ACSE timeout (30 s here).
def test_connection_closed_before_associate_request_frees_its_slot_at_once(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(acse_timeout=30)
    connect(server).close()
    assert _still_serving(server)  # accepted after the probe: the probe has been seen
    assert wait_idle(server, within=5)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and "listening" not in r.getMessage() and "allow-list" not in r.getMessage()]


def test_a_thousand_connect_and_close_probes_leave_no_association_and_echo_answers(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(acse_timeout=30)
    for _ in range(1000):
        connect(server).close()
    assert _still_serving(server)
    assert wait_idle(server, within=10)
    _no_traceback(caplog)


# PS3.8 9.2, Sta2 + Evt19 (AA-1): bytes that are not a PDU get one A-ABORT, then the connection
# closes (Sta13) - not one A-ABORT and one log line per 6 bytes, and not left open.
def test_non_dicom_bytes_get_one_abort_and_the_connection_closed(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(acse_timeout=2)
    closed, lines = _garbage_then_closed(server, caplog, HTTP_REQUEST)
    assert closed.pdu_types == [A_ABORT]
    assert len(lines) == 1 and "Unknown PDU type" in lines[0], lines
    assert _still_serving(server)
    _no_traceback(caplog)


def test_unknown_pdu_type_gets_an_abort_and_the_connection_closed(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(acse_timeout=2)
    closed, lines = _garbage_then_closed(server, caplog, pdu(0x09, b"abcd"))
    assert closed.pdu_types == [A_ABORT]
    assert len(lines) == 1 and "0x09" in lines[0], lines
    _no_traceback(caplog)


def test_associate_request_with_truncated_items_gets_an_abort_and_the_connection_closed(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(acse_timeout=2)
    closed, lines = _garbage_then_closed(server, caplog, TRUNCATED_ITEMS)
    assert closed.pdu_types == [A_ABORT]
    assert len(lines) == 1 and "decode" in lines[0], lines
    assert _still_serving(server)
    _no_traceback(caplog)


def test_absurd_pdu_length_is_aborted_without_reading_it(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(acse_timeout=2)
    # An A-ASSOCIATE-RQ header announcing a 4 GiB PDU, then a little data.
    garbage = struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0) + b"\x00" * 1000
    closed, lines = _garbage_then_closed(server, caplog, garbage)
    assert closed.pdu_types == [A_ABORT]
    assert len(lines) == 1 and "over the limit" in lines[0], lines
    assert _still_serving(server)
    _no_traceback(caplog)


# PS3.8 9.1.5 and Sta2 + Evt18 (AA-2): no association yet, so the ARTIM timer (1 s here) bounds
# the wait for a whole A-ASSOCIATE-RQ, and the connection closes without an A-ABORT.
def test_pdu_header_then_silence_is_closed_when_artim_expires(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(acse_timeout=1, network_timeout=60)
    closed, lines = _garbage_then_closed(server, caplog, struct.pack(">BBL", 0x01, 0, 200))
    assert closed.received == b""
    assert len(lines) == 1 and "incomplete PDU" in lines[0], lines
    _no_traceback(caplog)


def test_silence_before_associate_request_is_closed_when_artim_expires(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(acse_timeout=1, network_timeout=60)
    closed, lines = _garbage_then_closed(server, caplog, b"")
    assert closed.received == b""
    assert len(lines) == 1 and "no A-ASSOCIATE-RQ" in lines[0], lines
    assert _still_serving(server)


# With an association, a PDU that stops half-way is a peer silent past the network timeout
# (1 s here): an A-ABORT, then the connection closes.
def test_pdu_header_then_silence_on_an_association_is_aborted_within_the_network_timeout(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(acse_timeout=30, network_timeout=1)
    connection = associate(server, Verification)
    port = connection.getsockname()[1]
    connection.sendall(struct.pack(">BBL", 0x04, 0, 100) + b"\x00" * 10)
    closed = read_until_closed(connection, limit=15)
    assert closed.pdu_types == [A_ABORT]
    assert wait_idle(server)
    lines = _lines_about(caplog, port)
    assert len(lines) == 1 and "A-ABORT sent" in lines[0], lines
    _no_traceback(caplog)


# Every slot taken by a broken peer comes back: max_associations of them, then a store works.
def test_broken_peers_on_every_slot_then_a_store_succeeds(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
    tmp_path: Path, chunked_send: None,
) -> None:
    garbage = [HTTP_REQUEST, pdu(0x09, b"abcd"), TRUNCATED_ITEMS,
               struct.pack(">BBL", 0x01, 0, 200), struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0), b""]
    server = server_factory(max_associations=len(garbage), acse_timeout=1, network_timeout=2)
    connections = [connect(server) for _ in garbage]
    for connection, data in zip(connections, garbage, strict=True):
        connection.sendall(data)
    for connection in connections:
        read_until_closed(connection, limit=15)
    assert wait_idle(server)
    ae = scu(CT_IMAGE_STORAGE, transfer_syntaxes=[ExplicitVRLittleEndian])
    association = ae.associate(*server.address, ae_title="MINIPACS")
    assert association.is_established
    try:
        assert int(association.send_c_store(make_file(tmp_path)).Status) == 0x0000
    finally:
        association.release()
    _no_traceback(caplog)


def test_silence_mid_transfer_aborts_and_discards_the_partial_instance(
    server_factory: Callable[..., RunningServer], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(incoming))  # where data sets are received
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
        pdu_tf = P_DATA_TF()
        pdu_tf.from_primitive(primitive)
        association.dul.socket.send(pdu_tf.encode())  # type: ignore[union-attr]
    deadline = time.monotonic() + 20
    while association.is_established and time.monotonic() < deadline:
        time.sleep(0.1)
    assert association.is_aborted or not association.is_established
    assert wait_idle(server)
    assert list(incoming.iterdir()) == []
    assert server.services.index.stats().instances == 0
    assert any("partial data set discarded" in r.getMessage() for r in caplog.records)
    assert _still_serving(server)


# The SIGTERM case: after a burst of health-check probes, and with one connection open
# that has sent nothing yet, there is nothing to drain, so the server stops at once (before:
# each held its slot for the 30 s ACSE timeout, SIGTERM waited out the whole 10 s drain and
# then logged "aborting association with  at shutdown", with an empty AE title).
def test_sigterm_after_a_thousand_probes_stops_without_a_drain(
    server_process: Callable[..., ServerProcess],
) -> None:
    process = server_process()
    for _ in range(1000):
        socket.create_connection(("127.0.0.1", process.port), timeout=30).close()
    silent = socket.create_connection(("127.0.0.1", process.port), timeout=30)
    echo = run_tool("echoscu", ["-aec", "MINIPACS", "127.0.0.1", str(process.port)])
    assert echo.returncode == 0  # accepted after the others: they have all been seen
    started = time.monotonic()
    assert process.terminate(timeout=60) == 0
    assert time.monotonic() - started < 5  # well inside the 10 s drain it no longer needs
    assert read_until_closed(silent, limit=5).received == b""
    log = process.log.read_text()
    assert "aborting association" not in log
    assert "Traceback" not in log


def test_associate_request_alone_still_gets_an_association(server: RunningServer) -> None:
    # The raw peer of these tests speaks correct DICOM when asked to: the server accepts it.
    connection = connect(server)
    connection.sendall(associate_request(Verification))
    assert connection.recv(1)[0] == 0x02  # A-ASSOCIATE-AC
    connection.close()
    assert wait_idle(server)


# PS3.8 Table 9-10 has no transition for a local A-ABORT (Evt15) before the A-ASSOCIATE-RQ
# (Sta2), and pynetdicom raised in its DUL thread when asked for one (ae.shutdown() does): the
# connection now just ends, with one line and no traceback.
def test_aborting_a_connection_before_its_associate_request_ends_it_cleanly(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(acse_timeout=30)
    connection = connect(server)
    port = connection.getsockname()[1]
    assert _still_serving(server)  # accepted after the connection: it has been seen
    for association in server.ae.active_associations:
        association.abort()
    read_until_closed(connection, limit=15)
    assert wait_idle(server)
    lines = _lines_about(caplog, port)
    assert len(lines) == 1 and "Evt15" in lines[0], lines
    _no_traceback(caplog)
