"""The SOP-specific parts of the conformance statement: statuses per service, the storage
policy, C-FIND keys and matching types per model and level, and retrieve behaviour.

Room: cli/. Imports model/ (levels, matching, status), services/retrieve (retrieve limits),
config and pydicom's dictionary. Every list here is read from the tables the services
run on; only the "when" of each status is prose, and a test checks that every status the
code can return has one.
"""

from __future__ import annotations

from enum import IntEnum

from pydicom.datadict import dictionary_description

from pacs.cli.markdown import md_table
from pacs.config import Settings
from pacs.model.levels import MODELS, keys_at
from pacs.model.matching import matching_types
from pacs.model.status import (
    CommitmentFailure,
    CommitmentStatus,
    EchoStatus,
    FindStatus,
    ProcedureStepStatus,
    RetrieveStatus,
    StoreStatus,
    WorklistStatus,
)
from pacs.services.retrieve import MAX_CONTEXTS, MAX_SUB_OPERATIONS, UNCOMPRESSED

# When each status is returned. {} placeholders are filled from the settings.
CONDITIONS: dict[type[IntEnum], dict[IntEnum, str]] = {
    EchoStatus: {
        EchoStatus.SUCCESS: "the calling AE may use `echo`",
        EchoStatus.NOT_AUTHORIZED: "the allow-list does not grant `echo` to the calling AE",
    },
    StoreStatus: {
        StoreStatus.SUCCESS: "the file is on disk (fsync'd) and indexed; also for an instance "
                             "held already, unless the duplicate policy is `reject`",
        StoreStatus.DUPLICATE_SOP_INSTANCE: "the SOP Instance UID is held already and the "
                                            "duplicate policy is `reject` (now: `{duplicates}`)",
        StoreStatus.SOP_CLASS_NOT_SUPPORTED: "never: a SOP class not listed in 4.2.1.1 gets no "
                                             "presentation context",
        StoreStatus.NOT_AUTHORIZED: "the allow-list does not grant `store` to the calling AE",
        StoreStatus.OUT_OF_RESOURCES: "disk full, archive not writable, index unavailable, or "
                                      "a data set over `limits.max_dataset_size` ({size})",
        StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS: "the data set's SOP Class or SOP "
                                                      "Instance UID differs from the request's",
        StoreStatus.CANNOT_UNDERSTAND: "a truncated or unparseable data set; Study, Series or "
                                       "SOP Instance UID missing or not a valid UID; Pixel "
                                       "Data not encoded as the transfer syntax says",
    },
    FindStatus: {
        FindStatus.SUCCESS: "matching is complete: every match was sent",
        FindStatus.PENDING: "one per matching entity, every requested key supported",
        FindStatus.PENDING_OPTIONAL_KEYS_UNSUPPORTED: "one per matching entity when the "
            "request holds a key this level does not support (returned zero length) or a "
            "private key (ignored)",
        FindStatus.CANCEL: "a C-CANCEL arrived; checked between responses",
        FindStatus.NOT_AUTHORIZED: "the allow-list does not grant `find` to the calling AE",
        FindStatus.OUT_OF_RESOURCES: "more than `query.max_results` ({max_results}) entities "
                                     "match (nothing is sent), or the index is unavailable",
        FindStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: "Query/Retrieve Level missing or not "
            "in the model, a malformed value, several values in a single-valued key{find_strict}"
            "; Offending Element names the element",
        FindStatus.UNABLE_TO_PROCESS: "the SOP class is not a C-FIND model, or an internal "
                                      "error while matching",
    },
    RetrieveStatus: {
        RetrieveStatus.SUCCESS: "every sub-operation completed, or nothing matched (no "
                                "association is opened)",
        RetrieveStatus.PENDING: "after each C-STORE sub-operation, with the Remaining, "
                                "Completed, Failed and Warning counts",
        RetrieveStatus.CANCEL: "a C-CANCEL arrived (checked between sub-operations): the "
                               "counts so far and the Failed SOP Instance UID List",
        RetrieveStatus.SUB_OPERATIONS_WARNING: "some sub-operations failed or ended with a "
            "warning (a decompressed copy counts as a warning); Failed SOP Instance UID List",
        RetrieveStatus.NOT_AUTHORIZED: "the allow-list does not grant the service to the "
                                       "calling AE",
        RetrieveStatus.OUT_OF_RESOURCES_MATCHES: "more than {max_sub_operations} instances "
                                                 "match (the counts are 16-bit)",
        RetrieveStatus.OUT_OF_RESOURCES_SUB_OPERATIONS: "every sub-operation failed (for "
            "example, the destination refused the association); Failed SOP Instance UID List",
        RetrieveStatus.MOVE_DESTINATION_UNKNOWN: "C-MOVE only: the Move Destination is not in "
                                                 "the remote AE table (4.4.1.2){reply}",
        RetrieveStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: "Query/Retrieve Level missing or "
            "not in the model, the Unique Key of the level missing, an invalid UID{move_strict}; "
            "Offending Element names the element",
        RetrieveStatus.UNABLE_TO_PROCESS: "an undecodable identifier or an internal error",
    },
}
# The modality services' statuses (rendered by cli/modality_conformance.py).
MODALITY_CONDITIONS: dict[type[IntEnum], dict[IntEnum, str]] = {
    WorklistStatus: {
        WorklistStatus.SUCCESS: "after the last matching item",
        WorklistStatus.PENDING: "one response per matching Scheduled Procedure Step",
        WorklistStatus.PENDING_OPTIONAL_KEYS_UNSUPPORTED: "a key carries a value the worklist "
            "does not match on; the item is returned all the same",
        WorklistStatus.CANCEL: "a C-CANCEL arrived (checked between responses)",
        WorklistStatus.NOT_AUTHORIZED: "the allow-list does not grant `worklist` to the "
                                       "calling AE",
        WorklistStatus.OUT_OF_RESOURCES: "more than {max_results} items match, or the index "
                                         "is unavailable",
        WorklistStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: "a malformed value (range, date, "
            "UID) or a sequence with more than one item; Offending Element names it",
        WorklistStatus.UNABLE_TO_PROCESS: "an undecodable identifier or an internal error",
    },
    ProcedureStepStatus: {
        ProcedureStepStatus.SUCCESS: "the step was created or updated and is durable",
        ProcedureStepStatus.INVALID_ATTRIBUTE_VALUE: "a state other than IN PROGRESS at "
            "N-CREATE or COMPLETED/DISCONTINUED at N-SET, or a change to an attribute N-SET "
            "may not change (PS3.4 F.7.2)",
        ProcedureStepStatus.PROCESSING_FAILURE: "N-SET of a COMPLETED or DISCONTINUED step "
            "(Error ID 0xA710), or an internal error",
        ProcedureStepStatus.DUPLICATE_SOP_INSTANCE: "N-CREATE of a SOP Instance UID already "
                                                    "held",
        ProcedureStepStatus.NO_SUCH_SOP_INSTANCE: "N-SET of a step never created",
        ProcedureStepStatus.INVALID_OBJECT_INSTANCE: "the SOP Instance UID is not a valid UID",
        ProcedureStepStatus.MISSING_ATTRIBUTE: "a Type 1 attribute of the state is absent",
        ProcedureStepStatus.MISSING_ATTRIBUTE_VALUE: "a Type 1 attribute of the state is empty",
        ProcedureStepStatus.NOT_AUTHORIZED: "the allow-list does not grant `mpps` to the "
                                            "calling AE",
        ProcedureStepStatus.RESOURCE_LIMITATION: "the index is unavailable",
    },
    CommitmentStatus: {
        CommitmentStatus.SUCCESS: "the request is durable in the index; the report follows",
        CommitmentStatus.PROCESSING_FAILURE: "an internal error; nothing was kept",
        CommitmentStatus.INVALID_ARGUMENT_VALUE: "no valid Transaction UID, or a Referenced "
            "SOP Sequence item without SOP Class and Instance UIDs",
        CommitmentStatus.INVALID_SOP_INSTANCE: "the requested instance is not the well-known "
                                               "1.2.840.10008.1.20.1.1",
        CommitmentStatus.NO_SUCH_ACTION_TYPE: "an Action Type ID other than 1",
        CommitmentStatus.NOT_AUTHORIZED: "the allow-list does not grant `commitment` to the "
                                         "calling AE",
        CommitmentStatus.RESOURCE_LIMITATION: "the index is unavailable",
    },
    CommitmentFailure: {
        CommitmentFailure.PROCESSING_FAILURE: "the file is missing or its size or SHA-256 "
                                              "differs from the index",
        CommitmentFailure.NO_SUCH_OBJECT_INSTANCE: "the instance is not held",
        CommitmentFailure.CLASS_INSTANCE_CONFLICT: "the instance is held under another SOP "
                                                   "Class",
        CommitmentFailure.REFERENCED_SOP_CLASS_NOT_SUPPORTED: "never returned: every SOP "
            "Class we store may be committed",
        CommitmentFailure.RESOURCE_LIMITATION: "never returned",
        CommitmentFailure.DUPLICATE_TRANSACTION_UID: "the Transaction UID was used by an "
                                                     "earlier request: every item fails",
    },
}
CONDITIONS.update(MODALITY_CONDITIONS)

