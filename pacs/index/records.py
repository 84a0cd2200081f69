"""The plain records the index hands out and takes in: no peewee rows, no pydicom Datasets.

Room: index/. Imports nothing of ours; services and faces may use these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


class IndexUnavailable(RuntimeError):
    """The index could not be read or written (database down, disk full, locked too long)."""


@dataclass(frozen=True)
class InstanceRecord:
    """One stored instance as the retrieve and operator tools need it."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    file_path: str
    file_size: int
    file_sha256: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str


@dataclass
class IndexEntry:
    """What ingest hands the index for one instance: column values per level, and the file."""

    patient: dict[str, str]
    study: dict[str, str]
    series: dict[str, str]
    instance: dict[str, str]
    transfer_syntax_uid: str
    file_path: str
    file_size: int
    file_sha256: str
    source_ae: str = ""
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class AddResult:
    """Outcome of `add_instance`: inserted, kept (already there) or replaced."""

    outcome: str
    previous_file_path: str | None = None


@dataclass(frozen=True)
class IndexStats:
    """Counts at each level and bytes on disk."""

    patients: int
    studies: int
    series: int
    instances: int
    bytes: int
