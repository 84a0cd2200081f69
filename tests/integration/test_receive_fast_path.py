"""The receive fast path (issue #12): a C-STORE request's data set fragments go from the socket
straight into the received file, hashed as they arrive. What is stored must be the data set
byte for byte however the peer cuts it into PDUs and PDVs (PS3.8 9.3.5, Annex E), the index's
SHA-256 must be the file's, and a transfer that breaks off must leave nothing behind.

Real clients over loopback (DCMTK storescu at several PDU sizes, pynetdicom's SCU) and a raw
peer that cuts PDUs and TCP segments where it likes.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from pacs.archive.encoding import read_layout
from pacs.dimse.server import RunningServer, start_server
from pacs.services import store as store_service
from pacs.services.context import Services
from tests.dcmtk import run_tool
from tests.factory import CT_IMAGE_STORAGE, make_dataset
from tests.integration.raw_peer import (
    A_ABORT,
    associate,
    command_set,
    p_data,
    pdu,
    read_exactly,
    read_until_closed,
    wait_idle,
)

ROWS = 256  # 256 x 256 x 2 bytes: a data set of ~128 KiB


@pytest.fixture
def server(services_factory: Callable[..., Services], sqlite_url: str,
           incoming: Path) -> Iterator[RunningServer]:
    """A server on SQLite receiving into `incoming` (the transport is the same on PostgreSQL)."""
    running = start_server(services_factory(sqlite_url, network_timeout=5))
    yield running
    running.stop(grace=2)


@pytest.fixture
def hashed_at_store(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the store pipeline had to read back to hash (the fast path saw not all)."""
    read_back: list[Path] = []
    original = store_service.sync_and_hash

    def counting(handle):  # type: ignore[no-untyped-def]
        read_back.append(Path(handle.name))
        return original(handle)

    monkeypatch.setattr(store_service, "sync_and_hash", counting)
    return read_back


def _data_set_bytes(dataset: Dataset) -> bytes:
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, False
    write_dataset(encoded, dataset)
    return bytes(encoded.getvalue())


def _stored(server: RunningServer, sop_instance_uid: str) -> tuple[bytes, str, str]:
    """(data set bytes as stored, the index's SHA-256, the file's SHA-256)."""
    record = server.services.index.get_instance(sop_instance_uid)
    assert record is not None, f"{sop_instance_uid} is not stored"
    path = server.services.archive.absolute(record.file_path)
    content = path.read_bytes()
    return (content[read_layout(path).dataset_offset:], record.file_sha256,
            hashlib.sha256(content).hexdigest())


def _store_command(dataset: Dataset, message_id: int = 1) -> bytes:
    return command_set(AffectedSOPClassUID=dataset.SOPClassUID, CommandField=0x0001,
                       MessageID=message_id, Priority=0, CommandDataSetType=0x0001,
                       AffectedSOPInstanceUID=dataset.SOPInstanceUID)


def _pdv(value: bytes, last: bool, context_id: int = 1, command: bool = False) -> bytes:
    header = (1 if command else 0) | (2 if last else 0)
    return struct.pack(">IBB", len(value) + 2, context_id, header) + value


def _read_response_status(connection: socket.socket) -> int:
    """The Status of the next DIMSE response (its command set in one or more PDVs)."""
    command = b""
    while True:
        header = read_exactly(connection, 6)
        body = read_exactly(connection, struct.unpack(">BBL", header)[2])
        assert header[0] == 0x04, f"expected a P-DATA-TF, got PDU type {header[0]:#04x}"
        offset = 0
        while offset < len(body):
            length, _context, control = struct.unpack(">IBB", body[offset:offset + 6])
            command += body[offset + 6:offset + 4 + length]
            offset += 4 + length
            if control & 3 == 3:
                return _status(command)


def _status(command: bytes) -> int:
    offset = 0
    while offset < len(command):
        group, element, length = struct.unpack("<HHI", command[offset:offset + 8])
        if (group, element) == (0x0000, 0x0900):
            return int(struct.unpack("<H", command[offset + 8:offset + 10])[0])
        offset += 8 + length
    raise AssertionError("no Status in the response")