# Statuses the C-GET SCP never returns although RetrieveStatus holds them.
_MOVE_ONLY = (RetrieveStatus.MOVE_DESTINATION_UNKNOWN,)

_STATUS_KIND = {0x0000: "Success", 0xFF00: "Pending", 0xFF01: "Pending", 0xFE00: "Cancel",
                0xB000: "Warning"}


def _kind(code: int) -> str:
    return _STATUS_KIND.get(code, "Failure" if code != 0x0124 else "Refused")


def _meaning(member: IntEnum) -> str:
    words = [w if w == "SOP" else w.lower() for w in member.name.split("_")]
    return " ".join(words)[:1].upper() + " ".join(words)[1:]


def _fill(text: str, settings: Settings) -> str:
    reply = "" if not settings.reply_to_requester else \
        " and is not the caller's own AE title (reply to requester is on)"
    find_strict = (", or (without relational queries) a key below the level, a Unique Key "
                   "above missing or not single-valued, or another key of a level above "
                   "(`query.strict_hierarchy` is on)") if settings.strict_hierarchy else ""
    move_strict = (", a list of UIDs above the level or a Unique Key below it "
                   "(`query.strict_hierarchy` is on)") if settings.strict_hierarchy else ""
    return text.format(duplicates=settings.duplicates, find_strict=find_strict,
                       move_strict=move_strict,
                       size=_bytes(settings.max_dataset_size),
                       max_results=settings.max_find_results,
                       max_sub_operations=MAX_SUB_OPERATIONS, reply=reply)


