"""Modality Worklist C-FIND SCP (PS3.4 K.6.1) against a pynetdicom SCU, on both backends: the
matching keys of Table K.6-1, the worklist's unknown-value rule, the folder of worklist files
and `pacs worklist add`, refusals and C-CANCEL."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacs.dimse.server import RunningServer
from pacs.services.worklist import add_items
from tests.integration.modality_support import (
    MWL_FIND,
    associated,
    worklist_item,
    write_item,
)

ITEMS = {
    "A1": worklist_item("A1", "Doe^Jane", "P1", "MR", "MR1", "20240105", "083000"),
    "A2": worklist_item("A2", "Doe^John", "P2", "CT", "CT1", "20240105", "141500"),
    "A3": worklist_item("A3", "Smith^Ann", "P3", "MR", "MR2", "20240106", "090000",
                        physician=""),
    "A4": worklist_item("A4", "Müller^Jürgen", "P4", "US", "US1\\US2", "20240107", "100000"),
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The worklist folder, holding the items of ITEMS as .wl files."""
    folder = tmp_path / "worklist"
    folder.mkdir()
    for accession, item in ITEMS.items():
        write_item(item, folder / f"{accession}.wl")
    return folder


@pytest.fixture
def mwl(server_factory: Callable[..., RunningServer], folder: Path) -> RunningServer:
    """A server serving the worklist folder."""
    return server_factory(worklist_folder=folder)


def query(step: dict[str, str] | None = None, **top: str) -> Dataset:
    """A worklist identifier in the style of DCMTK's wlistqry examples: the usual return
    keys zero length, `top` and `step` (the Scheduled Procedure Step item) as given."""
    identifier = Dataset()
    for keyword in ("AccessionNumber", "PatientName", "PatientID", "StudyInstanceUID",
                    "RequestedProcedureID", "RequestedProcedureDescription"):
        setattr(identifier, keyword, "")
    item = Dataset()
    for keyword in ("Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
                    "ScheduledProcedureStepStartTime", "ScheduledPerformingPhysicianName",
                    "ScheduledProcedureStepID"):
        setattr(item, keyword, "")
    for keyword, value in (step or {}).items():
        setattr(item, keyword, value)
    identifier.ScheduledProcedureStepSequence = Sequence([item])
    for keyword, value in top.items():
        setattr(identifier, keyword, value)
    return identifier


def find(server: RunningServer, identifier: Dataset) -> tuple[list[Dataset], list[int]]:
    """(response identifiers, statuses) of one worklist C-FIND."""
    found, statuses = [], []
    with associated(server, MWL_FIND) as assoc:
        for status, response in assoc.send_c_find(identifier, MWL_FIND):
            statuses.append(int(status.Status))
            if response is not None and status.Status in (0xFF00, 0xFF01):
                found.append(response)
    return found, statuses


def accessions(server: RunningServer, identifier: Dataset) -> list[str]:
    """The Accession Numbers of the items that match, in the order served."""
    found, statuses = find(server, identifier)
    assert statuses[-1] == 0x0000, statuses
    return [str(item.AccessionNumber) for item in found]


def test_every_item_matches_zero_length_keys(mwl: RunningServer) -> None:
    # PS3.4 K.2.2.1.2: return keys zero length; items by scheduled start.
    assert accessions(mwl, query()) == ["A1", "A2", "A3", "A4"]


def test_a_response_holds_the_requested_keys_of_the_item(mwl: RunningServer) -> None:
    # PS3.4 K.2.2.1.2: the values of the requested keys, nothing else; the step item with
    # the requested step keys.
    found, _ = find(mwl, query(AccessionNumber="A2"))
    assert len(found) == 1
    answer = found[0]
    assert answer.PatientName == "Doe^John" and answer.PatientID == "P2"
    assert answer.RequestedProcedureID == "RP-A2"
    assert "PatientBirthDate" not in answer  # not requested
    step = answer.ScheduledProcedureStepSequence[0]
    assert step.Modality == "CT" and step.ScheduledStationAETitle == "CT1"
    assert step.ScheduledProcedureStepStartTime == "141500"
    assert "ScheduledStationName" not in step


def test_modality_matches_in_the_step_sequence(mwl: RunningServer) -> None:
    # PS3.4 Table K.6-1: >Modality is a Required matching key.
    assert accessions(mwl, query({"Modality": "MR"})) == ["A1", "A3"]


def test_station_ae_title_matches_any_of_its_values(mwl: RunningServer) -> None:
    # PS3.4 C.2.2.3 (multi-valued Scheduled Station AE Title): any value matches.
    assert accessions(mwl, query({"ScheduledStationAETitle": "US2"})) == ["A4"]


