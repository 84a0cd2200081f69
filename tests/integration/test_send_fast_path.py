"""The send fast path (issue #12): C-STORE sub-operations, C-MOVE/C-GET responses and C-FIND
Pending responses written straight to the socket. What a peer sees must be what the standard
asks for at any maximum PDU length the peer announces (PS3.8 9.3.5, D.1; Annex E), the data sets
byte for byte as stored, C-CANCEL still honoured between responses, and TLS unchanged.

Real clients over loopback: DCMTK movescu/getscu/findscu at -pdu 4096, 16384 and their default,
a raw-socket peer that reads the PDUs themselves, pynetdicom's SCU for C-CANCEL.
"""

from __future__ import annotations

import re
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import build_context

from pacs.archive.encoding import read_layout
from pacs.config import RemoteAE
from pacs.dimse.pynetdicom_internals import sending
from pacs.dimse.pynetdicom_internals.commands import encode_command
from pacs.dimse.pynetdicom_internals.sending import pdu_parts
from pacs.dimse.server import RunningServer
from pacs.model.levels import STUDY_ROOT_FIND, STUDY_ROOT_GET
from pacs.services.context import Services
from tests.dcmtk import run_tool
from tests.factory import CT_IMAGE_STORAGE, make_dataset
from tests.integration.find_support import find, module_server, query, series_uid, study_uid
from tests.integration.move_support import (
    LAYOUT,
    StoreSCP,
    assert_same_instance,
    ingest,
    populate,
    stored_data_set,
)
from tests.integration.raw_peer import APPLICATION_CONTEXT, command_set, connect, p_data
from tests.integration.test_find_streaming import BIG
from tests.integration.test_find_streaming import populate as populate_bulk
from tests.integration.test_security import _tls_server, certificates

__all__ = ["certificates"]  # a fixture, imported for the TLS test

# The maximum PDU lengths the DCMTK clients announce: the smallest DCMTK allows, its default,
# and none given (the tool's own default).
PDU_SIZES = {"pdu-4096": ["-pdu", "4096"], "pdu-16384": ["-pdu", "16384"], "default": []}
BIG_ROWS = 256  # 256 x 256 x 2 bytes: a data set of ~128 KiB, dozens of 4 KiB PDUs
BIG_INSTANCE = 1


def _populate_with_big(services: Services, folder: Path) -> str:
    """The LAYOUT archive plus one large image in study S1; the large one's UID."""
    populate(services, folder)
    big = make_dataset(patient_id="P1", study="S1", series="BIG", instance=BIG_INSTANCE,
                       rows=BIG_ROWS, columns=BIG_ROWS)
    return ingest(services, [big], folder)[0]


S1_INSTANCES = 6  # LAYOUT's five of study S1, and the large one


@dataclass
class BigServer:
    """A running server holding the LAYOUT archive plus the large image, and that one's UID."""

    server: RunningServer
    big: str


@pytest.fixture
def big_server(server_factory: Callable[..., RunningServer], tmp_path: Path) -> BigServer:
    """A server on each backend holding the LAYOUT archive and the large image."""
    server = server_factory()
    return BigServer(server, _populate_with_big(server.services, tmp_path / "in"))


