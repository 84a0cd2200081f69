"""The one table of DICOM status codes, per service, and the error that carries them.

Room: model/. Standard library only. Domain code raises `DicomError`; handlers turn it into
a response. No other module writes a status number.
"""

from __future__ import annotations

from enum import IntEnum


class EchoStatus(IntEnum):
    """C-ECHO statuses (PS3.7 9.1.5.1.4; 0x0124 is the general status of PS3.7 C.5.4)."""

    SUCCESS = 0x0000
    NOT_AUTHORIZED = 0x0124


class StoreStatus(IntEnum):
    """C-STORE statuses (PS3.4 B.2.3, PS3.7 C.4)."""

    SUCCESS = 0x0000
    DUPLICATE_SOP_INSTANCE = 0x0111
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NOT_AUTHORIZED = 0x0124
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000


class FindStatus(IntEnum):
    """C-FIND statuses (PS3.4 C.4.1.1.4)."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_OPTIONAL_KEYS_UNSUPPORTED = 0xFF01
    CANCEL = 0xFE00
    NOT_AUTHORIZED = 0x0124
    OUT_OF_RESOURCES = 0xA700
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    UNABLE_TO_PROCESS = 0xC000


class RetrieveStatus(IntEnum):
    """C-MOVE and C-GET statuses (PS3.4 C.4.2.1.5, C.4.3.1.4)."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    CANCEL = 0xFE00
    SUB_OPERATIONS_WARNING = 0xB000
    NOT_AUTHORIZED = 0x0124
    OUT_OF_RESOURCES_MATCHES = 0xA701
    OUT_OF_RESOURCES_SUB_OPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    UNABLE_TO_PROCESS = 0xC000


class WorklistStatus(IntEnum):
    """Modality Worklist C-FIND statuses (PS3.4 K.4.1.1.4): those of C-FIND."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_OPTIONAL_KEYS_UNSUPPORTED = 0xFF01
    CANCEL = 0xFE00
    NOT_AUTHORIZED = 0x0124
    OUT_OF_RESOURCES = 0xA700
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    UNABLE_TO_PROCESS = 0xC000


class ProcedureStepStatus(IntEnum):
    """MPPS N-CREATE and N-SET statuses (PS3.4 F.7.2.1.4, F.7.2.2.4; PS3.7 C.4)."""

    SUCCESS = 0x0000
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_SOP_INSTANCE = 0x0112
    INVALID_OBJECT_INSTANCE = 0x0117
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    NOT_AUTHORIZED = 0x0124
    RESOURCE_LIMITATION = 0x0213


# Error ID (0000,0903) of a 0x0110 N-SET answer: "Performed Procedure Step Object may no longer
# be updated" (PS3.4 F.7.2.2.4).
PPS_MAY_NO_LONGER_BE_UPDATED = 0xA710


class CommitmentStatus(IntEnum):
    """Storage Commitment N-ACTION and N-EVENT-REPORT statuses (PS3.4 J.3.2.1.4; PS3.7 C.4)."""

    SUCCESS = 0x0000
    PROCESSING_FAILURE = 0x0110
    INVALID_ARGUMENT_VALUE = 0x0115
    INVALID_SOP_INSTANCE = 0x0117
    NO_SUCH_ACTION_TYPE = 0x0123
    NOT_AUTHORIZED = 0x0124
    RESOURCE_LIMITATION = 0x0213


class CommitmentFailure(IntEnum):
    """Failure Reason (0008,1197) of one instance in a storage commitment result (PS3.4 J.3.3)."""

    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    CLASS_INSTANCE_CONFLICT = 0x0119
    REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122
    RESOURCE_LIMITATION = 0x0213
    DUPLICATE_TRANSACTION_UID = 0x0131


class DicomError(Exception):
    """A failure that has a precise DICOM status, with the comment the peer will read."""

    def __init__(self, status: IntEnum, comment: str, offending_element: int | None = None,
                 error_id: int | None = None):
        super().__init__(comment)
        self.status = status
        # Error Comment is LO: at most 64 characters on the wire.
        self.comment = comment
        self.offending_element = offending_element
        # Error ID (0000,0903): the finer reason some DIMSE-N failures carry.
        self.error_id = error_id

    @property
    def error_comment(self) -> str:
        """The comment cut to the 64 characters an LO may hold."""
        return self.comment[:64]

    def __str__(self) -> str:
        return f"0x{int(self.status):04X} {self.comment}"