def test_station_ae_title_takes_wildcards(mwl: RunningServer) -> None:
    # PS3.4 C.2.2.2.4: AE is among the VRs of Wild Card Matching (wlmscpfs does not do it).
    assert accessions(mwl, query({"ScheduledStationAETitle": "MR?"})) == ["A1", "A3"]


def test_start_date_range(mwl: RunningServer) -> None:
    # PS3.4 C.2.2.2.5: range matching on Scheduled Procedure Step Start Date.
    assert accessions(mwl, query({"ScheduledProcedureStepStartDate": "20240106-"})) == \
        ["A3", "A4"]


def test_start_time_range(mwl: RunningServer) -> None:
    # PS3.4 C.2.2.2.5: a time range, inclusive; "0900" covers 09:00:00.
    found = accessions(mwl, query({"ScheduledProcedureStepStartTime": "0800-0900"}))
    assert found == ["A1", "A3"]


def test_patient_name_wildcard_ignores_case(mwl: RunningServer) -> None:
    # PS3.4 C.2.2.2.4: wildcards; PN case-insensitive by default (README).
    assert accessions(mwl, query(PatientName="doe*")) == ["A1", "A2"]


def test_non_ascii_names_match_and_come_back_in_utf8(mwl: RunningServer) -> None:
    # PS3.4 C.2.2.2 character sets: values decoded, matched as Unicode, answered ISO_IR 192.
    identifier = query(PatientName="MÜLLER*")
    identifier.SpecificCharacterSet = "ISO_IR 100"
    found, _ = find(mwl, identifier)
    assert [str(a.PatientName) for a in found] == ["Müller^Jürgen"]
    assert found[0].SpecificCharacterSet == "ISO_IR 192"


def test_an_empty_item_value_fails_to_match_a_non_empty_key(mwl: RunningServer) -> None:
    # PS3.4 K.2.2.1.1.1: A3's Scheduled Performing Physician's Name is zero length and does not
    # match "*o*" (Query/Retrieve's C.2.2.1.2 would let it match).
    assert accessions(mwl, query({"ScheduledPerformingPhysicianName": "*o*"})) == \
        ["A1", "A2", "A4"]


def test_a_lone_wildcard_still_matches_an_empty_item_value(mwl: RunningServer) -> None:
    # PS3.4 K.2.2.1.1.1 note 1: a single "*" is Wild Card Matching of every item.
    assert len(accessions(mwl, query({"ScheduledPerformingPhysicianName": "*"}))) == 4


def test_an_open_range_does_not_match_an_empty_value(
        server_factory: Callable[..., RunningServer], folder: Path) -> None:
    # PS3.4 K.2.2.1.1.1: "-19800101" must not take an unknown birth date for an early one.
    write_item(worklist_item("A5", PatientBirthDate=""), folder / "A5.wl")
    server = server_factory(worklist_folder=folder)
    assert accessions(server, query(PatientBirthDate="-19800101")) == ["A1", "A2", "A3", "A4"]


def test_a_sequence_key_without_an_item_returns_the_whole_step(mwl: RunningServer) -> None:
    # PS3.4 K.2.2.1.2 note 4: a return key SQ may be zero length: the whole sequence comes back.
    identifier = Dataset()
    identifier.AccessionNumber = "A1"
    identifier.ScheduledProcedureStepSequence = Sequence()
    found, _ = find(mwl, identifier)
    step = found[0].ScheduledProcedureStepSequence[0]
    assert step.ScheduledStationName == "MR1-NAME" and step.ScheduledProcedureStepID == "SPS-A1"


def test_a_value_on_a_key_not_matched_is_ignored_with_ff01(mwl: RunningServer) -> None:
    # PS3.4 K.2.2.1.1.2: an optional key the SCP does not match on is a return key;
    # Pending 0xFF01 says so.
    found, statuses = find(mwl, query(RequestedProcedureDescription="nothing like it"))
    assert len(found) == 4 and set(statuses[:-1]) == {0xFF01}


def test_a_malformed_date_is_refused(mwl: RunningServer) -> None:
    # PS3.4 K.4.1.1.4 / C.4.1.1.4: 0xA900 Identifier Does Not Match SOP Class.
    found, statuses = find(mwl, query({"ScheduledProcedureStepStartDate": "2024-01-05"}))
    assert found == [] and statuses == [0xA900]


def test_two_step_items_are_refused(mwl: RunningServer) -> None:
    # PS3.4 C.2.2.2.6: a sequence key holds one item.
    identifier = query()
    identifier.ScheduledProcedureStepSequence.append(Dataset())
    assert find(mwl, identifier)[1] == [0xA900]


