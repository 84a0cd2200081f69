"""Storage Commitment Push Model (PS3.4 J.3): reading a request's Action Information, and the
Event Information of its result.

Room: model/. Imports model/status and pydicom; no database, no network. The request is
checked before it is accepted (an invalid one gets its N-ACTION failure status at once); the
result names every referenced instance, committed or failed with its Failure Reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from pacs.model.status import CommitmentStatus, DicomError

STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
# The well-known SOP Instance every N-ACTION of the Push Model names (PS3.4 J.3.5).
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_COMMITMENT = 1  # Action Type ID (J.3.2.1.1)
ALL_COMMITTED, FAILURES_EXIST = 1, 2  # Event Type IDs (J.3.3.1.1)


@dataclass(frozen=True)
class CommitmentAction:
    """A checked Storage Commitment request: its transaction and the instances it names."""

    transaction_uid: str
    references: tuple[tuple[str, str], ...]  # (SOP Class UID, SOP Instance UID)


@dataclass(frozen=True)
class Outcome:
    """The result for one referenced instance: 0 committed, else its Failure Reason."""

    sop_class_uid: str
    sop_instance_uid: str
    failure: int = 0


def _invalid(comment: str) -> DicomError:
    return DicomError(CommitmentStatus.INVALID_ARGUMENT_VALUE, comment)


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword, "")
    return str(value or "").strip("\x00 ")


def parse_action(requested_instance: str, action_type: int | None,
                 information: Dataset | None) -> CommitmentAction:
    """J.3.2: the request for the well-known instance (else 0x0117), Action Type 1 (else
    0x0123), a valid Transaction UID and a Referenced SOP Sequence whose every item names a
    SOP Class and a SOP Instance (else 0x0115 Invalid Argument Value)."""
    if requested_instance != STORAGE_COMMITMENT_INSTANCE:
        raise DicomError(CommitmentStatus.INVALID_SOP_INSTANCE,
                         f"requested instance {requested_instance[:30]!r} is not "
                         f"{STORAGE_COMMITMENT_INSTANCE}")
    if action_type != REQUEST_COMMITMENT:
        raise DicomError(CommitmentStatus.NO_SUCH_ACTION_TYPE,
                         f"Action Type ID {action_type} is not 1 (request commitment)")
    if information is None:
        raise _invalid("no Action Information")
    transaction = _text(information, "TransactionUID")
    if not transaction or not UID(transaction).is_valid:
        raise _invalid(f"Transaction UID {transaction[:30]!r} is missing or invalid")
    items = information.get("ReferencedSOPSequence")
    if not items:
        raise _invalid("Referenced SOP Sequence is missing or empty")
    references = []
    for number, item in enumerate(items, 1):
        sop_class = _text(item, "ReferencedSOPClassUID")
        sop_instance = _text(item, "ReferencedSOPInstanceUID")
        if not sop_class or not sop_instance:
            raise _invalid(f"Referenced SOP Sequence item {number} lacks a UID")
        references.append((sop_class, sop_instance))
    return CommitmentAction(transaction, tuple(references))


def _reference(outcome: Outcome) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = outcome.sop_class_uid
    item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    if outcome.failure:
        item.FailureReason = outcome.failure
    return item


def event_information(transaction_uid: str, outcomes: Sequence[Outcome],
                      retrieve_ae_title: str) -> tuple[int, Dataset]:
    """J.3.3.1: the Event Type ID and Event Information of a result: every instance of the
    request, committed ones in the Referenced SOP Sequence, failed ones with their Failure
    Reason in the Failed SOP Sequence; the Transaction UID of the request."""
    committed = [o for o in outcomes if not o.failure]
    failed = [o for o in outcomes if o.failure]
    information = Dataset()
    information.TransactionUID = transaction_uid
    if committed:
        information.RetrieveAETitle = retrieve_ae_title  # where committed instances are
        information.ReferencedSOPSequence = DicomSequence([_reference(o) for o in committed])
    if failed:
        information.FailedSOPSequence = DicomSequence([_reference(o) for o in failed])
    return (FAILURES_EXIST if failed else ALL_COMMITTED), information
