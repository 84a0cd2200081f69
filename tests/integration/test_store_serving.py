"""How requests are served on one association (issue #12: a store is served by the thread
that received it when nothing else is in progress): one at a time, in the order they came,
each answered even when it takes longer than the network timeout, however the peer packs
them into PDUs.

PS3.7 9.1.1 and PS3.8 9.1.5: without asynchronous operations negotiated (PS3.7 D.3.3.3) a
peer waits for each response; one that does not still gets every response, in order. The
network timeout is for a silent peer, not for a slow archive. PS3.8 9.3.5 and Annex E: one
P-DATA-TF may end one message and begin the next.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from pacs.dimse.server import RunningServer, start_server
from pacs.services.context import Services
from tests.factory import CT_IMAGE_STORAGE, make_dataset
from tests.integration.raw_peer import associate, command_set, p_data, pdu, read_exactly

STATUS = struct.pack("<HH", 0x0000, 0x0900)  # (0000,0900) Status in a command set
MESSAGE_ID_RESPONDED = struct.pack("<HH", 0x0000, 0x0120)  # (0000,0120)
VERIFICATION = "1.2.840.10008.1.1"


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return tmp_path / "index.sqlite"


@pytest.fixture
def server(services_factory: Callable[..., Services], sqlite_file: Path,
           incoming: Path) -> Iterator[RunningServer]:
    """A server on a SQLite file the test can lock, with a one-second network timeout."""
    running = start_server(services_factory(f"sqlite:///{sqlite_file}", network_timeout=1))
    yield running
    running.stop(grace=2)


def _store_parts(message_id: int, instance: int) -> tuple[str, bytes, bytes]:
    """(SOP Instance UID, command set, data set) of a C-STORE-RQ."""
    dataset = make_dataset(instance=instance)
    sop_instance_uid = str(dataset.SOPInstanceUID)
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, False
    write_dataset(encoded, dataset)
    command = command_set(AffectedSOPClassUID=CT_IMAGE_STORAGE, CommandField=0x0001,
                          MessageID=message_id, Priority=0, CommandDataSetType=1,
                          AffectedSOPInstanceUID=sop_instance_uid)
    return sop_instance_uid, command, bytes(encoded.getvalue())


def _store_request(message_id: int, instance: int) -> tuple[str, bytes]:
    """(SOP Instance UID, the two PDUs of its C-STORE-RQ: command set, then data set)."""
    uid, command, data = _store_parts(message_id, instance)
    return uid, p_data(command, command=True) + p_data(data, command=False)


def _pdv(value: bytes, control: int) -> bytes:
    """One presentation data value item of context 1 (PS3.8 9.3.5.1)."""
    return struct.pack(">IBB", len(value) + 2, 1, control) + value


def _element(command: bytes, tag: bytes) -> int:
    """An US value of an implicit VR command set."""
    offset = command.index(tag)
    return int(struct.unpack("<H", command[offset + 8:offset + 10])[0])


def _read_response(connection) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(Message ID Being Responded To, Status) of the next response (one PDU, one PDV)."""
    header = read_exactly(connection, 6)
    assert header[0] == 0x04, f"expected P-DATA-TF, got PDU type {header[0]:#04x}"
    body = read_exactly(connection, struct.unpack(">BBL", header)[2])
    command = body[6:]
    return _element(command, MESSAGE_ID_RESPONDED), _element(command, STATUS)


def test_stores_sent_without_waiting_are_answered_one_by_one_in_order(
        server: RunningServer) -> None:
    # PS3.7 9.1.1: responses to the requests of one association, in the order of the requests.
    connection = associate(server, CT_IMAGE_STORAGE)
    requests = [_store_request(index, index) for index in range(1, 6)]
    uids = [uid for uid, _ in requests]
    connection.sendall(b"".join(pdus for _, pdus in requests))
    responses = [_read_response(connection) for _ in uids]
    connection.sendall(pdu(0x05, b"\x00" * 4))
    assert responses == [(index + 1, 0x0000) for index in range(len(uids))]
    assert all(server.services.index.get_instance(uid) is not None for uid in uids)


def test_store_slower_than_the_network_timeout_is_answered(
        server: RunningServer, sqlite_file: Path) -> None:
    # PS3.8 9.1.5: the network timeout is for a silent peer; one waiting for our answer while
    # the index is busy (another writer holds it for 2.5 s, over the 1 s timeout) gets it.
    connection = associate(server, CT_IMAGE_STORAGE)
    holder = sqlite3.connect(sqlite_file, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(2.5, holder.execute, args=("COMMIT",))
    release.start()
    try:
        connection.sendall(_store_request(1, 1)[1])
        connection.settimeout(30)
        assert _read_response(connection) == (1, 0x0000)
    finally:
        release.join()
        holder.close()
    connection.sendall(pdu(0x05, b"\x00" * 4))
    assert read_exactly(connection, 1) == b"\x06"  # A-RELEASE-RP: the association lived on


def test_two_echo_requests_in_one_pdu_are_both_answered(server: RunningServer) -> None:
    # PS3.8 9.3.5: a P-DATA-TF holds one or more PDVs, of one message or of several.
    connection = associate(server, VERIFICATION)
    echoes = [command_set(AffectedSOPClassUID=VERIFICATION, CommandField=0x0030,
                          MessageID=message_id, CommandDataSetType=0x0101)
              for message_id in (1, 2)]
    connection.sendall(pdu(0x04, b"".join(_pdv(echo, 0x03) for echo in echoes)))
    responses = [_read_response(connection), _read_response(connection)]
    connection.sendall(pdu(0x05, b"\x00" * 4))
    assert responses == [(1, 0x0000), (2, 0x0000)]


def test_store_ending_in_the_pdu_that_starts_the_next_stores_both(
        server: RunningServer) -> None:
    # PS3.8 Annex E: the last fragment of one data set and the next command set, one PDU.
    connection = associate(server, CT_IMAGE_STORAGE)
    first_uid, first_command, first_data = _store_parts(1, 31)
    second_uid, second_command, second_data = _store_parts(2, 32)
    connection.sendall(pdu(0x04, _pdv(first_command, 0x03) + _pdv(first_data[:100], 0x00)))
    connection.sendall(pdu(0x04, _pdv(first_data[100:], 0x02) + _pdv(second_command, 0x03)))
    connection.sendall(pdu(0x04, _pdv(second_data, 0x02)))
    responses = [_read_response(connection), _read_response(connection)]
    connection.sendall(pdu(0x05, b"\x00" * 4))
    assert responses == [(1, 0x0000), (2, 0x0000)]
    assert server.services.index.get_instance(first_uid) is not None
    assert server.services.index.get_instance(second_uid) is not None
