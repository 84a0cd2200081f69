"""C-MOVE / C-GET sub-operations from index rows: destinations, the instance set, presentation
contexts, counts, the failed list, reading stored files and converting them.

Room: services/. Imports config, index/, archive/, model/ and pydicom; no protocol. The
sub-operation loop (services/suboperations.py) and the faces (dimse/retrieve.py, and WADO
later) use what this module plans, and report each outcome back to `Retrieval`.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pacs.archive.encoding import MalformedDataset, read_layout
from pacs.archive.files import Archive, ArchiveError
from pacs.config import Settings
from pacs.index.database import Index
from pacs.index.records import IndexUnavailable, InstanceRecord
from pacs.model.retrieve_identifier import RetrieveRequest
from pacs.model.status import DicomError, RetrieveStatus

# PS3.8 9.3.2.2: at most 128 presentation contexts (odd IDs 1-255) in one association.
MAX_CONTEXTS = 128
# Number of ... Sub-operations are US (PS3.7 9.3.4): a larger set cannot be counted.
MAX_SUB_OPERATIONS = 65535
# What a destination that refuses the stored syntax may get instead, best first.
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# Failed SOP Instance UID List is UI: a 16-bit length in explicit VR.
_MAX_EXPLICIT_LENGTH = 0xFFFE


class Outcome(Enum):
    """How one C-STORE sub-operation ended."""

    COMPLETED = "completed"
    WARNING = "warning"
    FAILED = "failed"


@dataclass(frozen=True)
class Counts:
    """The four sub-operation counts of a C-MOVE/C-GET response (PS3.7 9.3.4.2, 9.3.3.2)."""

    remaining: int
    completed: int
    failed: int
    warning: int


@dataclass
class Retrieval:
    """The instance set of one retrieve, taken once, and what became of each sub-operation."""

    instances: list[InstanceRecord]
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Number of sub-operations: one per instance in the set."""
        return len(self.instances)

    @property
    def remaining(self) -> int:
        """Sub-operations not yet attempted."""
        return self.total - self.completed - self.failed - self.warning

    def record(self, instance: InstanceRecord, outcome: Outcome) -> None:
        """Count one finished sub-operation; a failure adds its UID to the failed list."""
        if outcome is Outcome.COMPLETED:
            self.completed += 1
        elif outcome is Outcome.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(instance.sop_instance_uid)

    def counts(self) -> Counts:
        """The counts as they stand; they always add up to `total`."""
        return Counts(self.remaining, self.completed, self.failed, self.warning)

    def final_status(self, cancelled: bool = False) -> RetrieveStatus:
        """PS3.4 C.4.2.1.5: Cancel, Success, Warning (0xB000) or all failed (0xA702)."""
        if cancelled:
            return RetrieveStatus.CANCEL
        if self.failed == 0 and self.warning == 0:
            return RetrieveStatus.SUCCESS
        if self.failed == self.total:
            return RetrieveStatus.OUT_OF_RESOURCES_SUB_OPERATIONS
        return RetrieveStatus.SUB_OPERATIONS_WARNING


def find_instances(index: Index, request: RetrieveRequest) -> list[InstanceRecord]:
    """The instance set of a request, read from the index once; refused when uncountable."""
    try:
        instances = index.instances_for_retrieve(
            request.patient_ids, request.study_uids, request.series_uids,
            request.sop_instance_uids,
        )
    except IndexUnavailable as exc:
        raise DicomError(RetrieveStatus.UNABLE_TO_PROCESS, f"index unavailable: {exc}") from exc
    if len(instances) > MAX_SUB_OPERATIONS:
        raise DicomError(RetrieveStatus.OUT_OF_RESOURCES_MATCHES,
                         f"{len(instances)} instances; retrieve at a lower level")
    return instances


# --- destinations -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """An address to try for a Move Destination."""

    host: str
    port: int
    tls: bool = False


