"""Operator tools that compare the archive with the index: verify (and repair) and reindex.

Room: services/. Imports index/, archive/, services/store (how ingest reads a header) and
services/operations (problems, interrupted deletes); no protocol, no printing. Verify and
reindex build index rows from the files, never the other way round; a byte-identical second
copy is the only file they remove.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydicom.dataset import Dataset

from pacs.archive.encoding import (
    FileLayout,
    MalformedDataset,
    check_structure,
    read_header,
    read_layout,
    uid_text,
)
from pacs.archive.files import (
    Archive,
    adopt_file,
    is_valid_uid,
)
from pacs.index.database import Index
from pacs.index.records import IndexEntry, InstanceRecord
from pacs.services.operations import (
    CHECKSUM_MISMATCH,
    MISSING_FILE,
    ORPHAN_FILE,
    TEMP_FILE,
    UNREADABLE_FILE,
    OperationError,
    Problem,
    recover_deletes,
)
from pacs.services.store import INDEX_TAGS, index_entry

log = logging.getLogger("pacs.operations")



@dataclass
class VerifyReport:
    """Counts of one verify run: rows and files checked, problems found and repaired."""

    rows: int = 0
    files: int = 0
    found: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)

    @property
    def remaining(self) -> int:
        """Problems found and not repaired: what still needs the operator."""
        return sum(self.found.values()) - sum(self.repaired.values())



# --- reading a file as ingest does, and taking it into the index ------------------------------

@dataclass(frozen=True)
class Adoption:
    """What re-indexing one archive file came to; `entry` is set when it is ready to index."""

    outcome: str  # ready, indexed, redundant, conflict, unindexable, unreadable, vanished
    detail: str = ""
    entry: IndexEntry | None = None
    previous: InstanceRecord | None = None


def _read_indexable(path: Path) -> tuple[FileLayout, Dataset, tuple[str, str, str, str]]:
    """Layout, header and (class, instance, study, series) UIDs, checked as ingest checks them."""
    layout = read_layout(path)
    check_structure(path, layout)
    dataset = read_header(path, INDEX_TAGS)
    uids = []
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        value = uid_text(dataset.get(keyword, ""))
        if not is_valid_uid(value):
            raise MalformedDataset(f"{keyword} is missing or not a valid UID: {value!r}")
        uids.append(value)
    return layout, dataset, (uids[0], uids[1], uids[2], uids[3])


def _same(archive: Archive, first: str, second: str) -> bool:
    """Whether two relative paths name the same archive file."""
    return first == second or archive.absolute(first) == archive.absolute(second)


def _second_copy(archive: Archive, relative: str, other: str, apply: bool) -> Adoption:
    """`relative` holds an instance already at `other`: identical bytes are redundant."""
    if archive.checksum(relative) != archive.checksum(other):
        return Adoption("conflict", f"differs from the copy at {other}; left for the operator")
    if apply:
        archive.remove(relative)
        log.info("removed %s: a byte-identical copy of %s", relative, other)
    return Adoption("redundant", f"byte-identical copy of {other}")


def adopt(archive: Archive, index: Index, relative: str, apply: bool,
          source_ae: str = "reindex") -> Adoption:
    """Prepare an archive file for the index, keeping its bytes (the archive is the truth).

    The header is read and the UIDs checked as ingest does. A file not at the path its UIDs
    give is moved there durably (when `apply`); a second copy of an instance whose file is in
    place is removed only when byte-identical, otherwise left as a conflict. Nothing is
    written to the index here: the caller adds `entry`.
    """
    path = archive.absolute(relative)
    try:
        layout, dataset, (_, sop, study, series) = _read_indexable(path)
    except FileNotFoundError:
        return Adoption("vanished")
    except MalformedDataset as exc:
        return Adoption("unindexable", f"not indexable: {exc}; left in place")
    except OSError as exc:
        return Adoption("unreadable", f"cannot read: {exc.strerror or exc}")
    canonical = archive.relative_path_for(study, series, sop)
    existing = index.get_instance(sop)
    if existing is not None and _same(archive, existing.file_path, relative):
        if not apply:
            return Adoption("indexed", previous=existing)
    elif existing is not None and archive.exists(existing.file_path):
        return _second_copy(archive, relative, existing.file_path, apply)
    if not _same(archive, relative, canonical) and archive.exists(canonical):
        return _second_copy(archive, relative, canonical, apply)
    if not apply:
        return Adoption("ready", "would be re-indexed", previous=existing)
    stored = adopt_file(archive, relative, canonical)
    entry = index_entry(
        dataset, layout.transfer_syntax, stored, source_ae,
        received_at=datetime.fromtimestamp(archive.absolute(canonical).stat().st_mtime, UTC),
    )
    moved = f"re-indexed, moved from {relative}" if relative != canonical else "re-indexed"
    return Adoption("ready", moved, entry, existing)


# --- verify ----------------------------------------------------------------------------------

def _check_row(archive: Archive, record: InstanceRecord, checksums: bool) -> Problem | None:
    path = archive.absolute(record.file_path)
    uid = record.sop_instance_uid
    try:
        size = path.stat().st_size
        if size != record.file_size:
            return Problem(CHECKSUM_MISMATCH, record.file_path, uid,
                           f"size {size}, indexed {record.file_size}")
        if checksums and (actual := archive.checksum(record.file_path)) != record.file_sha256:
            return Problem(CHECKSUM_MISMATCH, record.file_path, uid,
                           f"SHA-256 {actual}, indexed {record.file_sha256}")
    except FileNotFoundError:
        return Problem(MISSING_FILE, record.file_path, uid, "index row without its file")
    except OSError as exc:
        return Problem(UNREADABLE_FILE, record.file_path, uid, str(exc.strerror or exc))
    return None


def verify(
    archive: Archive,
    index: Index,
    *,
    checksums: bool = True,
    repair: bool = False,
    forget_missing: bool = False,
    temp_age: float = 3600.0,
    on_problem: Callable[[Problem], None] | None = None,
) -> VerifyReport:
    """Compare index and archive; report (and with `repair`, fix) what disagrees.

    Repairs: interrupted deletes are finished, temp files older than `temp_age` seconds are
    removed, files without a row are re-indexed from their headers. Rows without a file are
    removed only with `forget_missing` too (refused when the archive looks unmounted: no
    files at all); checksum mismatches are never touched.
    """
    if forget_missing and next(archive.iter_files(), None) is None and index.stats().instances:
        raise OperationError("the archive holds no files but the index has rows: is the "
                             "storage mounted? Nothing was forgotten")
    report = VerifyReport()

    def emit(problem: Problem) -> None:
        report.found[problem.kind] += 1
        report.repaired[problem.kind] += problem.repaired
        if on_problem:
            on_problem(problem)

    recover_deletes(archive, index, apply=repair, on_problem=emit)

    now = time.time()
    for temp in archive.iter_temp_files():
        try:
            age = now - temp.stat().st_mtime
        except FileNotFoundError:
            continue
        if age >= temp_age:
            if repair:
                temp.unlink(missing_ok=True)
            emit(Problem(TEMP_FILE, str(temp.relative_to(archive.root)),
                         detail=f"{age:.0f} s old", repaired=repair))

    # Rows, paged; remember their paths as hashes (8 bytes each, not a million strings).
    indexed: set[int] = set()
    for record in index.iter_instances_paged():
        report.rows += 1
        indexed.add(hash(record.file_path))
        problem = _check_row(archive, record, checksums)
        if problem is None:
            continue
        if problem.kind == MISSING_FILE:
            current = index.get_instance(record.sop_instance_uid)
            if current is None or archive.exists(current.file_path):
                continue  # deleted or re-stored meanwhile
            if repair and forget_missing:
                index.delete_instances([record.sop_instance_uid])
                log.warning("forgot %s: its file %s is gone", problem.uid, problem.path)
                problem = Problem(MISSING_FILE, problem.path, problem.uid,
                                  "row removed (--forget-missing)", repaired=True)
        emit(problem)

    for relative in archive.iter_files():
        report.files += 1
        if hash(relative) not in indexed:
            _check_orphan(archive, index, relative, repair, emit, report)
    return report


def _check_orphan(archive: Archive, index: Index, relative: str, repair: bool,
                  emit: Callable[[Problem], None], report: VerifyReport) -> None:
    adoption = adopt(archive, index, relative, apply=repair, source_ae="verify")
    previous = adoption.previous
    if adoption.outcome in ("vanished", "indexed") or (previous and previous.file_path == relative):
        return  # indexed (or removed) by someone else since the rows were read
    uid = previous.sop_instance_uid if previous else ""
    if adoption.entry is not None:
        uid = adoption.entry.instance["sop_instance_uid"]
        index.add_instance(adoption.entry, replace=previous is not None)
        if previous is not None:
            report.repaired[MISSING_FILE] += 1  # this file is the one its row was missing
        log.info("re-indexed orphan file %s as %s", relative, uid)
    repaired = adoption.entry is not None or (repair and adoption.outcome == "redundant")
    emit(Problem(ORPHAN_FILE, relative, uid, adoption.detail, repaired))


# --- reindex ---------------------------------------------------------------------------------

@dataclass
class ReindexSummary:
    """Counts of one reindex run, and the files that could not be indexed, with why."""

    files: int = 0
    indexed: int = 0
    moved: int = 0
    redundant_removed: int = 0
    checksum_changed: int = 0
    rows_removed: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)


def reindex(archive: Archive, index: Index, progress: Callable[[int], None] | None = None,
            batch_size: int = 200) -> ReindexSummary:
    """Rebuild the index from the archive files alone: upsert every file, then drop rows
    whose file is gone. Idempotent, and safe while a server stores (see README)."""
    recover_deletes(archive, index)
    summary = ReindexSummary()
    pending: list[IndexEntry] = []

    def flush() -> None:
        summary.indexed += len(index.upsert_instances(pending))
        pending.clear()

    for number, relative in enumerate(archive.iter_files(), start=1):
        summary.files += 1
        adoption = adopt(archive, index, relative, apply=True)
        if adoption.entry is not None:
            entry, previous = adoption.entry, adoption.previous
            summary.moved += entry.file_path != relative
            if previous is not None and previous.file_sha256 != entry.file_sha256:
                summary.checksum_changed += 1
                log.warning("%s: the file's SHA-256 differs from the index's; the file wins",
                            entry.file_path)
            pending.append(entry)
            if len(pending) >= batch_size:
                flush()
        elif adoption.outcome == "redundant":
            summary.redundant_removed += 1
        elif adoption.outcome != "vanished":
            summary.rejected.append((relative, adoption.detail))
        if progress:
            progress(number)
    flush()

    if summary.files == 0 and index.stats().instances:
        raise OperationError("the archive holds no files but the index has rows: is the "
                             "storage mounted? Nothing was removed")
    gone = [r.sop_instance_uid for r in index.iter_instances_paged() if not
            archive.exists(r.file_path)]
    for start in range(0, len(gone), 500):
        # Re-read each: a row may have been re-pointed at a present file meanwhile.
        batch = [uid for uid in gone[start:start + 500]
                 if (row := index.get_instance(uid)) and not archive.exists(row.file_path)]
        summary.rows_removed += index.delete_instances(batch)
    return summary


