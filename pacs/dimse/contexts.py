"""The presentation contexts the AE accepts, as one table: SOP class, role, transfer syntaxes.

Room: dimse/. Imports pynetdicom (its storage SOP classes and transfer syntaxes) and
model/levels (the Q/R SOP classes). `server.build_ae` adds exactly these contexts, and
`pacs conformance` prints exactly these: the statement cannot say what the AE does not do.
Plain data (UID strings and flags) leaves this module, never a pynetdicom object.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    AllStoragePresentationContexts,
)

from pacs.model.levels import MODELS

VERIFICATION = "1.2.840.10008.1.1"
# PS3.7 A.2.1: the one application context name of DICOM.
APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = str(PYNETDICOM_IMPLEMENTATION_UID)
IMPLEMENTATION_VERSION_NAME = str(PYNETDICOM_IMPLEMENTATION_VERSION)

# As acceptor, pynetdicom takes the first of OUR syntaxes that the requestor proposed.
# Explicit VR Little Endian first and Implicit last: a modality offering both stores Explicit
# (VRs kept), and C-GET storage contexts match how most instances are stored.
STORAGE_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    *[s for s in ALL_TRANSFER_SYNTAXES
      if s not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)],
    ImplicitVRLittleEndian,
)
OTHER_SYNTAXES: tuple[str, ...] = tuple(ALL_TRANSFER_SYNTAXES)

VERIFICATION_SERVICE = "Verification"
STORAGE_SERVICE = "Storage"
FIND_SERVICE = "Query/Retrieve - FIND"
MOVE_SERVICE = "Query/Retrieve - MOVE"
GET_SERVICE = "Query/Retrieve - GET"
WORKLIST_SERVICE = "Basic Worklist Management - FIND"
MPPS_SERVICE = "Modality Performed Procedure Step"
COMMITMENT_SERVICE = "Storage Commitment Push Model"
# PS3.4 K.6.1.1.2, F.7.1, J.3.2: the modality services' SOP classes.
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
MODALITY_PERFORMED_PROCEDURE_STEP = "1.2.840.10008.3.1.2.3.3"
STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"


@dataclass(frozen=True)
class SupportedContext:
    """One abstract syntax we accept: its service, our roles and the transfer syntaxes.

    `role_selection`: an SCP/SCU Role Selection item (PS3.7 D.3.3.4) for this class is
    accepted as proposed, so a C-GET requester may act as Storage SCP on it.
    """

    service: str
    sop_class_uid: str
    transfer_syntaxes: tuple[str, ...]  # accepted, our preference first
    role_selection: bool = False

    @property
    def roles(self) -> tuple[str, ...]:
        """Our roles for this SOP class: SCP always; SCU too where we send C-STOREs."""
        return ("SCP", "SCU") if self.service == STORAGE_SERVICE else ("SCP",)


def _supported_contexts() -> tuple[SupportedContext, ...]:
    contexts = [SupportedContext(VERIFICATION_SERVICE, VERIFICATION, OTHER_SYNTAXES)]
    contexts += [
        SupportedContext(STORAGE_SERVICE, str(context.abstract_syntax), STORAGE_SYNTAXES,
                         role_selection=True)
        for context in AllStoragePresentationContexts
    ]
    for service, attribute in ((FIND_SERVICE, "find_sop_class"),
                               (MOVE_SERVICE, "move_sop_class"),
                               (GET_SERVICE, "get_sop_class")):
        contexts += [SupportedContext(service, getattr(model, attribute), OTHER_SYNTAXES)
                     for model in MODELS]
    contexts += [SupportedContext(WORKLIST_SERVICE, MODALITY_WORKLIST_FIND, OTHER_SYNTAXES),
                 SupportedContext(MPPS_SERVICE, MODALITY_PERFORMED_PROCEDURE_STEP, OTHER_SYNTAXES),
                 SupportedContext(COMMITMENT_SERVICE, STORAGE_COMMITMENT_PUSH_MODEL,
                                  OTHER_SYNTAXES)]
    return tuple(contexts)


SUPPORTED_CONTEXTS: tuple[SupportedContext, ...] = _supported_contexts()