def _release(connection: socket.socket) -> None:
    connection.sendall(pdu(0x05, b"\x00" * 4))  # A-RELEASE-RQ
    read_until_closed(connection)


def _store_raw(server: RunningServer, dataset: Dataset, pdus: list[bytes]) -> int:
    """Associate, send the C-STORE command, then `pdus` as they are; the response's Status."""
    connection = associate(server, CT_IMAGE_STORAGE)
    connection.sendall(p_data(_store_command(dataset), command=True))
    for unit in pdus:
        connection.sendall(unit)
    status = _read_response_status(connection)
    _release(connection)
    return status


def _begin_store(server: RunningServer, dataset: Dataset, data: bytes) -> socket.socket:
    """A raw association that has sent a C-STORE command and its data set's first 50,000
    bytes (a fragment, not the last)."""
    connection = associate(server, CT_IMAGE_STORAGE)
    connection.sendall(p_data(_store_command(dataset), command=True))
    connection.sendall(pdu(0x04, _pdv(data[:50000], last=False)))
    return connection


def _assert_left_nothing(server: RunningServer, dataset: Dataset, incoming: Path) -> None:
    """The association is over, no partial file is left, and nothing was indexed."""
    assert wait_idle(server)
    assert list(incoming.iterdir()) == []
    assert server.services.index.get_instance(dataset.SOPInstanceUID) is None


def _assert_stored_whole(server: RunningServer, dataset: Dataset, data: bytes) -> None:
    """Stored byte for byte, and the index's SHA-256 is the file's."""
    stored, indexed_hash, file_hash = _stored(server, dataset.SOPInstanceUID)
    assert stored == data
    assert indexed_hash == file_hash


# PS3.8 9.3.5 and Annex E: however a sender cuts the data set (DCMTK at the smallest PDU it
# allows, at its default, and at ours), the file holds it byte for byte, and the hash computed
# as it arrived is the file's: the store pipeline reads nothing back.
@pytest.mark.parametrize("send_pdu", [["--max-send-pdu", "4096"], ["--max-send-pdu", "16384"], []],
                         ids=["send-pdu-4096", "send-pdu-16384", "ours"])
def test_storescu_data_set_is_stored_byte_for_byte_and_hashed_on_arrival(
    server: RunningServer, tmp_path: Path, hashed_at_store: list[Path], send_pdu: list[str],
) -> None:
    datasets = [make_dataset(instance=number, rows=ROWS, columns=ROWS) for number in (1, 2, 3)]
    files = []
    for dataset in datasets:
        path = tmp_path / f"{dataset.SOPInstanceUID}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        files.append(str(path))
    host, port = server.address
    result = run_tool("storescu", ["-aec", "MINIPACS", "-xe", *send_pdu, host, str(port),
                                   *files])
    assert result.returncode == 0, result.stderr
    for dataset in datasets:
        _assert_stored_whole(server, dataset, _data_set_bytes(dataset))
    assert hashed_at_store == []


# PS3.8 9.3.5: a P-DATA-TF may carry several PDVs; PDUs and PDV headers may be cut anywhere by
# TCP. Here every data set PDU holds three fragments and goes out a few bytes at a time.
def test_several_fragments_per_pdu_cut_across_reads_are_stored_whole(
    server: RunningServer, hashed_at_store: list[Path],
) -> None:
    dataset = make_dataset(instance=7, rows=ROWS, columns=ROWS)
    data = _data_set_bytes(dataset)
    connection = associate(server, CT_IMAGE_STORAGE)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.sendall(p_data(_store_command(dataset), command=True))
    size = 5000
    chunks = [data[start:start + size] for start in range(0, len(data), size)]
    stream = b""
    for first in range(0, len(chunks), 3):
        group = chunks[first:first + 3]
        stream += pdu(0x04, b"".join(
            _pdv(chunk, last=first + index == len(chunks) - 1)
            for index, chunk in enumerate(group)))
    for start in range(0, len(stream), 997):  # odd cuts: through PDU and PDV headers
        connection.sendall(stream[start:start + 997])
    assert _read_response_status(connection) == 0x0000
    _release(connection)
    _assert_stored_whole(server, dataset, data)
    assert hashed_at_store == []


