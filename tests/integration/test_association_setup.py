"""Association set-up remembered (dimse/pynetdicom_internals/handshakes.py): a request the
server has seen before is answered exactly as the first time, and every check made per
association (AE titles, the association limit, user identity) still runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_role
from pynetdicom.pdu_primitives import (
    AsynchronousOperationsWindowNegotiation,
    UserIdentityNegotiation,
)

from pacs.config import Peer
from pacs.dimse.pynetdicom_internals import remembered_counts
from pacs.dimse.server import RunningServer
from tests.dcmtk import run_tool
from tests.factory import CT_IMAGE_STORAGE
from tests.integration.move_support import LAYOUT, get, identifier, populate
from tests.integration.raw_peer import associate_request, connect, pdu, wait_idle

VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
RELEASE_RQ = pdu(0x05, b"\x00" * 4)


def _answer(connection: object, request: bytes) -> bytes:
    """Send an A-ASSOCIATE-RQ on a raw connection; the PDU that answers it."""
    connection.sendall(request)  # type: ignore[attr-defined]
    received = b""
    while len(received) < 6 or len(received) < 6 + int.from_bytes(received[2:6], "big"):
        chunk = connection.recv(65536)  # type: ignore[attr-defined]
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


def _associate_and_release(server: RunningServer, request: bytes) -> bytes:
    connection = connect(server)
    try:
        answer = _answer(connection, request)
        if answer[0] == 0x02:
            connection.sendall(RELEASE_RQ)
            assert connection.recv(16)[:1] == b"\x06"  # A-RELEASE-RP
    finally:
        connection.close()
    return answer


def _getscu(server: RunningServer, folder: Path) -> str:
    host, port = server.address
    folder.mkdir(parents=True)
    result = run_tool("getscu", ["-v", "-aet", "SETUPGET", "-aec", "MINIPACS", "-S", "+B",
                                 "-od", str(folder), "-k", "QueryRetrieveLevel=STUDY",
                                 "-k", f"StudyInstanceUID={LAYOUT.study_s1}", host, str(port)],
                      timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


# PS3.7 D.3.3.4: getscu's ~120 storage classes with SCP role selection, proposed again byte
# for byte, are accepted with the SCP role again: the study's C-STOREs come back both times.
def test_getscu_proposal_repeated_is_accepted_with_its_roles_again(
    server: RunningServer, tmp_path: Path,
) -> None:
    populate(server.services, tmp_path / "in")
    _getscu(server, tmp_path / "first")
    before = remembered_counts()
    output = _getscu(server, tmp_path / "second")
    after = remembered_counts()
    assert "Number of Completed Suboperations : 5" in output, output
    assert len(list((tmp_path / "second").iterdir())) == 5
    assert after["decoded"] > before["decoded"]
    assert after["negotiated"] > before["negotiated"]
    assert after["encoded"] > before["encoded"]


# PS3.7 D.3.3.4: the same contexts proposed without role selection, after a proposal with it
# was accepted, get no SCP role: every C-STORE sub-operation fails (0xA702).
def test_same_contexts_without_role_selection_get_no_scp_role(
    server: RunningServer, tmp_path: Path,
) -> None:
    populate(server.services, tmp_path / "in")
    study = identifier("STUDY", StudyInstanceUID=LAYOUT.study_s1)
    contexts = {CT_IMAGE_STORAGE: (ExplicitVRLittleEndian,)}
    with_roles, _ = get(server, study, contexts)
    without_roles, received = get(server, study, contexts, roles=False)
    assert with_roles[-1].status == 0x0000
    assert (without_roles[-1].status, without_roles[-1].failed) == (0xA702, 5)
    assert received == []


# PS3.8 9.3.4: with every slot taken, a request answered before from a remembered proposal is
# rejected all the same: transient, service provider (presentation), local limit exceeded.
def test_remembered_request_over_the_association_limit_is_rejected(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(max_associations=1)
    request = associate_request(VERIFICATION, calling="LIMITED")
    assert _associate_and_release(server, request)[0] == 0x02
    assert wait_idle(server)  # its slot is free again
    holding = connect(server)
    try:
        assert _answer(holding, request)[0] == 0x02
        refused = _associate_and_release(server, request)
    finally:
        holding.close()
    assert (refused[0], refused[7], refused[8], refused[9]) == (0x03, 0x02, 0x03, 0x02)


# PS3.8 9.3.4: an unknown calling AE title is rejected (permanent, service user, reason 3)
# even right after the same proposal from a known one was accepted.
def test_unknown_caller_after_a_known_one_with_the_same_proposal_is_rejected(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(peers=(Peer("VIEWER"),), unknown_callers="reject")
    for _ in range(2):
        assert _associate_and_release(
            server, associate_request(VERIFICATION, calling="VIEWER"))[0] == 0x02
    refused = _associate_and_release(server, associate_request(VERIFICATION, calling="STRANGER"))
    assert (refused[0], refused[7], refused[8], refused[9]) == (0x03, 0x01, 0x01, 0x03)


# PS3.8 9.3.3: the A-ASSOCIATE-AC echoes the request's called and calling AE titles; a
# remembered answer is that of the caller in hand, not of the first one.
def test_remembered_answer_echoes_each_callers_ae_title(server: RunningServer) -> None:
    first = _associate_and_release(server, associate_request(VERIFICATION, calling="FIRSTAE"))
    again = _associate_and_release(server, associate_request(VERIFICATION, calling="FIRSTAE"))
    other = _associate_and_release(server, associate_request(VERIFICATION, calling="OTHERAE"))
    assert again == first
    assert other[26:42] == b"OTHERAE".ljust(16)
    assert other[:26] + other[42:] == first[:26] + first[42:]


# PS3.8 D.1 (Maximum Length): each server announces its own maximum PDU length, even to a
# request another server has answered before.
def test_each_server_announces_its_own_maximum_pdu_to_a_repeated_request(
    server_factory: Callable[..., RunningServer],
) -> None:
    for max_pdu in (32768, 65536):
        server = server_factory(max_pdu=max_pdu)
        for _ in range(2):
            ae = AE(ae_title="PDUSCU")
            ae.add_requested_context(VERIFICATION)
            association = ae.associate(*server.address, ae_title="MINIPACS")
            assert association.is_established
            assert association.acceptor.maximum_length == max_pdu
            association.release()


# PS3.7 D.3.3.3: an Asynchronous Operations Window proposed again is answered again.
def test_asynchronous_operations_window_is_answered_on_a_repeated_request(
    server: RunningServer,
) -> None:
    answers = []
    for _ in range(2):
        ae = AE(ae_title="ASYNCSCU")
        ae.add_requested_context(VERIFICATION)
        window = AsynchronousOperationsWindowNegotiation()
        window.maximum_number_operations_invoked = 5
        window.maximum_number_operations_performed = 5
        association = ae.associate(*server.address, ae_title="MINIPACS", ext_neg=[window])
        assert association.is_established
        answers.append(association.acceptor.asynchronous_operations)
        association.release()
    assert answers == [(1, 1), (1, 1)]


# PS3.7 D.3.3.7: a request with User Identity is decoded and checked afresh each time, never
# remembered.
def test_request_with_user_identity_is_not_remembered(server: RunningServer) -> None:
    before = remembered_counts()
    for _ in range(2):
        ae = AE(ae_title="USERSCU")
        ae.add_requested_context(VERIFICATION)
        identity = UserIdentityNegotiation()
        identity.user_identity_type = 2
        identity.primary_field = b"alice"
        identity.secondary_field = b"secret"
        association = ae.associate(*server.address, ae_title="MINIPACS", ext_neg=[identity])
        assert association.is_established
        association.release()
    assert remembered_counts()["decoded"] == before["decoded"]


# PS3.7 D.3.3.4 with the SCU role too: a role selection item proposed again is answered with
# the same roles (we are SCP and may be SCU of a storage class).
def test_role_selection_answer_is_the_same_on_a_repeated_request(server: RunningServer) -> None:
    answers = []
    for _ in range(2):
        ae = AE(ae_title="ROLESCU")
        ae.add_requested_context(STUDY_ROOT_GET)
        ae.add_requested_context(CT_IMAGE_STORAGE)
        role = build_role(CT_IMAGE_STORAGE, scu_role=True, scp_role=True)
        association = ae.associate(*server.address, ae_title="MINIPACS", ext_neg=[role])
        assert association.is_established
        context = next(cx for cx in association.accepted_contexts
                       if cx.abstract_syntax == CT_IMAGE_STORAGE)
        answers.append((context.as_scu, context.as_scp))
        association.release()
    assert answers == [(True, True), (True, True)]