@pytest.fixture
def fast_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of PDU bytes of each message the fast path wrote (observed, not replaced)."""
    written: list[int] = []
    write_all = sending._write_all

    def observed(sock: Any, parts: Any) -> None:
        write_all(sock, parts)
        written.append(sum(len(part) for part in parts))

    monkeypatch.setattr(sending, "_write_all", observed)
    return written


# --- PDUs as built (PS3.8 9.3.5, Annex E) ---------------------------------------------------------

def _pdus(parts: list[bytes | memoryview]) -> list[list[tuple[int, int, bytes]]]:
    """Each PDU of the joined parts as its PDVs: (context ID, control header, value)."""
    stream, pdus, offset = b"".join(bytes(part) for part in parts), [], 0
    while offset < len(stream):
        kind, _, length = struct.unpack(">BBI", stream[offset:offset + 6])
        assert kind == 0x04
        pdus.append(_pdvs(stream[offset + 6:offset + 6 + length]))
        offset += 6 + length
    return pdus


def _pdvs(body: bytes) -> list[tuple[int, int, bytes]]:
    found, offset = [], 0
    while offset < len(body):
        (length,) = struct.unpack(">I", body[offset:offset + 4])
        found.append((body[offset + 4], body[offset + 5], body[offset + 6:offset + 4 + length]))
        offset += 4 + length
    return found


# PS3.8 D.1: no P-DATA-TF PDU is longer than the peer's maximum length; PS3.8 E.2: command
# fragments first, the last of each marked, the data set cut in order.
@pytest.mark.parametrize("max_pdu", [4096, 16384, 4097])
def test_pdus_respect_the_maximum_length_and_keep_fragments_in_order(max_pdu: int) -> None:
    command = encode_command({"CommandField": 0x0001, "MessageID": 1})
    data = bytes(range(256)) * 200
    pdus = _pdus(pdu_parts(3, command, memoryview(data), max_pdu))
    assert all(sum(6 + len(value) for _, _, value in pdu) <= max_pdu for pdu in pdus)
    pdvs = [pdv for pdu in pdus for pdv in pdu]
    assert pdvs[0] == (3, 0x03, command)
    assert [control for _, control, _ in pdvs[1:]] == [0x00] * (len(pdvs) - 2) + [0x02]
    assert b"".join(value for _, _, value in pdvs[1:]) == data
    assert all(len(value) % 2 == 0 for _, _, value in pdvs)


# PS3.8 E.2: the command set and a small data set each in a PDU of its own (PS3.8 9.3.5 would
# allow one PDU with two PDVs; gdcmscu 3.0.21 misreads that).
def test_command_and_small_data_set_go_in_pdus_of_their_own() -> None:
    command = encode_command({"CommandField": 0x8020, "MessageIDBeingRespondedTo": 7})
    assert _pdus(pdu_parts(1, command, b"\x08\x00\x52\x00", 16384)) == [
        [(1, 0x03, command)], [(1, 0x02, b"\x08\x00\x52\x00")]]


# --- C-MOVE, C-GET, C-FIND with DCMTK at each maximum PDU -----------------------------------------

# PS3.4 C.4.2: every instance reaches the destination byte for byte as stored, whatever the
# maximum PDU the destination and the requester announce; the counts add up.
@pytest.mark.parametrize("pdu", list(PDU_SIZES))
def test_movescu_receives_every_instance_as_stored_at_each_maximum_pdu(
    pdu: str, server_factory: Callable[..., RunningServer],
    storescp: Callable[..., StoreSCP], tmp_path: Path,
) -> None:
    destination = storescp(*PDU_SIZES[pdu])
    server = server_factory(remotes=(RemoteAE("DEST", "127.0.0.1", destination.port),))
    big = _populate_with_big(server.services, tmp_path / "in")
    host, port = server.address
    result = run_tool("movescu", ["-v", "-aet", "MOVESCU", "-aec", "MINIPACS", "-aem", "DEST",
                                  "-S", *PDU_SIZES[pdu], "-k", "QueryRetrieveLevel=STUDY",
                                  "-k", f"StudyInstanceUID={LAYOUT.study_s1}", host, str(port)],
                      timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Received Final Move Response (Success)" in output, output
    assert len(re.findall(r"Received Move Response \d+ \(Pending\)", output)) == S1_INSTANCES - 1
    received = destination.received()
    assert len(received) == S1_INSTANCES
    for uid, data_set in received.items():
        assert data_set == stored_data_set(server.services, uid)
    assert len(received[big]) > 20 * 4096  # larger than several PDUs, and intact


# PS3.4 C.4.3: C-GET sends the C-STOREs and its Pending responses on one association; every
# instance arrives as stored at each maximum PDU.
@pytest.mark.parametrize("pdu", list(PDU_SIZES))
def test_getscu_receives_every_instance_as_stored_at_each_maximum_pdu(
    pdu: str, big_server: BigServer, tmp_path: Path,
) -> None:
    server = big_server.server
    host, port = server.address
    folder = tmp_path / "out"
    folder.mkdir()
    result = run_tool("getscu", ["-v", "-aet", "GETSCU", "-aec", "MINIPACS", "-S", "+B",
                                 *PDU_SIZES[pdu], "-od", str(folder),
                                 "-k", "QueryRetrieveLevel=STUDY",
                                 "-k", f"StudyInstanceUID={LAYOUT.study_s1}", host, str(port)],
                      timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Received C-GET Response (Success)" in output, output
    assert f"Number of Completed Suboperations : {S1_INSTANCES}" in output, output
    received = list(folder.iterdir())
    assert len(received) == S1_INSTANCES
    for path in received:
        assert_same_instance(server.services, path)


# PS3.4 C.4.1.3.1: one Pending response per match, then Success, at each maximum PDU.
@pytest.mark.parametrize("pdu", list(PDU_SIZES))
def test_findscu_receives_every_match_at_each_maximum_pdu(
    pdu: str, big_server: BigServer,
) -> None:
    host, port = big_server.server.address
    result = run_tool("findscu", ["-v", "-aec", "MINIPACS", "-S", *PDU_SIZES[pdu],
                                  "-k", "QueryRetrieveLevel=IMAGE", "-k", "SOPInstanceUID",
                                  "-k", f"StudyInstanceUID={LAYOUT.study_s1}",
                                  "-k", "SeriesInstanceUID", host, str(port)], check=True)
    output = result.stdout + result.stderr
    assert "Received Final Find Response (Success)" in output, output
    assert len(re.findall(r"Find Response: \d+ \(Pending\)", output)) == S1_INSTANCES


# --- what is on the wire: a raw peer --------------------------------------------------------------

@dataclass
class Message:
    """One DIMSE message as received: its command, data set bytes, and the PDUs it came in."""

    command: Dataset
    data: bytes
    pdus: list[list[tuple[int, int, bytes]]]

    @property
    def field(self) -> int:
        return int(self.command.CommandField)


class RawPeer:
    """A DICOM peer on a bare socket: sends PDUs it builds, reads PDUs as they come."""

    def __init__(self, server: RunningServer, contexts: list[tuple[str, str]],
                 scp_roles: tuple[str, ...] = (), max_pdu: int = 16384):
        self.max_pdu = max_pdu
        self.connection = connect(server)
        self.connection.sendall(self._associate_request(contexts, scp_roles))
        kind, body = self.read_pdu()
        assert kind == 0x02, f"association not accepted: PDU type {kind:#04x}"
        accepted = A_ASSOCIATE_AC()
        accepted.decode(struct.pack(">BBI", kind, 0, len(body)) + body)
        results = accepted.to_primitive().presentation_context_definition_results_list
        assert [context.result for context in results] == [0] * len(contexts)

    def _associate_request(self, contexts: list[tuple[str, str]],
                           scp_roles: tuple[str, ...]) -> bytes:
        primitive = A_ASSOCIATE()
        primitive.application_context_name = APPLICATION_CONTEXT
        primitive.calling_ae_title = "RAWPEER"
        primitive.called_ae_title = "MINIPACS"
        proposed = []
        for number, (sop_class, syntax) in enumerate(contexts):
            context = build_context(sop_class, [syntax])
            context.context_id = 2 * number + 1
            proposed.append(context)
        primitive.presentation_context_definition_list = proposed
        maximum = MaximumLengthNotification()
        maximum.maximum_length_received = self.max_pdu
        implementation = ImplementationClassUIDNotification()
        implementation.implementation_class_uid = "1.2.826.0.1.3680043.10.1071.98"
        roles = []
        for sop_class in scp_roles:
            role = SCP_SCU_RoleSelectionNegotiation()
            role.sop_class_uid, role.scu_role, role.scp_role = sop_class, False, True
            roles.append(role)
        primitive.user_information = [maximum, implementation, *roles]
        request = A_ASSOCIATE_RQ()
        request.from_primitive(primitive)
        return bytes(request.encode())

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.connection.recv(count - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data

    def read_pdu(self) -> tuple[int, bytes]:
        kind, _, length = struct.unpack(">BBI", self._read(6))
        return kind, self._read(length)

    def read_message(self) -> Message:
        """PDUs until one whole message (command, and its data set when it has one)."""
        pdus: list[list[tuple[int, int, bytes]]] = []
        command, data, data_expected = b"", b"", None
        while True:
            kind, body = self.read_pdu()
            assert kind == 0x04, f"PDU type {kind:#04x} instead of P-DATA-TF"
            assert len(body) <= self.max_pdu
            pdus.append(_pdvs(body))
            for _, control, value in pdus[-1]:
                if control & 0x01:
                    command += value
                else:
                    data += value
                if control == 0x03:
                    parsed = read_dataset(BytesIO(command), True, True)
                    data_expected = int(parsed.CommandDataSetType) != 0x0101
                    if not data_expected:
                        return Message(parsed, b"", pdus)
                elif control == 0x02:
                    return Message(read_dataset(BytesIO(command), True, True), data, pdus)

    def send(self, context_id: int, command: bytes, data: bytes = b"") -> None:
        self.connection.sendall(p_data(command, True, context_id=context_id))
        if data:
            self.connection.sendall(p_data(data, False, context_id=context_id))

    def release(self) -> None:
        self.connection.sendall(struct.pack(">BBI", 0x05, 0, 4) + b"\0\0\0\0")
        assert self.read_pdu()[0] == 0x06
        self.connection.close()


def _implicit(dataset: Dataset) -> bytes:
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, True
    write_dataset(encoded, dataset)
    return bytes(encoded.getvalue())


# PS3.8 9.3.5 and D.1 on the wire: each Pending C-FIND response arrives as a command PDU and an
# identifier PDU, within the maximum length we announced, each written by the fast path.
def test_each_pending_find_response_is_sent_by_the_fast_path(
    server_factory: Callable[..., RunningServer], tmp_path: Path, fast_writes: list[int],
) -> None:
    server = server_factory()
    populate(server.services, tmp_path / "in")
    peer = RawPeer(server, [(STUDY_ROOT_FIND, ImplicitVRLittleEndian)])
    identifier = query(QueryRetrieveLevel="IMAGE", StudyInstanceUID=LAYOUT.study_s1,
                       SeriesInstanceUID="", SOPInstanceUID="")
    peer.send(1, command_set(AffectedSOPClassUID=STUDY_ROOT_FIND, CommandField=0x0020,
                             MessageID=9, Priority=0, CommandDataSetType=0x0001),
              _implicit(identifier))
    pending = []
    while (message := peer.read_message()).command.Status in (0xFF00, 0xFF01):
        pending.append(message)
    assert int(message.command.Status) == 0x0000
    assert len(pending) == 5
    for response in pending:
        assert response.field == 0x8020 and response.command.MessageIDBeingRespondedTo == 9
        assert [[control for _, control, _ in pdu] for pdu in response.pdus] == [[0x03], [0x02]]
        found = read_dataset(BytesIO(response.data), True, True)
        assert found.StudyInstanceUID == LAYOUT.study_s1
    peer.release()
    assert len(fast_writes) == len(pending) + 1  # the final response goes the fast way too


# PS3.4 C.4.3 and PS3.8 D.1 on the wire: a C-GET's C-STORE requests stay within the maximum
# length the requester announced (4096 bytes: the large data set spans dozens of PDUs), carry
# the stored data set byte for byte, and its Pending and final responses follow in order.
def test_get_sub_operations_on_the_wire_respect_a_small_maximum_pdu(
    big_server: BigServer, fast_writes: list[int],
) -> None:
    server, big = big_server.server, big_server.big
    peer = RawPeer(server, [(STUDY_ROOT_GET, ImplicitVRLittleEndian),
                            (CT_IMAGE_STORAGE, ExplicitVRLittleEndian)],
                   scp_roles=(CT_IMAGE_STORAGE,), max_pdu=4096)
    identifier = query(QueryRetrieveLevel="STUDY", StudyInstanceUID=LAYOUT.study_s1)
    peer.send(1, command_set(AffectedSOPClassUID=STUDY_ROOT_GET, CommandField=0x0010,
                             MessageID=5, Priority=0, CommandDataSetType=0x0001),
              _implicit(identifier))
    stored, statuses = {}, []
    while True:
        message = peer.read_message()
        if message.field == 0x0001:  # C-STORE-RQ
            uid = str(message.command.AffectedSOPInstanceUID)
            stored[uid] = message
            peer.send(3, command_set(AffectedSOPClassUID=CT_IMAGE_STORAGE, CommandField=0x8001,
                                     MessageIDBeingRespondedTo=message.command.MessageID,
                                     CommandDataSetType=0x0101, Status=0x0000,
                                     AffectedSOPInstanceUID=uid))
            continue
        assert message.field == 0x8010 and message.command.MessageIDBeingRespondedTo == 5
        statuses.append(int(message.command.Status))
        if statuses[-1] != 0xFF00:
            break
    assert statuses == [0xFF00] * (S1_INSTANCES - 1) + [0x0000]
    assert len(stored) == S1_INSTANCES
    for uid, message in stored.items():
        assert message.data == stored_data_set(server.services, uid)
    assert len(stored[big].pdus) > 20
    peer.release()
    # Every C-STORE request and every response, Pending and final, went the fast way.
    assert len(fast_writes) == S1_INSTANCES + len(statuses)


# --- C-CANCEL and TLS -----------------------------------------------------------------------------

find_server = module_server(populate_bulk)


def _bulk_query() -> Dataset:
    return query(QueryRetrieveLevel="IMAGE", InstanceNumber="",
                 StudyInstanceUID=study_uid("PAT-BULK", "BULK"),
                 SeriesInstanceUID=series_uid("PAT-BULK", "BULK", "BIG"))


# PS3.4 C.4.1.3.1: a C-CANCEL sent while Pending responses stream is read between them and
# ends the C-FIND with 0xFE00 (pynetdicom's SCU).
def test_cancel_mid_find_is_honoured(find_server: RunningServer) -> None:
    result = find(find_server, _bulk_query(), cancel_after=2)
    assert result.status == 0xFE00
    assert 2 <= len(result.identifiers) < BIG


# PS3.4 C.4.1.3.1 with DCMTK at its smallest maximum PDU: findscu --cancel after 3 responses.
def test_findscu_cancel_mid_find_is_honoured_at_a_small_maximum_pdu(
    find_server: RunningServer,
) -> None:
    host, port = find_server.address
    result = run_tool("findscu", ["-v", "-aec", "MINIPACS", "-S", "-pdu", "4096", "--cancel",
                                  "3", "-k", "QueryRetrieveLevel=IMAGE", "-k", "InstanceNumber",
                                  "-k", f"StudyInstanceUID={study_uid('PAT-BULK', 'BULK')}",
                                  "-k", "SeriesInstanceUID="
                                  + series_uid("PAT-BULK", "BULK", "BIG"),
                                  host, str(port)], check=True)
    output = result.stdout + result.stderr
    final = re.search(r"Received Final Find Response \(([^)]*)\)", output)
    assert final is not None and "Cancel" in final.group(1), output
    assert 3 <= len(re.findall(r"Find Response: \d+ \(Pending\)", output)) < BIG


# PS3.15 B.9: over TLS the sub-operations of a C-GET arrive as stored, with their counts (TLS
# keeps pynetdicom's sending thread: an OpenSSL connection must not be written and read by two
# threads at once). pynetdicom's SCU: DCMTK 3.6.7's getscu has no TLS.
def test_tls_get_receives_every_instance_as_stored(
    server_factory: Callable[..., RunningServer], certificates: dict[str, Path],
    tmp_path: Path, fast_writes: list[int],
) -> None:
    server = _tls_server(server_factory, certificates)
    _populate_with_big(server.services, tmp_path / "in")
    tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certificates["ca.pem"]))
    tls.check_hostname = False
    tls.load_cert_chain(str(certificates["client.pem"]), str(certificates["client.key"]))
    received: dict[str, bytes] = {}

    def on_store(event: Any) -> int:
        path = Path(event.dataset_path)  # the server module makes pynetdicom receive to files
        received[str(event.request.AffectedSOPInstanceUID)] = (
            path.read_bytes()[read_layout(path).dataset_offset:])
        return 0x0000

    ae = AE(ae_title="TLSGETSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.maximum_pdu_size = 4096
    ae.add_requested_context(STUDY_ROOT_GET)
    ae.add_requested_context(CT_IMAGE_STORAGE, [ExplicitVRLittleEndian])
    host, port = server.tls_address or ("", 0)
    association = ae.associate(host, port, ae_title="MINIPACS", tls_args=(tls, None),
                               ext_neg=[build_role(CT_IMAGE_STORAGE, scp_role=True)],
                               evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert association.is_established
    try:
        statuses = [int(status.Status) for status, _ in association.send_c_get(
            query(QueryRetrieveLevel="STUDY", StudyInstanceUID=LAYOUT.study_s1),
            STUDY_ROOT_GET, msg_id=3)]
    finally:
        association.release()
    assert statuses == [0xFF00] * (S1_INSTANCES - 1) + [0x0000]
    assert len(received) == S1_INSTANCES
    for uid, data_set in received.items():
        assert data_set == stored_data_set(server.services, uid)
    assert fast_writes == []