def resolve_destination(settings: Settings, destination_ae: str, calling_ae: str,
                        requester_host: str) -> list[Endpoint]:
    """Where a C-MOVE's C-STOREs go: the AE table, else (opt-in) back to the requester.

    With `reply_to_requester`, a destination equal to the calling AE title that is not in the
    table is answered at the requester's own address, on each allow-listed port in turn.
    Raises 0xA801 when there is nowhere to go.
    """
    destination_ae = destination_ae.strip()
    remote = settings.remote(destination_ae) if destination_ae else None
    if remote is not None:
        return [Endpoint(remote.host, remote.port, remote.tls)]
    if (settings.reply_to_requester and settings.reply_ports and destination_ae
            and destination_ae == calling_ae.strip()):
        return [Endpoint(requester_host, port) for port in settings.reply_ports]
    raise DicomError(RetrieveStatus.MOVE_DESTINATION_UNKNOWN,
                     f"Move Destination {destination_ae[:16]!r} is unknown")


# --- presentation contexts ----------------------------------------------------------------------

@dataclass(frozen=True)
class ContextProposal:
    """A presentation context to propose: one SOP class, its transfer syntaxes in order."""

    sop_class_uid: str
    transfer_syntaxes: tuple[str, ...]


@dataclass
class AssociationPlan:
    """The contexts of one association and the instances that travel over it, in order."""

    contexts: list[ContextProposal]
    instances: list[InstanceRecord]


def _class_proposals(sop_class: str, stored: Iterable[str]) -> list[ContextProposal]:
    """Each stored syntax alone (so the peer cannot pick another), then the uncompressed
    syntaxes not already proposed, as the fallback for conversion."""
    syntaxes = list(dict.fromkeys(stored))
    proposals = [ContextProposal(sop_class, (syntax,)) for syntax in syntaxes]
    fallback = tuple(s for s in UNCOMPRESSED if s not in syntaxes)
    if fallback and any(s != ImplicitVRLittleEndian for s in syntaxes):
        proposals.append(ContextProposal(sop_class, fallback))
    return proposals


def plan_associations(instances: Sequence[InstanceRecord],
                      max_contexts: int = MAX_CONTEXTS) -> list[AssociationPlan]:
    """Group the instance set into associations of at most `max_contexts` contexts.

    Contexts come from the (SOP class, transfer syntax) pairs actually in the set; all the
    contexts of one SOP class stay in one association. Instances keep their index order within
    an association.
    """
    syntaxes_by_class: dict[str, list[str]] = {}
    for instance in instances:
        syntaxes_by_class.setdefault(instance.sop_class_uid, []).append(
            instance.transfer_syntax_uid)
    plans: list[AssociationPlan] = []
    plan_of_class: dict[str, AssociationPlan] = {}
    for sop_class, stored in syntaxes_by_class.items():
        proposals = _class_proposals(sop_class, stored)
        if not plans or len(plans[-1].contexts) + len(proposals) > max_contexts:
            plans.append(AssociationPlan([], []))
        plans[-1].contexts.extend(proposals)
        plan_of_class[sop_class] = plans[-1]
    for instance in instances:
        plan_of_class[instance.sop_class_uid].instances.append(instance)
    return plans


@dataclass(frozen=True)
class AcceptedContext:
    """An accepted presentation context on which we may send C-STORE requests."""

    context_id: int
    sop_class_uid: str
    transfer_syntax_uid: str


@dataclass(frozen=True)
class Delivery:
    """How an instance goes out: on which context, and whether it must be converted first."""

    context: AcceptedContext
    convert: bool


def choose_context(sop_class_uid: str, stored_syntax: str,
                   accepted: Sequence[AcceptedContext]) -> Delivery | None:
    """The stored syntax when the peer accepted it, else an uncompressed one; None: no way."""
    usable = [cx for cx in accepted if cx.sop_class_uid == sop_class_uid]
    for context in usable:
        if context.transfer_syntax_uid == stored_syntax:
            return Delivery(context, convert=False)
    for syntax in UNCOMPRESSED:
        for context in usable:
            if context.transfer_syntax_uid == syntax:
                return Delivery(context, convert=True)
    return None


# --- reading and converting ---------------------------------------------------------------------

class InstanceUnavailable(Exception):
    """The stored file of an instance is missing, unreadable or not what the index says."""


