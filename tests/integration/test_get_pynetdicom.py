"""C-GET with a pynetdicom SCU on each index backend: every Pending and final response, role
selection, failures, cancel and conversion, with the C-STOREs on the requester's association."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from pacs.dimse.server import RunningServer
from tests.factory import CT_IMAGE_STORAGE, make_dataset
from tests.integration.move_support import (
    LAYOUT,
    STUDY_S1,
    check_counts,
    get,
    identifier,
    ingest,
    populate,
    stored_data_set,
)

CT_EXPLICIT = {CT_IMAGE_STORAGE: (ExplicitVRLittleEndian,)}


# PS3.4 C.4.3.3.1: Pending responses with the four counts after each sub-operation, then
# Success; the data sets arrive as stored when the stored syntax was accepted.
def test_get_pending_responses_count_every_sub_operation(server: RunningServer,
                                                          tmp_path: Path) -> None:
    populate(server.services, tmp_path / "in")
    responses, received = get(server, STUDY_S1, CT_EXPLICIT)
    assert [(r.status, r.remaining, r.completed, r.failed, r.warning) for r in responses] == [
        (0xFF00, 4, 1, 0, 0), (0xFF00, 3, 2, 0, 0), (0xFF00, 2, 3, 0, 0), (0xFF00, 1, 4, 0, 0),
        (0x0000, None, 5, 0, 0),
    ]
    assert len(received) == 5
    for item in received:
        assert item.data_set == stored_data_set(server.services, item.sop_instance_uid)
        assert item.move_originator_ae is None


# PS3.7 D.3.3.4: without SCP role selection for the storage class, no C-STORE may go back on
# the association; each such sub-operation fails (0xA702 when all do).
def test_get_without_scp_role_selection_fails_every_sub_operation(
    server: RunningServer, tmp_path: Path
) -> None:
    uids = populate(server.services, tmp_path / "in")
    responses, received = get(server, STUDY_S1, CT_EXPLICIT, roles=False)
    final = responses[-1]
    assert (final.status, final.completed, final.failed, final.warning) == (0xA702, 0, 5, 0)
    assert final.failed_uids == uids[:5]
    assert received == []


# DESIGN rule 7: a file gone from the archive is one failed sub-operation with its UID.
def test_get_file_deleted_behind_the_index_is_b000_with_its_uid(
    server: RunningServer, tmp_path: Path
) -> None:
    populate(server.services, tmp_path / "in")
    missing = LAYOUT.images_se1[0]
    record = server.services.index.get_instance(missing)
    assert record is not None
    server.services.archive.absolute(record.file_path).unlink()
    responses, received = get(server, STUDY_S1, CT_EXPLICIT)
    check_counts(responses, 5)
    final = responses[-1]
    assert (final.status, final.completed, final.failed, final.warning) == (0xB000, 4, 1, 0)
    assert final.failed_uids == [missing]
    assert len(received) == 4


# PS3.4 C.4.3.3.1: nothing matched is Success with zero sub-operations.
def test_get_zero_matches_is_success_with_zero_sub_operations(server: RunningServer) -> None:
    responses, received = get(server, identifier("SERIES", SeriesInstanceUID="1.2.3.4"),
                              CT_EXPLICIT)
    assert [(r.status, r.completed, r.failed, r.warning) for r in responses] == [(0, 0, 0, 0)]
    assert received == []


# PS3.4 C.4.3.2: C-CANCEL stops between sub-operations; 0xFE00 with the counts so far.
def test_get_cancel_stops_between_sub_operations_with_fe00(server: RunningServer,
                                                          tmp_path: Path) -> None:
    datasets = [make_dataset(patient_id="PC", study="SC", instance=i) for i in range(1, 21)]
    ingest(server.services, datasets, tmp_path / "in")
    query = identifier("STUDY", StudyInstanceUID=datasets[0].StudyInstanceUID)
    responses, received = get(server, query, CT_EXPLICIT, delay=0.05, cancel_after=2)
    check_counts(responses, 20)
    final = responses[-1]
    assert final.status == 0xFE00
    assert final.remaining is not None and final.remaining > 0
    assert final.failed_uids == []
    assert len(received) == final.completed


# Issue #4: a compressed instance whose syntax the requester did not accept is decompressed
# to an accepted uncompressed syntax and counts as a warning.
def test_get_compressed_instance_to_uncompressed_only_requester_is_warning(
    server: RunningServer, tmp_path: Path
) -> None:
    original = make_dataset(patient_id="PZ", study="SZ", BitsStored=16, HighBit=15)
    compressed = make_dataset(patient_id="PZ", study="SZ", BitsStored=16, HighBit=15)
    compressed.compress(RLELossless, generate_instance_uid=False)
    [uid] = ingest(server.services, [compressed], tmp_path / "in")
    responses, received = get(server, identifier("IMAGE", SOPInstanceUID=uid),
                              {CT_IMAGE_STORAGE: (ImplicitVRLittleEndian,)})
    final = responses[-1]
    assert (final.status, final.completed, final.failed, final.warning) == (0xB000, 0, 0, 1)
    [item] = received
    assert item.transfer_syntax == ImplicitVRLittleEndian
    decoded = pydicom.filereader.read_dataset(pydicom.filebase.DicomBytesIO(item.data_set),
                                              is_implicit_VR=True, is_little_endian=True)
    assert decoded.PixelData == original.PixelData


# PS3.4 C.4.3.2.1: identifier errors are 0xA900 with the Offending Element.
def test_get_identifier_error_is_a900_with_offending_element(server: RunningServer) -> None:
    responses, _ = get(server, identifier("IMAGE", StudyInstanceUID="1.2.3"), CT_EXPLICIT)
    assert [(r.status, r.offending) for r in responses] == [(0xA900, [0x00080018])]