def _bytes(size: int) -> str:
    if not size:
        return "no limit"
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def status_table(statuses: type[IntEnum], settings: Settings,
                 exclude: tuple[IntEnum, ...] = ()) -> list[str]:
    """The statuses one service returns: kind, code, name, and when."""
    rows = [(_kind(int(member)), f"`0x{int(member):04X}`",
             _meaning(member),
             _fill(CONDITIONS[statuses][member], settings))
            for member in statuses if member not in exclude]
    return md_table(("Service status", "Code", "Meaning", "Returned when"), rows)


def verification_section(settings: Settings) -> list[str]:
    """C-ECHO SCP."""
    return ["The C-ECHO SCP answers:", "", *status_table(EchoStatus, settings)]


def storage_section(settings: Settings) -> list[str]:
    """C-STORE SCP: level of storage, duplicates, limits, statuses."""
    policy = {
        "keep": "the first copy stays; the peer gets Success and the log says so",
        "replace": "the new file atomically replaces the old one and its index row is updated",
        "reject": "the peer gets `0x0111` Duplicate SOP Instance",
    }
    return [
        "- **Level of storage**: 2 (Full). The data set is written as received, byte for "
        "byte: every attribute, private ones included, is kept; nothing is coerced.",
        "- **Level of digital signature support**: 2: signatures are kept unchanged (so they "
        "stay valid), not verified.",
        "- **Order**: the request is checked, the file is fsync'd and renamed into the "
        "archive (and the folder fsync'd), the index row is committed, then Success is sent.",
        f"- **Duplicate policy** (`storage.duplicates` = `{settings.duplicates}`): "
        f"{policy[settings.duplicates]}. An instance never has a second index row.",
        f"- **Largest data set** (`limits.max_dataset_size`): "
        f"{_bytes(settings.max_dataset_size)}.",
        "- **Deletion**: only by an operator (`pacs delete`); nothing expires.",
        "",
        *status_table(StoreStatus, settings),
    ]


def _matching(types: tuple[str, ...]) -> str:
    return ", ".join(types) if types else "returned only, never matched"


def find_keys_section() -> list[str]:
    """The keys of every level of every model: type, VR and matching types."""
    lines: list[str] = []
    for model in MODELS:
        for level in model.levels:
            keys = keys_at(model, level)
            lines += [f"**{model.name}, {level} level** ({len(keys)} keys; U unique, "
                      "R required, O optional):", ""]
            lines += md_table(
                ("Attribute", "Tag", "VR", "Type", "Matching"),
                [(dictionary_description(key.tag), f"({key.tag >> 16:04X},{key.tag & 0xFFFF:04X})",
                  key.vr, key.kind, _matching(matching_types(key))) for key in keys.values()])
    return lines