# PS3.8 9.3.1: a PDU header may reach the archive in pieces (TCP is a byte stream); what the
# socket holds is read, and the rest of the header is waited for.
def test_pdu_header_arriving_in_two_pieces_is_read_whole(
    server: RunningServer, hashed_at_store: list[Path],
) -> None:
    dataset = make_dataset(instance=9, rows=ROWS, columns=ROWS)
    data = _data_set_bytes(dataset)
    connection = associate(server, CT_IMAGE_STORAGE)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.sendall(p_data(_store_command(dataset), command=True))
    first = pdu(0x04, _pdv(data[:40000], last=False))
    last = pdu(0x04, _pdv(data[40000:], last=True))
    connection.sendall(first + last[:3])
    time.sleep(0.2)  # not a wait for readiness: lets the archive read the half header alone
    connection.sendall(last[3:])
    assert _read_response_status(connection) == 0x0000
    _release(connection)
    _assert_stored_whole(server, dataset, data)
    assert hashed_at_store == []


# PS3.8 9.3.5: the command set and the first data set fragment may share a PDU. pynetdicom
# decodes that one (the file does not exist until the command is decoded); the fast path takes
# the rest over, and its hash still covers every byte of the file, what pynetdicom wrote too.
def test_command_and_first_fragment_in_one_pdu_are_hashed_with_the_rest(
    server: RunningServer, hashed_at_store: list[Path],
) -> None:
    dataset = make_dataset(instance=11, rows=ROWS, columns=ROWS)
    data = _data_set_bytes(dataset)
    connection = associate(server, CT_IMAGE_STORAGE)
    connection.sendall(pdu(0x04, _pdv(_store_command(dataset), last=True, command=True)
                           + _pdv(data[:30000], last=False)))
    connection.sendall(pdu(0x04, _pdv(data[30000:90000], last=False)))
    connection.sendall(pdu(0x04, _pdv(data[90000:], last=True)))
    assert _read_response_status(connection) == 0x0000
    _release(connection)
    _assert_stored_whole(server, dataset, data)
    assert hashed_at_store == []


# PS3.8 9.3.8 (A-ABORT): an abort in the middle of a data set ends the association; the partial
# file the fast path was writing is removed and nothing is indexed.
def test_abort_in_mid_data_set_removes_the_partial_file(
    server: RunningServer, incoming: Path,
) -> None:
    dataset = make_dataset(instance=21, rows=ROWS, columns=ROWS)
    data = _data_set_bytes(dataset)
    connection = _begin_store(server, dataset, data)
    connection.sendall(pdu(0x04, _pdv(data[50000:90000], last=False)))
    connection.sendall(pdu(A_ABORT, b"\x00\x00\x00\x00"))
    read_until_closed(connection)
    _assert_left_nothing(server, dataset, incoming)


# PS3.8 9.1.4 (transport closed): a peer that closes in the middle of a PDV leaves no partial
# file and no row either.
def test_connection_closed_in_mid_pdv_removes_the_partial_file(
    server: RunningServer, incoming: Path,
) -> None:
    dataset = make_dataset(instance=22, rows=ROWS, columns=ROWS)
    data = _data_set_bytes(dataset)
    connection = _begin_store(server, dataset, data)
    whole = pdu(0x04, _pdv(data[50000:], last=True))
    connection.sendall(whole[:len(whole) // 2])
    connection.close()
    _assert_left_nothing(server, dataset, incoming)


# PS3.8 Annex E: a data set fragment on a presentation context other than its command's is
# not the fast path's to judge; it goes pynetdicom's way, exactly as before the fast path.
def test_data_set_fragment_on_another_context_is_left_to_pynetdicom(
    server: RunningServer, hashed_at_store: list[Path],
) -> None:
    dataset = make_dataset(instance=31, rows=ROWS, columns=ROWS)
    data = _data_set_bytes(dataset)
    status = _store_raw(server, dataset, [pdu(0x04, _pdv(data[:40000], last=False)),
                                          pdu(0x04, _pdv(data[40000:], last=True, context_id=3))])
    assert status == 0x0000  # pynetdicom took the fragment; so the data set is whole
    _assert_stored_whole(server, dataset, data)
    assert len(hashed_at_store) == 1
