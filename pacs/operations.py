"""Operator tools of issue #7: verify, reindex and delete, over the archive and the index.

Layer: over index, archive, encoding and ingest's public helpers; no pynetdicom, no printing
(problems go to a callback, summaries are returned). The archive files are the source of
truth: verify and reindex build index rows from them, never the other way round, and no tool
here deletes instance data except `delete` itself (and a byte-identical second copy).

A delete is crash-safe through a trash folder: the files move to `<root>/.trash/<txid>/files/`
(after a manifest of their UIDs is durable), the rows go in one transaction, then the folder.
`recover_deletes` finishes an interrupted one from the rows alone: a file whose row still
exists goes back (the delete never committed), a file whose row is gone is removed. A deleted
file is never visible to `Archive.iter_files`, so verify cannot re-index ("resurrect") it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydicom.dataset import Dataset

from pacs.archive import (
    Archive,
    adopt_file,
    fsync_folder,
    is_valid_uid,
    make_folders,
    move_file,
    trash_root,
)
from pacs.encoding import (
    FileLayout,
    MalformedDataset,
    check_structure,
    read_header,
    read_layout,
    uid_text,
)
from pacs.index import Index, IndexEntry, InstanceRecord
from pacs.ingest import INDEX_TAGS, index_entry

log = logging.getLogger(__name__)

LEVELS = ("patient", "study", "series", "instance")
MISSING_FILE = "missing-file"  # an index row whose file is gone
CHECKSUM_MISMATCH = "checksum-mismatch"  # size or SHA-256 differs from the row's
UNREADABLE_FILE = "unreadable-file"  # a row's file that cannot be read (permissions, I/O)
ORPHAN_FILE = "orphan-file"  # a file without an index row
TEMP_FILE = "temp-file"  # a temp file older than the threshold (left by a crash)
INTERRUPTED_DELETE = "interrupted-delete"  # a trash folder of a delete that did not finish
_STRAY_LOCK_AGE = 60.0  # a lock file without its folder is removed only after this long


class OperationError(Exception):
    """An operator request that cannot be carried out as asked (unknown or ambiguous key)."""


@dataclass(frozen=True)
class Problem:
    """One thing found wrong: its kind, archive path, SOP Instance UID and what was done."""

    kind: str
    path: str
    uid: str = ""
    detail: str = ""
    repaired: bool = False


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


# --- interrupted deletes ---------------------------------------------------------------------

@contextmanager
def _transaction_lock(lock_path: Path, create: bool) -> Iterator[bool]:
    """An exclusive flock on a delete's lock file; yields False when someone else holds it."""
    flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if create else 0)
    descriptor = os.open(lock_path, flags, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if create else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def _remove_stray_lock(lock: Path) -> None:
    """A lock file whose folder is gone (a crash between the two): removed once a minute old,
    so a delete that has just created it, before its folder, is never robbed of it."""
    try:
        if time.time() - lock.stat().st_mtime < _STRAY_LOCK_AGE:
            return
    except FileNotFoundError:
        return
    with _transaction_lock(lock, create=False) as mine:
        if mine:
            lock.unlink(missing_ok=True)


def _manifest(folder: Path) -> list[tuple[str, str]]:
    path = folder / "manifest"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="ascii").splitlines()
    return [(uid, relative) for uid, _, relative in (line.partition("\t") for line in lines)]


def _settle(archive: Archive, index: Index, folder: Path, apply: bool) -> tuple[int, int]:
    """Restore (row still there) or drop (row gone) each trashed file: (restored, dropped)."""
    restored = dropped = 0
    touched: set[Path] = set()
    for uid, relative in _manifest(folder):
        held = folder / "files" / relative
        if not held.is_file():
            continue
        row = index.get_instance(uid)
        if row is not None and not archive.exists(row.file_path):
            restored += 1
            if apply:
                target = archive.absolute(row.file_path)
                move_file(archive, held, target, sync=False)
                touched.update((held.parent, target.parent))
        else:
            dropped += 1
    for folder_to_sync in touched:
        fsync_folder(folder_to_sync)
    return restored, dropped


