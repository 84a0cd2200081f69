"""Operator tools over the archive and the index: crash-safe delete and its recovery, and the
problem vocabulary that verify (services/verify.py) shares.

Room: services/. Imports index/, archive/ and model/; no protocol, no printing (problems go to
a callback, summaries are returned). The archive files are the source of truth: no tool here
deletes instance data except `delete` itself.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pacs.archive.files import (
    Archive,
    fsync_folder,
    make_folders,
    move_file,
    trash_root,
)
from pacs.index.database import Index
from pacs.index.records import InstanceRecord

log = logging.getLogger("pacs.operations")

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

