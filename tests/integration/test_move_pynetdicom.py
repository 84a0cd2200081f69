"""C-MOVE with a pynetdicom SCU, to in-process pynetdicom receivers and DCMTK storescp: every
Pending and final response, its counts and Failed SOP Instance UID List, on each backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts

import pacs.dimse.retrieve as retrieve_handlers
import pacs.services.suboperations as sub_operations
from pacs.config import Peer, RemoteAE
from pacs.dimse.server import RunningServer
from tests.factory import make_dataset
from tests.integration.move_support import (
    LAYOUT,
    PATIENT_ROOT,
    STUDY_S1,
    Receiver,
    StoreSCP,
    check_counts,
    identifier,
    ingest,
    move,
    moving_to,
    populate,
    stored_data_set,
)
from tests.postgres import free_port

Factory = Callable[..., RunningServer]



# PS3.4 C.4.2.3.1: a Pending response after each sub-operation with the four counts, then
# Success with the totals and no remaining count.
def test_move_pending_responses_count_every_sub_operation(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port)
    populate(server.services, tmp_path / "in")
    responses = move(server, STUDY_S1)
    assert [(r.status, r.remaining, r.completed, r.failed, r.warning) for r in responses] == [
        (0xFF00, 4, 1, 0, 0), (0xFF00, 3, 2, 0, 0), (0xFF00, 2, 3, 0, 0), (0xFF00, 1, 4, 0, 0),
        (0x0000, None, 5, 0, 0),
    ]
    assert responses[-1].failed_uids is None
    for item in destination.received:
        assert item.data_set == stored_data_set(server.services, item.sop_instance_uid)
        assert item.transfer_syntax == ExplicitVRLittleEndian


# PS3.7 9.1.1.1: the C-STORE sub-operations carry the Move Originator AE Title and Message ID.
def test_move_stores_carry_move_originator(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port)
    populate(server.services, tmp_path / "in")
    move(server, STUDY_S1, calling_ae="VIEWER1")
    assert {(r.move_originator_ae, r.move_originator_id) for r in destination.received} == {
        ("VIEWER1", 7)}


# PS3.4 C.4.2.1.5: a Move Destination not in the AE table is refused with 0xA801 and a comment.
def test_move_unknown_destination_is_a801(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port)
    populate(server.services, tmp_path / "in")
    [final] = move(server, STUDY_S1, destination="ELSEWHERE")
    assert final.status == 0xA801
    assert final.comment and "ELSEWHERE" in final.comment
    assert destination.associations == 0


# PS3.4 C.4.2.3.1: nothing matched is Success with zero sub-operations (no association opened).
def test_move_zero_matches_is_success_with_zero_sub_operations(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port)
    populate(server.services, tmp_path / "in")
    [final] = move(server, identifier("STUDY", StudyInstanceUID="1.2.3.4.5"))
    assert (final.status, final.completed, final.failed, final.warning) == (0x0000, 0, 0, 0)
    assert destination.associations == 0


# DESIGN rule 7, PS3.4 C.4.2.1.4.2: a file gone from the archive is one failed sub-operation,
# named in the Failed SOP Instance UID List; the others are sent.
def test_move_file_deleted_behind_the_index_is_b000_with_its_uid(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port)
    populate(server.services, tmp_path / "in")
    missing = LAYOUT.images_se1[1]
    record = server.services.index.get_instance(missing)
    assert record is not None
    server.services.archive.absolute(record.file_path).unlink()
    responses = move(server, STUDY_S1)
    check_counts(responses, 5)
    final = responses[-1]
    assert (final.status, final.completed, final.failed, final.warning) == (0xB000, 4, 1, 0)
    assert final.failed_uids == [missing]
    assert missing not in {r.sop_instance_uid for r in destination.received}


# PS3.4 C.4.2.1.5: a destination that refuses the association fails every sub-operation
# (0xA702, all UIDs listed); the server stays up and answers the next request.
@pytest.mark.parametrize("refusal", ["rejects", "not-listening"])
def test_move_refused_destination_fails_every_sub_operation(
    refusal: str, server_factory: Factory, storescp: Callable[..., StoreSCP],
    receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    port = storescp("--refuse").port if refusal == "rejects" else free_port()
    working = receiver(ae_title="OTHER")
    server = server_factory(remotes=(RemoteAE("DEST", "127.0.0.1", port),
                                     RemoteAE("OTHER", "127.0.0.1", working.port)))
    uids = populate(server.services, tmp_path / "in")
    [final] = move(server, STUDY_S1)
    assert (final.status, final.completed, final.failed, final.warning) == (0xA702, 0, 5, 0)
    assert final.failed_uids is not None and sorted(final.failed_uids) == sorted(uids[:5])
    assert move(server, STUDY_S1, destination="OTHER")[-1].status == 0x0000


# PS3.4 C.4.2.1.5: a destination that aborts mid-transfer fails the sub-operation in flight and
# those left; the final status still comes, with exact counts, and the server stays up.
def test_move_destination_aborting_mid_transfer_fails_the_rest(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver(abort_after=2)
    server = moving_to(server_factory, destination.port)
    uids = populate(server.services, tmp_path / "in")
    responses = move(server, STUDY_S1)
    check_counts(responses, 5)
    final = responses[-1]
    assert (final.status, final.completed, final.failed, final.warning) == (0xB000, 2, 3, 0)
    assert final.failed_uids == uids[2:5]
    destination.abort_after = None
    assert move(server, STUDY_S1)[-1].status == 0x0000


# PS3.4 C.4.2.2: C-CANCEL stops between sub-operations; 0xFE00 carries the counts so far,
# the remaining ones and the Failed SOP Instance UID List.
def test_move_cancel_stops_between_sub_operations_with_fe00(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver(delay=0.05)
    server = moving_to(server_factory, destination.port)
    datasets = [make_dataset(patient_id="PC", study="SC", instance=i) for i in range(1, 21)]
    ingest(server.services, datasets, tmp_path / "in")
    query = identifier("STUDY", StudyInstanceUID=datasets[0].StudyInstanceUID)
    responses = move(server, query, cancel_after=2)
    check_counts(responses, 20)
    final = responses[-1]
    assert final.status == 0xFE00
    assert final.remaining is not None and final.remaining > 0
    assert final.completed is not None and final.completed >= 2
    assert final.failed_uids == []
    assert len(destination.received) == final.completed


# Issue #4: a compressed instance goes decompressed to a destination that accepts only
# Explicit VR Little Endian, and counts as a warning sub-operation.
def test_move_compressed_instance_to_explicit_only_destination_is_decompressed_warning(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver(transfer_syntaxes=(ExplicitVRLittleEndian,))
    server = moving_to(server_factory, destination.port)
    original = make_dataset(patient_id="PZ", study="SZ", BitsStored=16, HighBit=15)
    compressed = make_dataset(patient_id="PZ", study="SZ", BitsStored=16, HighBit=15)
    compressed.compress(RLELossless, generate_instance_uid=False)
    [uid] = ingest(server.services, [compressed], tmp_path / "in")
    responses = move(server, identifier("IMAGE", SOPInstanceUID=uid))
    final = responses[-1]
    assert (final.status, final.completed, final.failed, final.warning) == (0xB000, 0, 0, 1)
    assert final.failed_uids == []
    [item] = destination.received
    assert item.transfer_syntax == ExplicitVRLittleEndian
    received = pydicom.filereader.read_dataset(pydicom.filebase.DicomBytesIO(item.data_set),
                                               is_implicit_VR=False, is_little_endian=True)
    assert received.PixelData == original.PixelData
    assert received.SOPInstanceUID == uid


# Issue #4: an instance that cannot be converted for the destination is a failed one.
def test_move_unconvertible_instance_is_a_failed_sub_operation(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver(transfer_syntaxes=(ExplicitVRLittleEndian,))
    server = moving_to(server_factory, destination.port)
    good = make_dataset(patient_id="PB", study="SB", instance=1)
    broken = make_dataset(patient_id="PB", study="SB", instance=2, transfer_syntax=JPEG2000Lossless)
    broken.PixelData = encapsulate([b"\x00" * 64])
    broken["PixelData"].VR = "OB"
    broken["PixelData"].is_undefined_length = True
    uids = ingest(server.services, [good, broken], tmp_path / "in")
    final = move(server, identifier("STUDY", StudyInstanceUID=good.StudyInstanceUID))[-1]
    assert (final.status, final.completed, final.failed, final.warning) == (0xB000, 1, 1, 0)
    assert final.failed_uids == [uids[1]]


# PS3.8 9.3.2.2: more than 128 (SOP class, transfer syntax) pairs go over several associations.
def test_move_more_than_128_contexts_uses_several_associations(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port)
    classes = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts][:70]
    datasets = [
        make_dataset(patient_id="PM", study="SM", series=f"SE{n}", instance=k, sop_class=cls,
                     transfer_syntax=syntax)
        for n, cls in enumerate(classes)
        for k, syntax in enumerate((ExplicitVRLittleEndian, ImplicitVRLittleEndian), start=1)
    ]
    ingest(server.services, datasets, tmp_path / "in")
    responses = move(server, identifier("STUDY", StudyInstanceUID=datasets[0].StudyInstanceUID))
    check_counts(responses, 140)
    assert (responses[-1].status, responses[-1].completed) == (0x0000, 140)
    assert destination.associations == 2
    syntaxes = {r.sop_instance_uid: r.transfer_syntax for r in destination.received}
    assert syntaxes == {str(d.SOPInstanceUID): str(d.file_meta.TransferSyntaxUID)
                        for d in datasets}


# Pynetdicom would add a response of its own after ours: none may reach the peer, so the same
# association carries a C-ECHO and a second C-MOVE with exact answers.
def test_move_leaves_no_stray_response_on_the_association(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port)
    populate(server.services, tmp_path / "in")
    after: list[Any] = []

    def echo_then_move_again(association: Any) -> None:
        after.append(int(association.send_c_echo(msg_id=8).Status))
        after.append([int(s.Status) for s, _ in association.send_c_move(
            STUDY_S1, "DEST", "1.2.840.10008.5.1.4.1.2.2.2", msg_id=9)])

    move(server, STUDY_S1, then=echo_then_move_again)
    assert after == [0x0000, [0xFF00] * 4 + [0x0000]]


# PS3.4 C.4.2.2.1, C.2.2.2.2: identifier errors are 0xA900 with the Offending Element (every
# rule is in tests/test_retrieve.py; here two go over the wire, query.strict_hierarchy on:
# without it a list above is answered, see test_move_dcmtk.py).
@pytest.mark.parametrize("model, query, offending", [
    ("S", identifier("PATIENT", PatientID="P1"), 0x00080052),
    ("S", identifier("SERIES", StudyInstanceUID=["1.2.3", "1.2.4"], SeriesInstanceUID="1.2"),
     0x0020000D),
], ids=["patient-in-study-root", "list-above"])
def test_move_identifier_error_is_a900_with_offending_element(
    model: str, query: Any, offending: int, server_factory: Factory,
    receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port, strict_hierarchy=True)
    [final] = move(server, query, model=model)
    assert (final.status, final.offending) == (0xA900, [offending])
    assert final.comment


# PS3.7 C.5.4: with an allow-list, a caller without the move service is refused (0x0124)
# before any sub-operation.
def test_move_by_a_caller_not_allowed_to_move_is_0124(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port,
                 peers=(Peer("MOVESCU", None, frozenset({"echo", "find"})),))
    populate(server.services, tmp_path / "in")
    [final] = move(server, STUDY_S1)
    assert final.status == 0x0124
    assert destination.associations == 0


# Issue #4: reply_to_requester (off by default) sends to the requesting AE at its own address
# on an allow-listed port, though it is not in the AE table.
@pytest.mark.parametrize("enabled", [True, False])
def test_move_reply_to_requester_only_when_enabled(
    enabled: bool, server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    viewer = receiver(ae_title="VIEWER")
    server = server_factory(reply_to_requester=enabled, reply_ports=(free_port(), viewer.port))
    populate(server.services, tmp_path / "in")
    final = move(server, STUDY_S1, destination="VIEWER", calling_ae="VIEWER")[-1]
    if enabled:
        assert (final.status, final.completed) == (0x0000, 5)
        assert len(viewer.received) == 5
    else:
        assert final.status == 0xA801
        assert viewer.associations == 0


def test_move_patient_root_patient_level_sends_the_patient(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    # PS3.4 C.6.1: PATIENT level exists in Patient Root only; Patient ID selects all studies.
    destination = receiver()
    server = moving_to(server_factory, destination.port)
    populate(server.services, tmp_path / "in")
    responses = move(server, identifier("PATIENT", PatientID="P1"), model=PATIENT_ROOT)
    check_counts(responses, 6)
    assert (responses[-1].status, responses[-1].completed) == (0x0000, 6)


# DESIGN rule 1: an unexpected error in one sub-operation fails that instance only; the
# request ends with a proper final response, never pynetdicom's 0xC511.
def test_move_unexpected_error_in_one_sub_operation_fails_only_that_instance(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port)
    populate(server.services, tmp_path / "in")
    broken = LAYOUT.images_se1[2]
    real_read = sub_operations.read_instance

    def read_or_break(archive: Any, record: Any) -> Any:
        if record.sop_instance_uid == broken:
            raise ZeroDivisionError("unexpected")
        return real_read(archive, record)

    monkeypatch.setattr(sub_operations, "read_instance", read_or_break)
    final = move(server, STUDY_S1)[-1]
    assert (final.status, final.completed, final.failed, final.failed_uids) == (
        0xB000, 4, 1, [broken])


# DESIGN rule 1: an unexpected error before the sub-operations is 0xC000 with a comment.
def test_move_unexpected_error_before_sub_operations_is_c000(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port)

    def broken(*args: Any) -> Any:
        raise ZeroDivisionError("unexpected")

    monkeypatch.setattr(retrieve_handlers, "find_instances", broken)
    [final] = move(server, STUDY_S1)
    assert final.status == 0xC000
    assert final.comment


def _wait_for(condition: Callable[[], bool], within: float = 15) -> bool:
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


# PS3.4 C.4.2.3: the final response follows the last sub-operation's response, not the
# destination association's release. The destination here holds its A-RELEASE-RP until told:
# when the final response arrives, it has not been released (nor aborted after the ACSE
# timeout, 20 s), and the requester's association already serves its next request.
def test_move_final_response_does_not_wait_for_the_destination_release(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver(release_gate=threading.Event())
    server = moving_to(server_factory, destination.port, acse_timeout=20)
    populate(server.services, tmp_path / "in")
    seen_at_final: list[tuple[int, int]] = []

    def next_request(association: Any) -> None:
        seen_at_final.append((destination.connections_closed, destination.released))
        assert int(association.send_c_echo().Status) == 0x0000
        assert destination.connections_closed == 0

    responses = move(server, STUDY_S1, then=next_request)
    assert responses[-1].status == 0x0000 and responses[-1].completed == 5
    assert seen_at_final == [(0, 0)]
    assert destination.release_gate is not None
    destination.release_gate.set()
    assert _wait_for(lambda: destination.released == 1)  # then released, not aborted


# A destination that never answers A-RELEASE-RQ is aborted after the ACSE timeout (1 s here),
# in the background: the C-MOVE has long had its final response.
def test_move_destination_never_answering_release_is_aborted_after_the_acse_timeout(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver(release_gate=threading.Event())
    server = moving_to(server_factory, destination.port, acse_timeout=1)
    populate(server.services, tmp_path / "in")
    assert move(server, STUDY_S1)[-1].status == 0x0000
    assert _wait_for(lambda: destination.connections_closed == 1)
    assert destination.released == 0


# The network timeout (1 s here) is for a silent peer, not for a requester waiting while its
# C-MOVE runs (one sub-operation of 1.5 s, no Pending response in between): its association
# still serves the next request afterwards.
def test_move_longer_than_the_network_timeout_leaves_the_association_usable(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver(delay=1.5)
    server = moving_to(server_factory, destination.port, network_timeout=1)
    populate(server.services, tmp_path / "in")
    echoes: list[int] = []
    responses = move(server, identifier("STUDY", StudyInstanceUID=LAYOUT.study_s2),
                     then=lambda association: echoes.append(
                         int(association.send_c_echo().get("Status", -1))))
    assert [(r.status, r.completed) for r in responses] == [(0x0000, 1)]
    assert echoes == [0x0000]
