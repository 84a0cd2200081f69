"""Builders shared by the modality service tests: worklist items, MPPS attribute sets, and a
pynetdicom SCU association to a running server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacs.dimse.server import RunningServer
from tests.conftest import scu
from tests.factory import uid

MWL_FIND = "1.2.840.10008.5.1.4.31"
MPPS = "1.2.840.10008.3.1.2.3.3"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"


def worklist_item(accession: str, patient_name: str = "Doe^Jane", patient_id: str = "P1",
                  modality: str = "MR", station: str = "MR1", date: str = "20240105",
                  time: str = "083000", physician: str = "Who^Doctor",
                  **top: Any) -> Dataset:
    """A complete worklist item (every Type 1 return key of PS3.4 Table K.6-1)."""
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"
    item.AccessionNumber = accession
    item.PatientName = patient_name
    item.PatientID = patient_id
    item.PatientBirthDate = "19700101"
    item.PatientSex = "F"
    item.StudyInstanceUID = uid("worklist", accession)
    item.RequestedProcedureID = f"RP-{accession}"
    item.RequestedProcedureDescription = f"Procedure {accession}"
    item.ReferringPhysicianName = "Ref^Erring"
    step = Dataset()
    step.Modality = modality
    step.ScheduledStationAETitle = station
    step.ScheduledProcedureStepStartDate = date
    step.ScheduledProcedureStepStartTime = time
    step.ScheduledPerformingPhysicianName = physician
    step.ScheduledProcedureStepDescription = f"Step {accession}"
    step.ScheduledProcedureStepID = f"SPS-{accession}"
    step.ScheduledStationName = f"{station}-NAME"
    item.ScheduledProcedureStepSequence = Sequence([step])
    for keyword, value in top.items():
        if value is None:
            delattr(item, keyword)
        else:
            setattr(item, keyword, value)
    return item


def write_item(item: Dataset, path: Any) -> Any:
    """Save a worklist item as a Part 10 file (as wlmscpfs reads them)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"  # DCMTK's worklist files
    meta.MediaStorageSOPInstanceUID = uid("worklist-file", str(path))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    item.file_meta = meta
    item.save_as(path, enforce_file_format=True)
    return path


def mpps_attributes(step_id: str = "PPS1", study: str = "S1", sps_id: str = "SPS-A1",
                    requested_procedure: str = "RP-A1", **top: Any) -> Dataset:
    """An N-CREATE Attribute List: every Type 1 and Type 2 attribute of Table F.7.2-1."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    scheduled = Dataset()
    scheduled.StudyInstanceUID = study
    scheduled.ReferencedStudySequence = Sequence()
    scheduled.AccessionNumber = "A1"
    scheduled.RequestedProcedureID = requested_procedure
    scheduled.RequestedProcedureDescription = "Procedure"
    scheduled.ScheduledProcedureStepID = sps_id
    scheduled.ScheduledProcedureStepDescription = "Step"
    scheduled.ScheduledProtocolCodeSequence = Sequence()
    ds.ScheduledStepAttributesSequence = Sequence([scheduled])
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.ReferencedPatientSequence = Sequence()
    ds.PerformedProcedureStepID = step_id
    ds.PerformedStationAETitle = "MR1"
    ds.PerformedStationName = "MR one"
    ds.PerformedLocation = "Room 1"
    ds.PerformedProcedureStepStartDate = "20240105"
    ds.PerformedProcedureStepStartTime = "083500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = "Brain"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = Sequence()
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "MR"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = Sequence()
    ds.PerformedSeriesSequence = Sequence()
    for keyword, value in top.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def performed_series(series_uid: str, *instances: tuple[str, str]) -> Dataset:
    """One Performed Series Sequence item listing (SOP Class, SOP Instance) images."""
    series = Dataset()
    series.PerformingPhysicianName = ""
    series.ProtocolName = "T1 axial"
    series.OperatorsName = ""
    series.SeriesInstanceUID = series_uid
    series.SeriesDescription = ""
    series.RetrieveAETitle = ""
    images = []
    for sop_class, sop_instance in instances:
        image = Dataset()
        image.ReferencedSOPClassUID = sop_class
        image.ReferencedSOPInstanceUID = sop_instance
        images.append(image)
    series.ReferencedImageSequence = Sequence(images)
    series.ReferencedNonImageCompositeSOPInstanceSequence = Sequence()
    return series


def completion(status: str = "COMPLETED", *series: Dataset) -> Dataset:
    """An N-SET Modification List ending a step."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20240105"
    ds.PerformedProcedureStepEndTime = "090000"
    ds.PerformedSeriesSequence = Sequence(list(series))
    return ds


@contextmanager
def associated(server: RunningServer, *contexts: str, ae_title: str = "MODALITY",
               **kwargs: Any) -> Iterator[Any]:
    """An established pynetdicom association to `server`, released afterwards."""
    ae = scu(*contexts, ae_title=ae_title)
    host, port = server.address
    assoc = ae.associate(host, port, ae_title=server.services.settings.ae_title, **kwargs)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
