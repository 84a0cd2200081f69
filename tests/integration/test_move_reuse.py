"""C-MOVE destination associations kept for the next C-MOVE (`retrieve.association_close_delay`).

PS3.4 C.4.2.3: the C-STORE sub-operations go over an association of their own, which need not
be a new one per C-MOVE. A sound association waits the close delay for the next C-MOVE of the
same server to the same destination with the same contexts, then is released."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pacs.config import RemoteAE
from pacs.dimse.server import RunningServer, start_server
from pacs.services.context import Services
from tests.dcmtk import run_tool
from tests.factory import make_dataset, uid
from tests.integration.move_support import (
    LAYOUT,
    STUDY_S1,
    STUDY_S2,
    Receiver,
    StoreSCP,
    identifier,
    ingest,
    move,
    moving_to,
    populate,
    stored_data_set,
)

Factory = Callable[..., RunningServer]
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"



def _wait_for(condition: Callable[[], bool], within: float = 15) -> bool:
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def _final(responses: list[Any]) -> tuple[int, int | None, int | None]:
    return responses[-1].status, responses[-1].completed, responses[-1].failed


def test_consecutive_moves_to_one_destination_share_its_association(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port, association_close_delay=30)
    populate(server.services, tmp_path / "in")
    assert _final(move(server, STUDY_S1)) == (0x0000, 5, 0)
    assert _final(move(server, STUDY_S1, calling_ae="OTHERSCU")) == (0x0000, 5, 0)
    assert destination.associations == 1
    assert destination.released == 0
    # PS3.7 9.1.1.1: each sub-operation names the C-MOVE it belongs to.
    assert [r.move_originator_ae for r in destination.received] == ["MOVESCU"] * 5 + \
        ["OTHERSCU"] * 5


def test_without_a_close_delay_each_move_has_its_own_association(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port, association_close_delay=0)
    populate(server.services, tmp_path / "in")
    for _ in range(2):
        assert _final(move(server, STUDY_S1)) == (0x0000, 5, 0)
    assert destination.associations == 2
    assert _wait_for(lambda: destination.released == 2)


def test_an_idle_association_is_released_once_the_close_delay_has_passed(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port, association_close_delay=0.5)
    populate(server.services, tmp_path / "in")
    assert _final(move(server, STUDY_S1)) == (0x0000, 5, 0)
    assert _wait_for(lambda: destination.released == 1)  # released, not aborted
    assert _final(move(server, STUDY_S1)) == (0x0000, 5, 0)
    assert destination.associations == 2


# A destination may end the association while it is idle: the next C-MOVE opens another.
@pytest.mark.parametrize("ending", ["release", "abort"])
def test_a_destination_ending_the_idle_association_gets_a_new_one(
    ending: str, server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port, association_close_delay=30)
    populate(server.services, tmp_path / "in")
    assert _final(move(server, STUDY_S1)) == (0x0000, 5, 0)
    [association] = destination.ae.active_associations
    getattr(association, ending)()
    assert _wait_for(lambda: destination.connections_closed == 1)
    assert _final(move(server, STUDY_S1)) == (0x0000, 5, 0)
    assert destination.associations == 2
    assert len(destination.received) == 10


# Another set of presentation contexts is another association: the idle one is not taken.
def test_a_move_needing_other_contexts_opens_its_own_association(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    server = moving_to(server_factory, destination.port, association_close_delay=30)
    populate(server.services, tmp_path / "in")
    [mr] = ingest(server.services, [make_dataset(patient_id="P9", study="S9", modality="MR",
                                                 sop_class=MR_IMAGE_STORAGE)], tmp_path / "mr")
    assert _final(move(server, STUDY_S1)) == (0x0000, 5, 0)
    assert _final(move(server, STUDY_S2)) == (0x0000, 1, 0)  # CT as stored: the same contexts
    assert destination.associations == 1
    mr_study = identifier("STUDY", StudyInstanceUID=uid("P9", "S9"))
    assert _final(move(server, mr_study)) == (0x0000, 1, 0)
    assert destination.associations == 2
    assert destination.received[-1].sop_instance_uid == mr


def test_stopping_the_server_releases_idle_associations(
    services_factory: Callable[..., Services], sqlite_url: str,
    receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver()
    services = services_factory(sqlite_url, association_close_delay=60,
                                remotes=(RemoteAE("DEST", "127.0.0.1", destination.port),))
    populate(services, tmp_path / "in")
    server = start_server(services)
    try:
        assert _final(move(server, STUDY_S1)) == (0x0000, 5, 0)
    finally:
        server.stop(grace=1)
    assert _wait_for(lambda: destination.released == 1)


# DCMTK movescu, several C-MOVEs on one association, to DCMTK storescp (one association at a
# time, no --fork): every one completes, every file arrives as stored.
def test_movescu_moves_in_a_row_over_one_destination_association(
    server_factory: Factory, storescp: Callable[..., StoreSCP], tmp_path: Path,
) -> None:
    destination = storescp()
    server = moving_to(server_factory, destination.port, association_close_delay=30)
    populate(server.services, tmp_path / "in")
    host, port = server.address
    queries = []
    for number, study in enumerate((LAYOUT.study_s1, LAYOUT.study_s2, LAYOUT.study_s1)):
        query = identifier("STUDY", StudyInstanceUID=study)
        query.file_meta = _query_meta()
        path = tmp_path / f"move{number}.dcm"
        query.save_as(path, enforce_file_format=True)
        queries.append(str(path))
    result = run_tool("movescu", ["-v", "-aet", "MOVESCU", "-aec", "MINIPACS", "-aem", "DEST",
                                  "-S", host, str(port), *queries], timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("Received Final Move Response (Success)") == 3, output
    received = destination.received()
    assert len(received) == 6
    for sop_instance_uid, data_set in received.items():
        assert data_set == stored_data_set(server.services, sop_instance_uid)


def _query_meta() -> Any:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.2"  # Study Root C-MOVE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return meta
