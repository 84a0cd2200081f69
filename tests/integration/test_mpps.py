"""Modality Performed Procedure Step SCP (PS3.4 F.7) against a pynetdicom SCU: the life cycle
IN PROGRESS -> COMPLETED or DISCONTINUED, and every refusal of F.7.2, on both backends."""

from __future__ import annotations

from collections.abc import Callable

from pydicom.dataset import Dataset

from pacs.dimse.server import RunningServer
from pacs.index.mpps import PerformedSteps
from pacs.index.worklist import WorklistItems
from pacs.services.worklist import item_write
from tests.factory import CT_IMAGE_STORAGE, uid
from tests.integration.modality_support import (
    MPPS,
    associated,
    completion,
    mpps_attributes,
    performed_series,
    worklist_item,
)

STEP = uid("mpps", 1)


def _create(server: RunningServer, attributes: Dataset,
            instance: str | None = STEP) -> tuple[Dataset, Dataset | None]:
    with associated(server, MPPS) as assoc:
        return assoc.send_n_create(attributes, MPPS, instance)


def _set(server: RunningServer, modification: Dataset,
         instance: str = STEP) -> Dataset:
    with associated(server, MPPS) as assoc:
        status, _ = assoc.send_n_set(modification, MPPS, instance)
        return status


def test_n_create_keeps_the_step_in_progress(server: RunningServer) -> None:
    # PS3.4 F.7.2.1.2: the SCP creates the instance with the attributes given.
    status, _ = _create(server, mpps_attributes())
    assert status.Status == 0x0000
    step = PerformedSteps(server.services.index).get(STEP)
    assert step is not None and step.state == "IN PROGRESS" and step.calling_ae == "MODALITY"
    assert Dataset.from_json(step.dataset).PerformedProcedureStepID == "PPS1"


def test_n_create_without_an_instance_uid_gets_one(server: RunningServer) -> None:
    # PS3.7 10.1.5.1.4: when the request names none, the response carries the UID created.
    status, _ = _create(server, mpps_attributes(), None)
    assert status.Status == 0x0000
    steps = PerformedSteps(server.services.index).list()
    assert len(steps) == 1 and steps[0].sop_instance_uid.startswith("1.2.826.0.1.3680043.10")


def test_a_second_n_create_of_one_instance_is_a_duplicate(server: RunningServer) -> None:
    # PS3.4 F.7.2.1.4 / PS3.7 C.4: 0x0111 Duplicate SOP Instance.
    assert _create(server, mpps_attributes())[0].Status == 0x0000
    status, _ = _create(server, mpps_attributes(PerformedProcedureStepID="PPS2"))
    assert status.Status == 0x0111
    step = PerformedSteps(server.services.index).get(STEP)
    assert step is not None and Dataset.from_json(step.dataset).PerformedProcedureStepID == "PPS1"


def test_n_create_must_be_in_progress(server: RunningServer) -> None:
    # PS3.4 F.7.2.1.2: any other Performed Procedure Step Status is 0x0106.
    status, _ = _create(server, mpps_attributes(PerformedProcedureStepStatus="COMPLETED"))
    assert status.Status == 0x0106
    assert "IN PROGRESS" in status.ErrorComment
    assert PerformedSteps(server.services.index).get(STEP) is None


def test_n_create_without_a_type_1_attribute_is_missing_attribute(
        server: RunningServer) -> None:
    # PS3.4 Table F.7.2-1: Performed Station AE Title is Type 1 in N-CREATE; 0x0120.
    status, _ = _create(server, mpps_attributes(PerformedStationAETitle=None))
    assert status.Status == 0x0120
    assert "PerformedStationAETitle" in status.ErrorComment


def test_n_create_with_an_empty_type_1_attribute_is_missing_attribute_value(
        server: RunningServer) -> None:
    # PS3.4 Table F.7.2-1: Type 1 needs a value; zero length is 0x0121.
    status, _ = _create(server, mpps_attributes(PerformedProcedureStepStartDate=""))
    assert status.Status == 0x0121


def test_n_create_without_the_scheduled_study_uid_is_refused(server: RunningServer) -> None:
    # PS3.4 Table F.7.2-1: >Study Instance UID is Type 1 in each Scheduled Step item.
    attributes = mpps_attributes()
    del attributes.ScheduledStepAttributesSequence[0].StudyInstanceUID
    status, _ = _create(server, attributes)
    assert status.Status == 0x0120 and "Scheduled Step" in status.ErrorComment


def test_n_set_of_an_unknown_step_is_no_such_instance(server: RunningServer) -> None:
    # PS3.4 F.7.2.2.4: 0x0112 No Such Object Instance.
    assert _set(server, completion()).Status == 0x0112


