"""Builds DICOM instances for tests: deterministic UIDs, chosen attributes, small pixels."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ROOT = "1.2.826.0.1.3680043.10.1071"


def uid(*parts: object) -> str:
    """A valid, deterministic UID under a test root from arbitrary parts."""
    digest = int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:24], 16)
    return f"{ROOT}.{digest}"


def make_dataset(
    patient_id: str = "PAT1",
    patient_name: str = "Doe^John",
    study: str = "S1",
    series: str = "SE1",
    instance: int = 1,
    modality: str = "CT",
    sop_class: str = CT_IMAGE_STORAGE,
    rows: int = 8,
    columns: int = 8,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **attributes: Any,
) -> Dataset:
    """A complete image instance; `study`/`series` are labels turned into UIDs."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid(patient_id, study, series, instance)
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uid(patient_id, study)
    ds.SeriesInstanceUID = uid(patient_id, study, series)
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"ACC-{study}"
    ds.StudyID = study[:16]
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyDescription = f"Study {study}"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"Series {series}"
    ds.InstanceNumber = instance
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes((i * 7 + instance) % 251 for i in range(rows * columns * 2))
    for keyword, value in attributes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta
    return ds


def write_dataset(
    dataset: Dataset, folder: Path, name: str | None = None, meta_as_given: bool = False
) -> Path:
    """Save as a Part 10 file under `folder`; the name defaults to the SOP Instance UID.

    `meta_as_given` keeps the file meta exactly as set (pydicom would otherwise copy the
    data set's UIDs into it), for files whose meta deliberately disagrees with the data set.
    """
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(str(dataset.SOPInstanceUID).encode()).hexdigest()
    path = folder / (name or f"{digest}.dcm")
    if meta_as_given:
        dataset.preamble = b"\x00" * 128
        dataset.save_as(path, enforce_file_format=False)
    else:
        dataset.save_as(path, enforce_file_format=True)
    return path


def make_file(folder: Path, **kwargs: Any) -> Path:
    """`make_dataset(**kwargs)` written to `folder`."""
    return write_dataset(make_dataset(**kwargs), folder)


def code_sequence(value: str, scheme: str, meaning: str) -> Sequence:
    """A one-item code sequence (Procedure Code Sequence and the like)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return Sequence([item])


__all__ = ["ImplicitVRLittleEndian", "make_dataset", "make_file", "uid", "write_dataset"]
