"""The file archive: where instances live on disk, and how they get there safely.

Room: archive/. Imports the standard library only. Paths are derived
from hashes of validated UIDs and kept relative to the root; nothing here resolves a path
outside the root. A file reaches its final name only after its bytes are fsynced (temp file,
fsync, rename, fsync of the folder), so a name in the archive always means a complete file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

TEMP_FOLDER = ".tmp"
# The relative paths relative_path_for makes: `ab/<32 hex>/<32 hex>/<64 hex>.dcm`.
_CANONICAL = re.compile(r"[0-9a-f]{2}/[0-9a-f]{32}/[0-9a-f]{32}/[0-9a-f]{64}\.dcm\Z")
SUFFIX = ".dcm"
_CHUNK = 1 << 20
_KNOWN_FOLDERS_LIMIT = 20_000  # series folders remembered (about 4 MB at most)


class ArchiveError(OSError):
    """A file operation in the archive that failed (disk full, permissions, bad path)."""


# PS3.5 9.1: components of digits, no leading zero unless alone, separated by single dots.
_VALID_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")


def is_valid_uid(value: str) -> bool:
    """A UID as PS3.5 9.1 allows it: digits and dots, no empty or zero-led parts, ≤ 64 chars."""
    return 0 < len(value) <= 64 and _VALID_UID.fullmatch(value) is not None


def _uid_hash(uid: str) -> str:
    if not is_valid_uid(uid):
        raise ValueError(f"not a valid UID: {uid[:80]!r}")
    return hashlib.sha256(uid.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class StoredFile:
    """A file placed in the archive: its relative path, size and SHA-256."""

    relative_path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Content:
    """What one read of a file learned: its SHA-256 and size, its bytes already fsynced."""

    sha256: str
    size: int


def sync_and_hash(handle: BinaryIO) -> Content:
    """Hash an open file from its start in one sequential read, then fsync it.

    Lets the caller that already opened a received file to check it do everything with that
    one open: no second open and read-back just for the hash.
    """
    digest = hashlib.sha256()
    size = 0
    handle.seek(0)
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    os.fsync(handle.fileno())
    return Content(digest.hexdigest(), size)


def sync_received(handle: BinaryIO, sha256: str, size: int) -> Content:
    """fsync a file whose writer hashed it as it wrote it (`sha256` of its `size` bytes); one
    whose length says it changed since is hashed here after all."""
    if os.fstat(handle.fileno()).st_size != size:
        return sync_and_hash(handle)
    os.fsync(handle.fileno())
    return Content(sha256, size)


class Archive:
    """The folder of instance files, rooted at `root`."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self._root_text = str(self.root)
        self.temp_dir = self.root / TEMP_FOLDER
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._temp_device = os.stat(self.temp_dir).st_dev
        # Folders known to exist, so a store into a known series folder stats nothing; one
        # removed behind our back is found by the rename failing, and made again.
        self._known_folders: set[str] = set()

    # --- paths -----------------------------------------------------------------------------

    def relative_path_for(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
        """Where an instance lives: `ab/<study hash>/<series hash>/<instance hash>.dcm`.

        Raises ValueError when any UID is invalid, before it can become part of a path.
        """
        study, series, instance = map(_uid_hash, (study_uid, series_uid, sop_instance_uid))
        return f"{study[:2]}/{study[:32]}/{series[:32]}/{instance}{SUFFIX}"

    def absolute(self, relative_path: str) -> Path:
        """The absolute path of a relative archive path; refuses anything outside the root."""
        return Path(self._absolute_text(relative_path))

    def _absolute_text(self, relative_path: str) -> str:
        if _CANONICAL.match(relative_path):
            # The shape relative_path_for makes: hex names under the (resolved) root, no
            # '..', nothing to resolve; this runs several times per store.
            return f"{self._root_text}/{relative_path}"
        candidate = (self.root / relative_path).resolve()
        if candidate == self.root or self.root not in candidate.parents:
            raise ArchiveError(f"path {relative_path!r} is outside the archive")
        return str(candidate)

    # --- writing ----------------------------------------------------------------------------

    def new_temp_path(self) -> Path:
        """A fresh, empty temp file inside the archive (same file system as the final name)."""
        handle, name = tempfile.mkstemp(suffix=SUFFIX, dir=self.temp_dir)
        os.close(handle)
        return Path(name)

    def can_rename(self, handle: BinaryIO) -> bool:
        """Whether this open file is on the archive's file system (placing it is a rename)."""
        return os.fstat(handle.fileno()).st_dev == self._temp_device

    def place(self, source: Path, relative_path: str, *, content: Content | None = None,
              sync_folder: bool = True) -> StoredFile:
        """Make `source` (a complete file) the archive file at `relative_path`, durably.

        `source` is moved when it is on the archive's file system, copied otherwise; either way
        the bytes are fsynced before the rename and the folder after it. An existing file at
        that name is replaced atomically. `content`, from `sync_and_hash` on this very file,
        spares the read-back of a file that is renamed. Without `sync_folder` the caller must
        `sync_folders` the placed paths (many at once) before relying on the new name.
        """
        # Plain strings, not Path objects: this runs for every store.
        target = self._absolute_text(relative_path)
        folder = target.rpartition("/")[0]
        try:
            self._make_known_folder(folder)
            if os.stat(source).st_dev == self._temp_device:
                if content is None:
                    digest, size = self._sync_and_hash(source)
                else:
                    digest, size = content.sha256, content.size
                self._replace(source, target, folder)
            else:
                staged = self.new_temp_path()
                try:
                    digest, size = self._copy_sync_and_hash(source, staged)
                    self._replace(staged, target, folder)
                except BaseException:
                    staged.unlink(missing_ok=True)
                    raise
            if sync_folder:
                _fsync_dir(folder)
        except OSError as exc:
            raise ArchiveError(f"cannot write {relative_path}: {exc.strerror or exc}") from exc
        return StoredFile(relative_path, size, digest)

    def sync_folders(self, relative_paths: Iterable[str]) -> None:
        """fsync, once each, the folders holding these archive files (renames made durable)."""
        folders = {self._absolute_text(path).rpartition("/")[0] for path in relative_paths}
        try:
            for folder in sorted(folders):
                _fsync_dir(folder)
        except OSError as exc:
            raise ArchiveError(f"cannot sync {folder}: {exc.strerror or exc}") from exc

    def _make_known_folder(self, folder: str) -> None:
        if folder not in self._known_folders:
            self._make_parents(Path(folder))
            if len(self._known_folders) >= _KNOWN_FOLDERS_LIMIT:
                self._known_folders.clear()
            self._known_folders.add(folder)

    def _replace(self, source: Path | str, target: str, folder: str) -> None:
        """Rename `source` to `target`; a folder removed since we knew it is made again."""
        try:
            os.replace(source, target)
        except FileNotFoundError:
            if not os.path.exists(source):
                raise
            self._known_folders.discard(folder)
            self._make_known_folder(folder)
            os.replace(source, target)

    def _make_parents(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for created in reversed(missing):
            try:
                created.mkdir()
            except FileExistsError:
                pass
            # A new folder's entry must be durable in its parent too.
            _fsync_dir(created.parent)

    @staticmethod
    def _sync_and_hash(path: Path) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb+") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            os.fsync(handle.fileno())
        return digest.hexdigest(), size

    @staticmethod
    def _copy_sync_and_hash(source: Path, target: Path) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with open(source, "rb") as reader, open(target, "wb") as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        return digest.hexdigest(), size

    # --- reading and removing -----------------------------------------------------------------

    def exists(self, relative_path: str) -> bool:
        """Whether the archive holds a file at this relative path."""
        return self.absolute(relative_path).is_file()

    def checksum(self, relative_path: str) -> str:
        """SHA-256 of the stored file, read in chunks."""
        digest = hashlib.sha256()
        with open(self.absolute(relative_path), "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def remove(self, relative_path: str) -> None:
        """Delete an archive file (no error when it is already gone), durably."""
        target = self.absolute(relative_path)
        try:
            target.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(target.parent)

    def iter_files(self) -> Iterator[str]:
        """Every instance file in the archive, as a relative path; temp and trash excluded."""
        for folder, subfolders, names in os.walk(self.root):
            if Path(folder) == self.root:
                subfolders[:] = [s for s in subfolders if s not in (TEMP_FOLDER, TRASH_FOLDER)]
            for name in names:
                if name.endswith(SUFFIX):
                    yield os.path.relpath(os.path.join(folder, name), self.root)

    def iter_temp_files(self) -> Iterator[Path]:
        """Temp files left in the archive (by a crash, or by stores still in flight)."""
        if self.temp_dir.is_dir():
            yield from (p for p in self.temp_dir.iterdir() if p.is_file())


def _fsync_dir(folder: Path | str) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --- operator tools (verify, reindex, delete) ---------------------------------------------------
# A delete first moves its files into `<root>/.trash/<transaction>/` (durable renames), then
# removes the rows, then the folder; `iter_files` never looks inside, so a crash can never turn
# a deleted file back into an "orphan" that verify would re-index.

TRASH_FOLDER = ".trash"


def trash_root(archive: Archive) -> Path:
    """The folder holding the files of deletes in progress (or interrupted by a crash)."""
    return archive.root / TRASH_FOLDER


def fsync_folder(folder: Path) -> None:
    """Make the entries of `folder` (creations, renames, removals) durable."""
    _fsync_dir(folder)


def make_folders(archive: Archive, folder: Path) -> None:
    """Create `folder` and its missing parents, each made durable in its parent."""
    archive._make_parents(folder)


def move_file(archive: Archive, source: Path, target: Path, sync: bool = True) -> None:
    """Rename `source` to `target` (both inside the archive root, same file system).

    With `sync`, both folders are fsynced afterwards; without it the caller fsyncs them in a
    batch (collect `source.parent` and `target.parent`) before depending on the move.
    """
    for path in (source, target):
        if path.resolve() != archive.root and archive.root not in path.resolve().parents:
            raise ArchiveError(f"path {path} is outside the archive")
    try:
        make_folders(archive, target.parent)
        os.rename(source, target)
    except OSError as exc:
        raise ArchiveError(f"cannot move {source} to {target}: {exc.strerror or exc}") from exc
    if sync:
        _fsync_dir(source.parent)
        if target.parent != source.parent:
            _fsync_dir(target.parent)


def adopt_file(archive: Archive, relative_path: str, target_relative_path: str) -> StoredFile:
    """Move an archive file to `target_relative_path` keeping its bytes; hash it on the way.

    The bytes are fsynced before the rename and both folders after it, as `place` does. Used
    to re-index a file that is already in the archive but not where its UIDs say it belongs.
    """
    source = archive.absolute(relative_path)
    target = archive.absolute(target_relative_path)
    try:
        digest, size = archive._sync_and_hash(source)
    except OSError as exc:
        raise ArchiveError(f"cannot read {relative_path}: {exc.strerror or exc}") from exc
    if source != target:
        move_file(archive, source, target)
    return StoredFile(target_relative_path, size, digest)