def test_the_whole_life_cycle_links_instances_and_completes_the_worklist_item(
        server: RunningServer) -> None:
    # PS3.4 F.7.2: N-CREATE IN PROGRESS, N-SET while in progress, N-SET COMPLETED.
    item = worklist_item("A1")
    WorklistItems(server.services.index).put(item_write(item))
    attributes = mpps_attributes(study=str(item.StudyInstanceUID), sps_id="SPS-A1",
                                 requested_procedure="RP-A1")
    image_1, image_2 = uid("mpps-image", 1), uid("mpps-image", 2)
    series = uid("mpps-series", 1)
    with associated(server, MPPS) as assoc:
        status, _ = assoc.send_n_create(attributes, MPPS, STEP)
        assert status.Status == 0x0000
        items = WorklistItems(server.services.index).list()
        assert [i.state for i in items] == ["IN PROGRESS"]
        interim = Dataset()
        interim.PerformedProcedureStepDescription = "Brain with contrast"
        status, _ = assoc.send_n_set(interim, MPPS, STEP)
        assert status.Status == 0x0000
        final = completion("COMPLETED", performed_series(
            series, (CT_IMAGE_STORAGE, image_1), (CT_IMAGE_STORAGE, image_2)))
        status, _ = assoc.send_n_set(final, MPPS, STEP)
        assert status.Status == 0x0000
    steps = PerformedSteps(server.services.index)
    stored = steps.get(STEP)
    assert stored is not None and stored.state == "COMPLETED"
    dataset = Dataset.from_json(stored.dataset)
    assert dataset.PerformedProcedureStepDescription == "Brain with contrast"
    assert dataset.PerformedProcedureStepEndTime == "090000"
    assert [i[2] for i in steps.listed_instances(STEP)] == [image_1, image_2]
    assert [i.state for i in WorklistItems(server.services.index).list()] == ["COMPLETED"]


def test_no_n_set_after_completed(server: RunningServer) -> None:
    # PS3.4 F.7.2.2.4: 0x0110 with Error ID 0xA710, "may no longer be updated".
    _create(server, mpps_attributes())
    assert _set(server, completion("COMPLETED", performed_series(uid("s", 1)))).Status == 0
    status = _set(server, completion("COMPLETED", performed_series(uid("s", 2))))
    assert status.Status == 0x0110
    assert status.ErrorID == 0xA710
    assert "no longer be updated" in status.ErrorComment


def test_no_n_set_after_discontinued(server: RunningServer) -> None:
    # PS3.4 F.7.2.2.4: a DISCONTINUED step is final as well.
    _create(server, mpps_attributes())
    assert _set(server, completion("DISCONTINUED", performed_series(uid("s", 1)))).Status == 0
    interim = Dataset()
    interim.PerformedProcedureStepDescription = "again"
    status = _set(server, interim)
    assert status.Status == 0x0110 and status.ErrorID == 0xA710


def test_completed_needs_the_final_state_attributes(server: RunningServer) -> None:
    # PS3.4 Table F.7.2-1, final state: End Time Type 1; the step stays IN PROGRESS.
    _create(server, mpps_attributes())
    final = completion("COMPLETED", performed_series(uid("s", 1)))
    final.PerformedProcedureStepEndTime = ""
    status = _set(server, final)
    assert status.Status == 0x0121 and "PerformedProcedureStepEndTime" in status.ErrorComment
    step = PerformedSteps(server.services.index).get(STEP)
    assert step is not None and step.state == "IN PROGRESS"


def test_completed_needs_a_performed_series(server: RunningServer) -> None:
    # PS3.4 Table F.7.2-1, final state: Performed Series Sequence Type 1 (one item at least).
    _create(server, mpps_attributes())
    assert _set(server, completion("COMPLETED")).Status == 0x0121


def test_n_set_may_not_change_what_n_create_fixed(server: RunningServer) -> None:
    # PS3.4 Table F.7.2-1: Patient ID is "Not allowed" in N-SET; changing it is 0x0106.
    _create(server, mpps_attributes())
    modification = Dataset()
    modification.PatientID = "SOMEONE-ELSE"
    status = _set(server, modification)
    assert status.Status == 0x0106 and "PatientID" in status.ErrorComment


def test_n_set_may_resend_what_n_create_fixed_unchanged(server: RunningServer) -> None:
    # Modalities that resend the whole step are not refused for an attribute left as it was.
    _create(server, mpps_attributes())
    modification = Dataset()
    modification.PatientID = "P1"
    modification.PerformedProcedureStepDescription = "Brain, resent"
    assert _set(server, modification).Status == 0x0000


def test_an_unknown_status_value_is_invalid(server: RunningServer) -> None:
    # PS3.3 C.4.14: IN PROGRESS, DISCONTINUED, COMPLETED are the Enumerated Values.
    _create(server, mpps_attributes())
    modification = Dataset()
    modification.PerformedProcedureStepStatus = "DONE"
    assert _set(server, modification).Status == 0x0106


def test_mpps_needs_the_permission(server_factory: Callable[..., RunningServer]) -> None:
    # PS3.7 C.5.4: 0x0124 Refused: Not Authorized, for a peer not granted mpps.
    from pacs.config import Peer

    server = server_factory(peers=(Peer("MODALITY", services=frozenset({"echo", "store"})),))
    status, _ = _create(server, mpps_attributes())
    assert status.Status == 0x0124