def test_an_undecodable_identifier_is_unable_to_process(mwl: RunningServer) -> None:
    # PS3.4 C.4.1.1.4: 0xC000 Unable to Process for an identifier that cannot be read
    # (here a Scheduled Procedure Step Sequence of undefined length holding no item).
    from tests.integration.raw_dimse import send_raw_c_find

    with associated(mwl, MWL_FIND) as assoc:
        status = send_raw_c_find(assoc, MWL_FIND, b"\x40\x00\x00\x01\xff\xff\xff\xff"
                                                      b"\x01\x02\x03\x04\x05\x06\x07\x08")
    assert status == 0xC000


def test_more_matches_than_the_cap_is_out_of_resources(
        server_factory: Callable[..., RunningServer], folder: Path) -> None:
    # PS3.4 C.4.1.1.4: 0xA700 rather than a silently cut list.
    server = server_factory(worklist_folder=folder, max_find_results=3)
    assert find(server, query())[1] == [0xA700]


def test_a_completed_step_leaves_the_worklist(mwl: RunningServer) -> None:
    # README: an item an MPPS completed is done; it is no longer served.
    from pacs.index.schema import WorklistItem

    assert accessions(mwl, query()) == ["A1", "A2", "A3", "A4"]  # the folder is read
    WorklistItem.update(state="COMPLETED").where(WorklistItem.source == "A2.wl").execute()
    assert accessions(mwl, query()) == ["A1", "A3", "A4"]


@pytest.mark.filterwarnings("ignore:Expected implicit VR:UserWarning")  # pydicom, on junk.wl
def test_a_bad_file_is_skipped_with_one_log_line(
        mwl: RunningServer, folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A file that is not a servable item (no Scheduled Procedure Step) is skipped, once logged.
    broken = worklist_item("B1")
    del broken.ScheduledProcedureStepSequence
    write_item(broken, folder / "B1.wl")
    (folder / "junk.wl").write_bytes(b"not DICOM at all")
    with caplog.at_level(logging.WARNING, logger="pacs.worklist"):
        assert accessions(mwl, query()) == ["A1", "A2", "A3", "A4"]
        assert accessions(mwl, query()) == ["A1", "A2", "A3", "A4"]
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 2 and any("B1.wl" in line for line in lines)


def test_the_folder_is_read_on_each_query(mwl: RunningServer, folder: Path) -> None:
    # Like wlmscpfs: a new file is served, a deleted one is gone, a changed one re-read.
    assert accessions(mwl, query()) == ["A1", "A2", "A3", "A4"]
    (folder / "A2.wl").unlink()
    write_item(worklist_item("A9", date="20240101"), folder / "A9.wl")
    write_item(worklist_item("A1", patient_name="Doe^Janet"), folder / "A1.wl")
    assert accessions(mwl, query()) == ["A9", "A1", "A3", "A4"]
    assert accessions(mwl, query(PatientName="Doe^Janet")) == ["A1"]


def test_items_added_with_the_command_are_served(
        server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
    # `pacs worklist add` keeps items in the index, no folder needed.
    server = server_factory()
    path = write_item(worklist_item("C1", modality="CT"), tmp_path / "C1.dcm")
    summary = add_items(server.services, [path])
    assert summary.added == [str(path)]
    assert accessions(server, query({"Modality": "CT"})) == ["C1"]


def test_cancel_ends_with_fe00(server_factory: Callable[..., RunningServer]) -> None:
    # PS3.4 K.4.1.2 (C.4.1.3.1): a C-CANCEL stops the responses; the final status is 0xFE00.
    from pacs.index.worklist import WorklistItems
    from pacs.services.worklist import item_write

    server = server_factory()
    items = WorklistItems(server.services.index)
    for number in range(300):
        items.put(item_write(worklist_item(f"M{number:03d}")))
    statuses = []
    with associated(server, MWL_FIND) as assoc:
        context = assoc.accepted_contexts[0].context_id
        for status, _ in assoc.send_c_find(query(), MWL_FIND, msg_id=7):
            statuses.append(int(status.Status))
            if len(statuses) == 1:
                assoc.send_c_cancel(7, context)
    assert statuses[-1] == 0xFE00
    assert 1 <= len(statuses) - 1 < 300


def test_worklist_needs_the_permission(server_factory: Callable[..., RunningServer],
                                       folder: Path) -> None:
    # PS3.7 C.5.4: 0x0124 for a peer not granted worklist.
    from pacs.config import Peer

    server = server_factory(worklist_folder=folder,
                            peers=(Peer("MODALITY", services=frozenset({"echo", "mpps"})),))
    assert find(server, query())[1] == [0x0124]