class ConversionError(Exception):
    """A stored instance could not be converted to the syntax the peer accepted."""


@dataclass(frozen=True)
class StoredInstance:
    """An instance's file as stored: all its bytes and where its data set starts."""

    record: InstanceRecord
    transfer_syntax_uid: str
    content: bytes
    dataset_offset: int

    @property
    def data_set(self) -> bytes:
        """The data set bytes exactly as stored, without preamble and File Meta Information."""
        return self.content[self.dataset_offset:]

    @property
    def data_view(self) -> memoryview:
        """The data set bytes as stored, as a view of the file's content (no copy)."""
        return memoryview(self.content)[self.dataset_offset:]


def read_instance(archive: Archive, record: InstanceRecord) -> StoredInstance:
    """Read an instance's file and check it is the one indexed (size and SHA-256)."""
    try:
        content = archive.absolute(record.file_path).read_bytes()
        layout = read_layout(io.BytesIO(content))  # one open and read of the file, not two
    except FileNotFoundError:
        raise InstanceUnavailable(f"file {record.file_path} is missing") from None
    except (OSError, ArchiveError, MalformedDataset) as exc:
        raise InstanceUnavailable(f"file {record.file_path} is unreadable: {exc}") from None
    if len(content) != record.file_size:
        raise InstanceUnavailable(f"file {record.file_path} is {len(content)} bytes, "
                                  f"the index says {record.file_size}")
    if record.file_sha256 and hashlib.sha256(content).hexdigest() != record.file_sha256:
        raise InstanceUnavailable(f"file {record.file_path} does not match its SHA-256")
    return StoredInstance(record, layout.transfer_syntax, content, layout.dataset_offset)


@dataclass(frozen=True)
class Converted:
    """A data set re-encoded for the peer; `decompressed` when its pixel data was decoded."""

    data_set: bytes
    decompressed: bool


def convert(stored: StoredInstance, target_syntax: str) -> Converted:
    """Re-encode a stored instance in an uncompressed syntax, decompressing its pixel data
    (pydicom with the pylibjpeg/openjpeg plugins) when it is stored compressed."""
    if target_syntax not in UNCOMPRESSED:
        raise ConversionError(f"cannot convert to {target_syntax}")
    source = UID(stored.transfer_syntax_uid)
    if source == ExplicitVRBigEndian:
        # pydicom would write OW pixel data without swapping its bytes.
        raise ConversionError("converting from Explicit VR Big Endian is not supported")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(io.BytesIO(stored.content))
            decompressed = False
            if source.is_compressed:
                dataset.decompress(generate_instance_uid=False)
                decompressed = True
            buffer = DicomBytesIO()
            buffer.is_little_endian = True
            buffer.is_implicit_VR = target_syntax == ImplicitVRLittleEndian
            write_dataset(buffer, dataset)
    except (InvalidDicomError, NotImplementedError, RuntimeError, ValueError, TypeError,
            AttributeError, KeyError, IndexError, OSError) as exc:
        raise ConversionError(f"{type(exc).__name__}: {exc}") from exc
    return Converted(buffer.getvalue(), decompressed)


def store_outcome(status: int | None, decompressed: bool) -> Outcome:
    """A C-STORE response status as a sub-operation outcome (PS3.4 B.2.3, PS3.7 C).

    Success after a decompression is a warning: the peer did not get the stored encoding.
    """
    if status is None:
        return Outcome.FAILED
    if status == 0x0000:
        return Outcome.WARNING if decompressed else Outcome.COMPLETED
    if status == 0x0001 or 0xB000 <= status <= 0xBFFF:
        return Outcome.WARNING
    return Outcome.FAILED


def failed_uid_list(uids: Sequence[str], explicit_vr: bool) -> list[str]:
    """The Failed SOP Instance UID List, cut to what a 16-bit explicit VR length can hold."""
    if not explicit_vr:
        return list(uids)
    kept: list[str] = []
    length = 0
    for uid in uids:
        added = len(uid) + (1 if kept else 0)
        if length + added > _MAX_EXPLICIT_LENGTH:
            break
        kept.append(uid)
        length += added
    return kept
