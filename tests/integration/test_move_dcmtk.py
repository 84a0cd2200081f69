"""C-MOVE through DCMTK's movescu (Patient Root -P and Study Root -S, every level) to a DCMTK
storescp, on each index backend: what arrives is, data set for data set, what was stored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pacs.config import RemoteAE
from pacs.dimse.server import RunningServer
from tests.dcmtk import run_tool
from tests.factory import uid
from tests.integration.move_support import (
    LAYOUT,
    StoreSCP,
    populate,
    stored_data_set,
)


def _movescu(server: RunningServer, model: str, keys: dict[str, str],
             destination: str = "DEST", succeed: bool = True) -> str:
    host, port = server.address
    arguments = ["-v", "-aet", "MOVESCU", "-aec", "MINIPACS", "-aem", destination, f"-{model}"]
    for keyword, value in keys.items():
        arguments += ["-k", f"{keyword}={value}"]
    result = run_tool("movescu", [*arguments, host, str(port)], timeout=60)
    assert (result.returncode == 0) == succeed, result.stdout + result.stderr
    return result.stdout + result.stderr


P1 = {"PatientID": "P1"}
S1 = {"StudyInstanceUID": LAYOUT.study_s1}
SE1 = {"SeriesInstanceUID": LAYOUT.series_se1}
# (model, level keys, how many instances of the LAYOUT archive they select)
CASES = {
    "P-PATIENT": ("P", {"QueryRetrieveLevel": "PATIENT", **P1}, 6),
    "P-STUDY": ("P", {"QueryRetrieveLevel": "STUDY", **P1, **S1}, 5),
    "P-SERIES": ("P", {"QueryRetrieveLevel": "SERIES", **P1, **S1, **SE1}, 3),
    "P-IMAGE": ("P", {"QueryRetrieveLevel": "IMAGE", **P1, **S1, **SE1,
                      "SOPInstanceUID": "\\".join(LAYOUT.images_se1[::2])}, 2),
    "S-STUDY-list": ("S", {"QueryRetrieveLevel": "STUDY",
                           "StudyInstanceUID": f"{LAYOUT.study_s1}\\{LAYOUT.study_s2}"}, 6),
    "S-SERIES": ("S", {"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": LAYOUT.series_se2},
                 2),
    "S-IMAGE": ("S", {"QueryRetrieveLevel": "IMAGE", **S1, **SE1,
                      "SOPInstanceUID": LAYOUT.images_se1[1]}, 1),
    # Issue #11 (no strict hierarchy), as dcmqrscp and Orthanc answer them: a key below the
    # level is ignored, a list of UIDs above narrows to any of them, other keys are not used.
    "S-STUDY-key-below": ("S", {"QueryRetrieveLevel": "STUDY", **S1, **SE1}, 5),
    "S-SERIES-list-above": ("S", {"QueryRetrieveLevel": "SERIES",
                                  "StudyInstanceUID": f"{LAYOUT.study_s1}\\{LAYOUT.study_s2}",
                                  "SeriesInstanceUID": uid("P1", "S2", "SE3")}, 1),
    "S-SERIES-key-above": ("S", {"QueryRetrieveLevel": "SERIES", **S1, **SE1,
                                 "AccessionNumber": "ELSEWHERE"}, 3),
}


# PS3.4 C.4.2.1: a C-MOVE at each level of each model sends that level's instances to the
# Move Destination; the C-STOREs carry the data sets exactly as stored.
@pytest.mark.parametrize("case", list(CASES))
def test_movescu_sends_the_level_as_stored_to_storescp(
    case: str, server_factory: Callable[..., RunningServer],
    storescp: Callable[..., StoreSCP], tmp_path: Path,
) -> None:
    model, keys, expected = CASES[case]
    destination = storescp()
    server = server_factory(remotes=(RemoteAE("DEST", "127.0.0.1", destination.port),))
    populate(server.services, tmp_path / "in")
    output = _movescu(server, model, keys)
    assert "Received Final Move Response (Success)" in output, output
    received = destination.received()
    assert len(received) == expected
    for sop_instance_uid, data_set in received.items():
        assert data_set == stored_data_set(server.services, sop_instance_uid)


# PS3.4 C.4.2.1.5: a Move Destination we do not know is refused before any sub-operation.
def test_movescu_unknown_destination_is_a801(
    server_factory: Callable[..., RunningServer], storescp: Callable[..., StoreSCP],
    tmp_path: Path,
) -> None:
    destination = storescp()
    server = server_factory(remotes=(RemoteAE("DEST", "127.0.0.1", destination.port),))
    populate(server.services, tmp_path / "in")
    output = _movescu(server, "S", {"QueryRetrieveLevel": "STUDY", **S1}, destination="NOBODY",
                      succeed=False)
    assert "Final Move Response (Refused: MoveDestinationUnknown)" in output, output
    assert destination.received() == {}
