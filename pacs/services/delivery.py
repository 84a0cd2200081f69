"""Handing stored instances out whole, in parts or as frames: the file streamed as stored,
a converted data set as a Part 10 file, the header for metadata, one element's value, frames.

Room: services/. Imports archive/, index/records, services/retrieve and pydicom; no protocol.
WADO-RS and WADO-URI use it; memory per call is bounded by one instance (files stream in
chunks), never by a study.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import get_frame
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.pixels import pixel_array
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from pacs.archive.encoding import MalformedDataset, read_layout
from pacs.archive.files import Archive, ArchiveError
from pacs.index.records import InstanceRecord
from pacs.services.retrieve import InstanceUnavailable, convert, read_instance

CHUNK = 1024 * 1024
PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class OpenedFile:
    """A stored file checked against the index (exists, right size), ready to stream."""

    record: InstanceRecord
    path: str
    transfer_syntax_uid: str

    def chunks(self) -> Iterator[bytes]:
        """The whole file, byte for byte, in chunks; its SHA-256 is checked on the way and a
        mismatch raises InstanceUnavailable (the response is cut, never silently wrong)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                yield chunk
        if self.record.file_sha256 and digest.hexdigest() != self.record.file_sha256:
            raise InstanceUnavailable(f"file {self.record.file_path} does not match its SHA-256")


def open_stored(archive: Archive, record: InstanceRecord) -> OpenedFile:
    """Check an instance's file before streaming it; InstanceUnavailable when it is not right."""
    try:
        path = archive.absolute(record.file_path)
        layout = read_layout(path)
    except FileNotFoundError:
        raise InstanceUnavailable(f"file {record.file_path} is missing") from None
    except (OSError, ArchiveError, MalformedDataset) as exc:
        raise InstanceUnavailable(f"file {record.file_path} is unreadable: {exc}") from None
    if layout.size != record.file_size:
        raise InstanceUnavailable(f"file {record.file_path} is {layout.size} bytes, "
                                  f"the index says {record.file_size}")
    return OpenedFile(record, str(path), layout.transfer_syntax)


def converted_part10(archive: Archive, record: InstanceRecord, target_syntax: str) -> bytes:
    """The instance re-encoded in `target_syntax` (uncompressed), as a Part 10 file.

    Raises InstanceUnavailable or ConversionError."""
    converted = convert(read_instance(archive, record), target_syntax)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(record.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(record.sop_instance_uid)
    meta.TransferSyntaxUID = UID(target_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue() + converted.data_set


def read_dataset(archive: Archive, record: InstanceRecord, defer_size: int | None) -> Dataset:
    """The stored data set, values larger than `defer_size` left unread (read on access).

    Raises InstanceUnavailable when the file is missing or unreadable."""
    opened = open_stored(archive, record)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(opened.path, defer_size=defer_size)
    except Exception as exc:  # pydicom raises many types for bytes it cannot read
        raise InstanceUnavailable(f"file {record.file_path} is unreadable: {exc}") from exc


def number_of_frames(dataset: Dataset) -> int:
    """Frames in an image (1 when Number of Frames is absent); 0 without pixel data."""
    if PIXEL_DATA not in dataset:
        return 0
    try:
        return max(1, int(dataset.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def is_encapsulated(dataset: Dataset) -> bool:
    """Whether the pixel data is stored compressed (encapsulated, PS3.5 A.4)."""
    return UID(dataset.file_meta.TransferSyntaxUID).is_encapsulated


def stored_frame(dataset: Dataset, index: int) -> bytes:
    """Frame `index` (0-based) as stored: a compressed bitstream, or native pixel bytes."""
    count = number_of_frames(dataset)
    if is_encapsulated(dataset):
        return bytes(get_frame(dataset.PixelData, index, number_of_frames=count))
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    samples, bits = int(dataset.get("SamplesPerPixel", 1)), int(dataset.BitsAllocated)
    pixels = rows * columns * samples
    if bits == 1:  # PS3.5 8.1.1: single-bit frames are packed end to end
        start, end = index * pixels, (index + 1) * pixels
        data = dataset.PixelData
        return bytes(data[start // 8:(end + 7) // 8])
    length = pixels * bits // 8
    return bytes(dataset.PixelData[index * length:(index + 1) * length])


def decoded_frame(dataset: Dataset, index: int) -> bytes:
    """Frame `index` decompressed to native little-endian pixel bytes (colour as RGB)."""
    return bytes(pixel_array(dataset, index=index).tobytes())