def find_section(settings: Settings, accepted: tuple[str, ...],
                 declined: tuple[str, ...]) -> list[str]:
    """C-FIND SCP: models, extended negotiation, behaviour, keys, statuses."""
    sensitivity = "case-insensitive (Unicode case folding)" if settings.pn_case_insensitive \
        else "case-sensitive"
    lines = [
        "- **Models and levels**: " + "; ".join(
            f"{model.name} ({', '.join(model.levels)})" for model in MODELS) + ".",
        "- **Extended negotiation** (PS3.4 C.5.1.1), answered when offered: "
        + ", ".join(f"byte {i} {name}: accepted" for i, name in enumerate(accepted, 1))
        + ", " + ", ".join(f"byte {i} {name}: declined"
                           for i, name in enumerate(declined, len(accepted) + 1)) + ".",
        "- **Responses**: one Pending response per matching entity, streamed from a database "
        "cursor; each carries the requested keys, Query/Retrieve Level, the Unique Keys of the "
        f"levels above and Retrieve AE Title (`{settings.ae_title}`); Instance Availability "
        "(ONLINE) and Timezone Offset From UTC when asked. Specific Character Set is "
        "ISO_IR 192 when a value is not ASCII, absent otherwise.",
        f"- **Person names** match {sensitivity} (`query.pn_case_insensitive`), whole name or "
        "one component group.",
        f"- **Most matches** (`query.max_results`): {settings.max_find_results}; more is "
        "`0xA700`, never a silently cut list.",
        "- **Keys outside the hierarchy** (`query.strict_hierarchy` = "
        f"`{str(settings.strict_hierarchy).lower()}`): " + (
            "refused with `0xA900` unless relational queries were negotiated (PS3.4 "
            "C.4.1.2.1)." if settings.strict_hierarchy else
            "answered: keys of a level above are read as a relational query reads them; "
            "keys of a level below select entities by their descendants and come back zero "
            "length (`0xFF01`)."),
        "",
        *find_keys_section(),
        *status_table(FindStatus, settings),
    ]
    return lines


def move_section(settings: Settings) -> list[str]:
    """C-MOVE SCP: destinations, sub-operations, statuses."""
    reply = ("on: a C-MOVE whose destination is the caller's own AE title goes to the "
             f"caller's address, ports {', '.join(map(str, settings.reply_ports)) or 'none'}"
             if settings.reply_to_requester else "off")
    return [
        "- **Destinations**: the remote AE table (4.4.1.2) only; reply to requester "
        f"(`retrieve.reply_to_requester`): {reply}.",
        "- **Levels**: every level of each model; the Unique Key of the level may be a list "
        "of UIDs; Unique Keys above narrow the set, other keys are not used" + (
            "." if settings.strict_hierarchy else
            "; a list of UIDs above narrows to any of them and a Unique Key below is ignored "
            "(`query.strict_hierarchy` is off)."),
        "- **Sub-operations**: the instance set is read once; each C-STORE carries the Move "
        "Originator AE Title and Message ID; a missing or damaged file fails that one "
        "sub-operation and the retrieve goes on.",
        f"- **Most instances** per request: {MAX_SUB_OPERATIONS}.",
        "",
        *status_table(RetrieveStatus, settings),
    ]


def get_section(settings: Settings) -> list[str]:
    """C-GET SCP: role selection, sub-operations, statuses."""
    fallback = ", ".join(f"`{uid}`" for uid in UNCOMPRESSED)
    return [
        "- **Storage contexts**: instances go back on the requester's association, only on "
        "storage contexts for which it proposed the SCP role (PS3.7 D.3.3.4); an instance "
        f"with no such context fails. Stored syntax first, then {fallback} with "
        "decompression (a warning).",
        f"- **Most instances** per request: {MAX_SUB_OPERATIONS}.",
        "",
        *status_table(RetrieveStatus, settings, exclude=_MOVE_ONLY),
    ]


def move_initiation_section() -> list[str]:
    """The associations we open for C-MOVE sub-operations: proposed contexts."""
    fallback = ", ".join(f"`{uid}`" for uid in UNCOMPRESSED)
    return [
        "For each C-MOVE, minipacs opens associations to the destination (from the remote AE "
        "table) as Storage SCU, one after the other, and releases each when its instances "
        "are sent; the last one after `retrieve.association_close_delay` seconds, unless the "
        "next C-MOVE to the same destination, needing the same contexts, goes over it.",
        "",
        "- **Proposed presentation contexts**: for each SOP class in the instance set, one "
        "context per stored transfer syntax with that syntax alone, plus one context with "
        f"{fallback} not already proposed, as the fallback for decompression. Role: SCU. "
        "No extended negotiation.",
        f"- At most {MAX_CONTEXTS} contexts per association; larger sets are spread over "
        "several associations.",
        "- A C-STORE response of Success is a completed sub-operation (a warning when the "
        "instance was decompressed), `0x0001` or `0xBxxx` a warning, anything else or no "
        "response a failure.",
        "",
    ]
