"""Builds DICOM instances for tests: deterministic UIDs, chosen attributes, small pixels."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset as write_body
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

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


NATIVE_SYNTAXES = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                   DeflatedExplicitVRLittleEndian)
# One or two syntaxes of every family of encapsulated syntaxes pydicom knows (PS3.5 A.4).
ENCAPSULATED_SYNTAXES = {
    "jpeg-baseline": "1.2.840.10008.1.2.4.50", "jpeg-extended": "1.2.840.10008.1.2.4.51",
    "jpeg-lossless": "1.2.840.10008.1.2.4.70", "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "jpeg-ls-near-lossless": "1.2.840.10008.1.2.4.81", "jpeg-2000": "1.2.840.10008.1.2.4.90",
    "jpeg-2000-lossy": "1.2.840.10008.1.2.4.91",
    "jpeg-2000-multi-component": "1.2.840.10008.1.2.4.92",
    "htj2k": "1.2.840.10008.1.2.4.201", "htj2k-lossy": "1.2.840.10008.1.2.4.203",
    "rle": "1.2.840.10008.1.2.5", "mpeg-2": "1.2.840.10008.1.2.4.100",
    "mpeg-4-avc": "1.2.840.10008.1.2.4.102", "hevc": "1.2.840.10008.1.2.4.107",
    "encapsulated-uncompressed": "1.2.840.10008.1.2.1.98",
}


def write_with_pixel_data(dataset: Dataset, folder: Path, transfer_syntax: str,
                          encapsulated: bool) -> Path:
    """`dataset` as a Part 10 file labelled `transfer_syntax`, its Pixel Data encoded by hand:
    encapsulated (undefined length, an empty offset table and one fragment, PS3.5 A.4) or
    native, whatever the label says. pydicom refuses to write such mismatches."""
    del dataset.PixelData
    syntax = UID(transfer_syntax)
    implicit, little = syntax == ImplicitVRLittleEndian, syntax != ExplicitVRBigEndian
    body = DicomBytesIO()
    body.is_implicit_VR, body.is_little_endian = implicit, little
    write_body(body, dataset)
    order = "<" if little else ">"
    pixels = bytes(range(64))
    tag = struct.pack(order + "HH", 0x7FE0, 0x0010)
    vr = b"" if implicit else (b"OB\0\0" if encapsulated else b"OW\0\0")
    if encapsulated:
        items = (struct.pack(order + "HHI", 0xFFFE, 0xE000, 0)
                 + struct.pack(order + "HHI", 0xFFFE, 0xE000, len(pixels)) + pixels
                 + struct.pack(order + "HHI", 0xFFFE, 0xE0DD, 0))
        element = tag + vr + struct.pack(order + "I", 0xFFFFFFFF) + items
    else:
        element = tag + vr + struct.pack(order + "I", len(pixels)) + pixels
    encoded = body.getvalue() + element
    if syntax == DeflatedExplicitVRLittleEndian:
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        encoded = deflater.compress(encoded) + deflater.flush()
        encoded += b"\0" * (len(encoded) % 2)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    header = DicomBytesIO()
    header.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(header, meta)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{'encapsulated' if encapsulated else 'native'}-{syntax}.dcm"
    path.write_bytes(header.getvalue() + encoded)
    return path


def code_sequence(value: str, scheme: str, meaning: str) -> Sequence:
    """A one-item code sequence (Procedure Code Sequence and the like)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return Sequence([item])


__all__ = ["ImplicitVRLittleEndian", "make_dataset", "make_file", "uid", "write_dataset"]