def recover_deletes(archive: Archive, index: Index, apply: bool = True,
                    on_problem: Callable[[Problem], None] | None = None) -> int:
    """Finish every delete interrupted by a crash; deletes still running are left alone.

    Returns how many were found. With `apply` False, only reports what would be done.
    """
    root = trash_root(archive)
    if not root.is_dir():
        return 0
    found = 0
    for entry in sorted(root.iterdir()):
        lock = entry.with_name(entry.name + ".lock")
        if entry.suffix == ".lock" and apply and not entry.with_suffix("").exists():
            _remove_stray_lock(entry)
        if not entry.is_dir():
            continue
        with _transaction_lock(lock, create=False) as mine:
            if not mine:
                continue  # a delete in progress holds it
            if not entry.is_dir():  # it finished between the listing and the lock
                lock.unlink(missing_ok=True)
                continue
            if not (entry / "manifest").is_file() and any((entry / "files").glob("*")):
                if on_problem:  # never made by `delete`: not ours to judge
                    on_problem(Problem(INTERRUPTED_DELETE, str(entry.relative_to(archive.root)),
                                       detail="files without a manifest; left alone"))
                continue
            found += 1
            restored, dropped = _settle(archive, index, entry, apply)
            if apply:
                _purge(entry)
                fsync_folder(root)
                lock.unlink(missing_ok=True)
                log.warning("finished interrupted delete %s: %d files restored, %d removed",
                            entry.name, restored, dropped)
            if on_problem:
                verb = ("put back %d files whose rows remain, removed %d whose rows are gone"
                        if apply else "--repair puts back %d files whose rows remain, removes "
                        "%d whose rows are gone")
                on_problem(Problem(INTERRUPTED_DELETE, str(entry.relative_to(archive.root)),
                                   detail=verb % (restored, dropped), repaired=apply))
    return found


def _purge(folder: Path) -> None:
    """Remove a delete's trash folder: files first, the manifest last, so that a crash in
    between never leaves files without the manifest that tells whose they are."""
    if (folder / "files").exists():
        shutil.rmtree(folder / "files")
    for leftover in sorted(folder.iterdir(), key=lambda p: p.name == "manifest"):
        leftover.unlink()
    folder.rmdir()


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


# --- delete ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeleteResult:
    """What a delete removed: index rows and files (files already missing are counted)."""

    instances: int
    files: int
    missing_files: int


def select_for_delete(index: Index, level: str, key: str,
                      issuer: str | None = None) -> list[InstanceRecord]:
    """The instances a delete of this patient/study/series/instance would remove.

    Raises OperationError for an unknown key, or a Patient ID held under several issuers
    when no `issuer` is given.
    """
    if level not in LEVELS:
        raise OperationError(f"unknown level {level!r}")
    if level == "patient" and issuer is None:
        issuers = index.patient_issuers(key)
        if len(issuers) > 1:
            shown = ", ".join(repr(i) for i in issuers)
            raise OperationError(f"Patient ID {key!r} exists under several issuers ({shown}); "
                                 "name one with --issuer")
    records = index.instances_under(level, key, issuer)
    if not records:
        raise OperationError(f"no {level} {key!r} in the index")
    return records


def delete(archive: Archive, index: Index, records: Sequence[InstanceRecord]) -> DeleteResult:
    """Remove these instances' files and rows together, crash-safe (see module docstring)."""
    root = trash_root(archive)
    make_folders(archive, root)
    txid = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}"
    folder, lock = root / txid, root / f"{txid}.lock"
    with _transaction_lock(lock, create=True):
        folder.mkdir()
        manifest = folder / "manifest"
        with open(manifest, "w", encoding="ascii") as handle:
            handle.writelines(f"{r.sop_instance_uid}\t{r.file_path}\n" for r in records)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_folder(folder)
        fsync_folder(root)
        moved = missing = 0
        touched: set[Path] = set()
        for record in records:
            source = archive.absolute(record.file_path)
            target = folder / "files" / record.file_path
            if not source.is_file():
                missing += 1
                continue
            move_file(archive, source, target, sync=False)
            touched.update((source.parent, target.parent))
            moved += 1
        for path in touched:  # every rename durable before the rows go
            fsync_folder(path)
        try:
            deleted = index.delete_instances([r.sop_instance_uid for r in records])
        except Exception:
            _settle(archive, index, folder, apply=True)  # not committed: put the files back
            _purge(folder)
            lock.unlink(missing_ok=True)
            raise
        _purge(folder)
        fsync_folder(root)
        lock.unlink(missing_ok=True)
    log.warning("deleted %d instances (%d files, %d already missing)", deleted, moved, missing)
    return DeleteResult(deleted, moved, missing)
