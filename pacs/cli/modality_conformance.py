"""The conformance statement's sections for the modality services: Modality Worklist FIND,
MPPS and Storage Commitment Push Model (PS3.2 A.4.2.1.4), with their status tables.

Room: cli/. Imports config, model/status and cli/sop_conformance (the status tables and
their "returned when" texts, which live there for every service).
"""

from __future__ import annotations

from pacs.cli.sop_conformance import status_table
from pacs.config import Settings
from pacs.model.status import (
    CommitmentFailure,
    CommitmentStatus,
    ProcedureStepStatus,
    WorklistStatus,
)


def worklist_section(settings: Settings) -> list[str]:
    """Modality Worklist Information Model - FIND SCP."""
    folder = f"`{settings.worklist_folder}`" if settings.worklist_folder else "none"
    return [
        "- **Items** are kept in the index (`pacs worklist add/list/remove`); the worklist "
        f"folder (`worklist.folder`: {folder}) is read into it on each query.",
        "- **Matching** as C-FIND (wildcards, ranges, character sets), except that an item "
        "whose attribute is empty does not match a non-empty key (PS3.4 K.2.2.1.1.1); items "
        "whose step an MPPS completed are no longer returned.",
        "",
        *status_table(WorklistStatus, settings),
    ]


def mpps_section(settings: Settings) -> list[str]:
    """Modality Performed Procedure Step SCP."""
    return [
        "- **N-CREATE** (IN PROGRESS) and **N-SET** (attributes, then COMPLETED or "
        "DISCONTINUED) with the rules of PS3.4 F.7.2; each step is durable before the answer; "
        "a final step links the instances it lists and marks the worklist items it references "
        "done. `pacs mpps list` shows them.",
        "",
        *status_table(ProcedureStepStatus, settings),
    ]


def commitment_section(settings: Settings) -> list[str]:
    """Storage Commitment Push Model SCP."""
    return [
        "- **N-ACTION** (Action Type 1) is answered once the request is durable; each "
        "instance is committed only when its file matches the size and SHA-256 in the index.",
        "- **N-EVENT-REPORT** (Event Type 1, or 2 with the Failed SOP Sequence) on the same "
        "association when the requester is still there, else on a new association to its "
        "remote AE entry; undelivered reports are retried from "
        f"{settings.commitment_retry_interval:g} s, doubling, for "
        f"{settings.commitment_expiry:g} s, and survive a restart.",
        "",
        *status_table(CommitmentStatus, settings),
        "",
        "Failure Reasons in the Failed SOP Sequence:",
        "",
        *status_table(CommitmentFailure, settings),
    ]
