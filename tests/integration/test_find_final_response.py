"""The final C-FIND response, written by the send fast path (PS3.4 C.4.1.2.3, C.4.1.3.1;
PS3.7 9.1.2.1): exactly one per request, whatever its status, and a release sent the moment
it arrives is answered (PS3.8 7.2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association

from pacs.dimse.server import RunningServer
from pacs.model.levels import STUDY_ROOT_FIND
from pacs.services.context import Services
from tests.dcmtk import run_tool
from tests.factory import make_dataset
from tests.integration.find_support import (
    bulk_index,
    module_server,
    populate_core,
    query,
    series_uid,
    study_uid,
)

BULK = 600  # instances in one series: a C-CANCEL after the first responses finds them streaming


def populate(services: Services, folder: Path) -> None:
    """The core data set, and one series of BULK instances indexed without files."""
    populate_core(services, folder)
    bulk_index(services, (make_dataset(patient_id="PAT-FINAL", study="FINAL", series="BULK",
                                       instance=number) for number in range(1, BULK + 1)))


find_server = module_server(populate)
DOE_STUDIES = query(QueryRetrieveLevel="STUDY", PatientID="PAT-DOE", StudyInstanceUID="")
NO_LEVEL = query(PatientID="PAT-DOE", StudyInstanceUID="")  # 0xA900: no Query/Retrieve Level
NO_MATCH = query(QueryRetrieveLevel="STUDY", PatientID="NOBODY", StudyInstanceUID="")
BULK_STUDY = study_uid("PAT-FINAL", "FINAL")
BULK_SERIES = series_uid("PAT-FINAL", "FINAL", "BULK")
BULK_IMAGES = query(QueryRetrieveLevel="IMAGE", InstanceNumber="", StudyInstanceUID=BULK_STUDY,
                    SeriesInstanceUID=BULK_SERIES)


@pytest.fixture
def association(find_server: RunningServer) -> Iterator[Association]:
    """One association for the test, released at its end."""
    ae = AE(ae_title="FINALSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(STUDY_ROOT_FIND)
    host, port = find_server.address
    association = ae.associate(host, port, ae_title="MINIPACS")
    assert association.is_established
    yield association
    if association.is_established:
        association.release()


def _statuses(association: Association, identifier: Dataset,
              cancel: bool = False) -> list[int | None]:
    """The status of every response to one C-FIND (Message ID 1), cancelled after the first
    Pending response when `cancel`; None for a response that never came."""
    statuses: list[int | None] = []
    for status, _ in association.send_c_find(identifier, STUDY_ROOT_FIND, msg_id=1):
        statuses.append(None if status is None or "Status" not in status
                        else int(status.Status))
        if cancel and len(statuses) == 1:
            association.send_c_cancel(1, association.accepted_contexts[0].context_id)
    return statuses


# PS3.7 9.1.2.1, PS3.4 C.4.1.2.3, C.4.1.3.1: requests that reuse one Message ID on one
# association each get their Pending responses, then exactly one final response (Success,
# a refusal, no match, Cancel).
def test_each_request_with_the_same_message_id_gets_one_final_response(
        association: Association) -> None:
    for identifier, cancel, final in ((DOE_STUDIES, False, 0x0000), (NO_LEVEL, False, 0xA900),
                                      (BULK_IMAGES, True, 0xFE00), (NO_MATCH, False, 0x0000),
                                      (DOE_STUDIES, False, 0x0000), (BULK_IMAGES, True, 0xFE00),
                                      (NO_LEVEL, False, 0xA900)):
        statuses = _statuses(association, identifier, cancel)
        assert statuses[-1] == final, statuses[-3:]
        assert all(status in (0xFF00, 0xFF01) for status in statuses[:-1]), statuses[-3:]
    assert len(_statuses(association, DOE_STUDIES)) > 1  # PAT-DOE has studies


# PS3.8 7.2: a peer that sends its A-RELEASE-RQ as soon as the final response arrives (findscu
# does) gets its A-RELEASE-RP. A release request read while the C-FIND was still being closed
# was lost once, after a Cancel most of all, and the association aborted at the network timeout.
@pytest.mark.parametrize("cancel", [False, True], ids=["success", "cancel"])
def test_release_right_after_the_final_response_is_answered(find_server: RunningServer,
                                                            cancel: bool) -> None:
    host, port = find_server.address
    arguments = ["-v", "-aec", "MINIPACS", "-S", "-ta", "5", "-k", "QueryRetrieveLevel=IMAGE",
                 "-k", "InstanceNumber", "-k", f"StudyInstanceUID={BULK_STUDY}",
                 "-k", f"SeriesInstanceUID={BULK_SERIES}", host, str(port)]
    final = "Cancel" if cancel else "Success"
    for _ in range(5):
        result = run_tool("findscu", [*arguments, *(["--cancel", "3"] if cancel else [])],
                          timeout=30)
        output = result.stdout + result.stderr
        assert f"Received Final Find Response ({final}" in output, output[-2000:]
        assert result.returncode == 0 and "Release Failed" not in output, output[-2000:]
