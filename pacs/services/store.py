"""The store pipeline shared by C-STORE and `pacs import`: check -> write -> index -> answer.

Room: services/. Imports index/, archive/, model/ and services/columns (what the index keeps
of a header) and services/commit; no protocol. Raises `DicomError` with the
precise C-STORE status; on any failure after the file was placed, the file is removed again, so
a failed store leaves neither file nor row behind.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian

from pacs.archive.encoding import FileLayout, MalformedDataset, has_part10_prefix
from pacs.archive.files import (
    Archive,
    ArchiveError,
    Content,
    is_valid_uid,
    sync_and_hash,
    sync_received,
)
from pacs.index.database import Index
from pacs.index.records import IndexUnavailable
from pacs.model.status import DicomError, StoreStatus
from pacs.services.columns import (  # noqa: F401 - column_values, index_entry, INDEX_TAGS:
    INDEX_TAGS,  # re-exported for verify, the worklist and tests
    IndexHeader,
    column_values,
    element_text,
    index_entry,
    read_index_header,
)
from pacs.services.commit import GroupCommit

log = logging.getLogger("pacs.ingest")


@dataclass(frozen=True)
class StoreResult:
    """What happened to one stored instance: stored, duplicate (kept first) or replaced."""

    outcome: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    file_path: str
    file_size: int


def _required_uid(header: IndexHeader, keyword: str) -> str:
    value = header.uid(keyword)
    if not value:
        raise DicomError(StoreStatus.CANNOT_UNDERSTAND, f"data set has no {keyword}")
    if not is_valid_uid(value):
        raise DicomError(
            StoreStatus.CANNOT_UNDERSTAND, f"{keyword} is not a valid UID: {value!r}"
        )
    return value


@dataclass(frozen=True)
class _Checked:
    """A data set fit to store: its index attributes, its layout and its validated UIDs."""

    header: IndexHeader
    layout: FileLayout
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str


class Ingestor:
    """Stores instances into the archive and the index, under a duplicate policy."""

    def __init__(self, archive: Archive, index: Index, duplicates: str = "keep"):
        self.archive = archive
        self.index = index
        self.duplicates = duplicates
        # Every store of this process commits through one group commit (all associations).
        self.committer = GroupCommit(archive, index, replace=duplicates == "replace")

    def store(
        self,
        source: Path,
        *,
        expected_sop_class_uid: str | None = None,
        expected_sop_instance_uid: str | None = None,
        source_ae: str = "",
        expected_study_instance_uid: str | None = None,
        received: tuple[str, int, bytes] | None = None,
    ) -> StoreResult:
        """Store the Part 10 file at `source` (moved into the archive when on its disk).

        `expected_*` are the UIDs of the C-STORE command (or of a STOW-RS request's study),
        which the data set must carry. `received` is the (SHA-256 hex, size, first bytes) of the
        file as its receiver wrote it, so it is not read back for the hash or the header.
        Returns only once the file and its index row are durable (see services/commit.py).
        """
        try:
            # One open serves the checks, the header, the hash and the fsync.
            with open(source, "rb") as handle:
                checked = self._check(handle, expected_sop_class_uid, expected_sop_instance_uid,
                                      expected_study_instance_uid, source_ae,
                                      received[2] if received else b"")
                if isinstance(checked, StoreResult):
                    return checked
                content = self._sync(handle, received) if self.archive.can_rename(handle) else None
        except OSError as exc:
            raise DicomError(StoreStatus.OUT_OF_RESOURCES, f"cannot read data set: {exc}") from None
        sop_instance = checked.sop_instance_uid
        relative = self.archive.relative_path_for(
            checked.study_instance_uid, checked.series_instance_uid, sop_instance)
        try:
            stored = self.archive.place(source, relative, content=content, sync_folder=False)
        except ArchiveError as exc:
            raise DicomError(StoreStatus.OUT_OF_RESOURCES, str(exc)) from None

        entry = checked.header.entry(checked.layout.transfer_syntax, stored, source_ae)
        try:
            added = self.committer.commit(entry)
        except (IndexUnavailable, ArchiveError) as exc:
            self._discard(stored.relative_path, sop_instance)
            reason = "index unavailable" if isinstance(exc, IndexUnavailable) else "not durable"
            raise DicomError(StoreStatus.OUT_OF_RESOURCES, f"{reason}: {exc}") from None

        outcome = {"inserted": "stored", "kept": "duplicate", "replaced": "replaced"}[added.outcome]
        previous = added.previous_file_path
        if previous and previous != stored.relative_path:
            # Kept: our copy lost a race and is not referenced. Replaced: the old file is not.
            orphan = stored.relative_path if added.outcome == "kept" else previous
            self.archive.remove(orphan)
        return StoreResult(outcome, checked.sop_class_uid, sop_instance,
                           checked.study_instance_uid, checked.series_instance_uid,
                           stored.relative_path, stored.size)

    def _check(self, handle: BinaryIO, expected_sop_class_uid: str | None,
               expected_sop_instance_uid: str | None,
               expected_study_instance_uid: str | None, source_ae: str, head: bytes,
               ) -> _Checked | StoreResult:
        """The header and layout of a data set fit to store, or the result for a kept
        duplicate; raises DicomError for a data set that must be refused."""
        try:
            layout, header = read_index_header(handle, head)
        except MalformedDataset as exc:
            raise DicomError(StoreStatus.CANNOT_UNDERSTAND, str(exc)) from None

        sop_class = header.uid("SOPClassUID")
        sop_instance = header.uid("SOPInstanceUID")
        if expected_sop_class_uid is not None and sop_class != expected_sop_class_uid:
            raise DicomError(
                StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"data set SOP Class UID differs from the command's: {sop_class or '(none)'}",
            )
        if expected_sop_instance_uid is not None and sop_instance != expected_sop_instance_uid:
            raise DicomError(
                StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"data set SOP Instance UID differs from the command's: {sop_instance or '(none)'}",
            )
        study = header.uid("StudyInstanceUID")
        if expected_study_instance_uid is not None and study != expected_study_instance_uid:
            raise DicomError(
                StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"data set Study Instance UID differs from the request's: {study or '(none)'}",
            )
        sop_class = _required_uid(header, "SOPClassUID")
        sop_instance = _required_uid(header, "SOPInstanceUID")
        study_uid = _required_uid(header, "StudyInstanceUID")
        series_uid = _required_uid(header, "SeriesInstanceUID")

        existing = self._existing(sop_instance)
        if existing is not None:
            if self.duplicates == "keep":
                log.info("duplicate %s from %s: kept the first copy", sop_instance, source_ae)
                return StoreResult("duplicate", sop_class, sop_instance, study_uid, series_uid,
                                   *existing)
            if self.duplicates == "reject":
                raise DicomError(
                    StoreStatus.DUPLICATE_SOP_INSTANCE, "SOP Instance UID is already stored"
                )
        return _Checked(header, layout, sop_class, sop_instance, study_uid, series_uid)

    @staticmethod
    def _sync(handle: BinaryIO, received: tuple[str, int, bytes] | None) -> Content:
        try:
            return (sync_received(handle, received[0], received[1]) if received
                    else sync_and_hash(handle))
        except OSError as exc:
            raise DicomError(StoreStatus.OUT_OF_RESOURCES,
                             f"cannot write data set: {exc.strerror or exc}") from None

    def _existing(self, sop_instance_uid: str) -> tuple[str, int] | None:
        try:
            return self.index.stored_file(sop_instance_uid)
        except IndexUnavailable as exc:
            raise DicomError(StoreStatus.OUT_OF_RESOURCES, f"index unavailable: {exc}") from None

    def _discard(self, relative_path: str, sop_instance_uid: str) -> None:
        """Remove a placed file whose indexing failed, unless a row already points at it."""
        try:
            current = self.index.get_instance(sop_instance_uid)
        except IndexUnavailable:
            current = None
        if current is None or current.file_path != relative_path:
            self.archive.remove(relative_path)


# --- pacs import ------------------------------------------------------------------------------

@dataclass
class ImportSummary:
    """Counts of one `pacs import` run, and why each rejected file was rejected."""

    stored: int = 0
    duplicates: int = 0
    not_dicom: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every regular file under the given files and folders, in a stable order."""
    for path in paths:
        if path.is_dir():
            for folder, subfolders, names in os.walk(path):
                subfolders.sort()
                for name in sorted(names):
                    candidate = Path(folder) / name
                    if candidate.is_file() and not candidate.is_symlink():
                        yield candidate
        elif path.is_file():
            yield path


def _stage_for_import(path: Path, archive: Archive) -> Path | None:
    """A Part 10 copy of `path` in the archive's temp folder, or None when it is not DICOM."""
    staged = archive.new_temp_path()
    try:
        if has_part10_prefix(path):
            shutil.copyfile(path, staged)
            return staged
        try:
            dataset = pydicom.dcmread(path, force=True)
            if "SOPClassUID" not in dataset or "SOPInstanceUID" not in dataset:
                raise ValueError("no SOP Class/Instance UID")
        except Exception:  # force=True reads arbitrary bytes; anything failing is not DICOM
            staged.unlink(missing_ok=True)
            return None
        # A bare data set (no Part 10 header) is Implicit VR Little Endian by convention.
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = dataset.SOPClassUID
        meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
        dataset.file_meta = meta
        dataset.save_as(staged, enforce_file_format=True)
        return staged
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def import_files(
    ingestor: Ingestor,
    paths: Iterable[Path],
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Ingest every DICOM file under `paths` through the C-STORE pipeline; idempotent."""
    summary = ImportSummary()
    for number, path in enumerate(iter_files(paths), start=1):
        staged = None
        try:
            staged = _stage_for_import(path, ingestor.archive)
            if staged is None:
                summary.not_dicom += 1
                continue
            result = ingestor.store(staged, source_ae="import")
            if result.outcome == "duplicate":
                summary.duplicates += 1
            else:
                summary.stored += 1
        except DicomError as exc:
            summary.rejected.append((str(path), exc.comment))
            log.warning("import rejected %s: %s", path, exc)
        except OSError as exc:
            summary.rejected.append((str(path), f"cannot read: {exc.strerror or exc}"))
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
            if progress:
                progress(number)
    return summary
