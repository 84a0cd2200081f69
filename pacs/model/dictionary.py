"""Which attributes the index keeps, per level, and how each becomes a column.

Room: model/. Pure data plus pydicom's data dictionary; imported by index/schema, services/store
and model/levels.
The lists follow the key tables of PS3.4 C.6.1.1 (Patient Root) and C.6.2.1 (Study Root),
with a few optional keys viewers commonly ask for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from pydicom.datadict import dictionary_VR, tag_for_keyword

PATIENT = "PATIENT"
STUDY = "STUDY"
SERIES = "SERIES"
IMAGE = "IMAGE"
LEVELS: tuple[str, ...] = (PATIENT, STUDY, SERIES, IMAGE)

STORED_KEYWORDS: dict[str, tuple[str, ...]] = {
    PATIENT: (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "ReferencedPatientSequence",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "EthnicGroup",
        "PatientComments",
        "PatientSpeciesDescription",
        "PatientBreedDescription",
        "ResponsiblePerson",
    ),
    STUDY: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "IssuerOfAccessionNumberSequence",
        "StudyID",
        "StudyInstanceUID",
        "ReferringPhysicianName",
        "StudyDescription",
        "ProcedureCodeSequence",
        "NameOfPhysiciansReadingStudy",
        "AdmittingDiagnosesDescription",
        "ReferencedStudySequence",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "Occupation",
        "AdditionalPatientHistory",
        "OtherStudyNumbers",
        "InstitutionName",
        "TimezoneOffsetFromUTC",
    ),
    SERIES: (
        "Modality",
        "SeriesNumber",
        "SeriesInstanceUID",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "BodyPartExamined",
        "ProtocolName",
        "Laterality",
        "StationName",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "RequestAttributesSequence",
    ),
    IMAGE: (
        "InstanceNumber",
        "SOPInstanceUID",
        "SOPClassUID",
        "ContentDate",
        "ContentTime",
        "AcquisitionDate",
        "AcquisitionTime",
        "AcquisitionDateTime",
        "ImageType",
        "Rows",
        "Columns",
        "NumberOfFrames",
        "ConceptNameCodeSequence",
        "ContentTemplateSequence",
        "ContainerIdentifier",
        # Keys of PS3.4 Table C.6-4 (schema version 2), and the instance-level source of
        # Anatomic Regions in Study Code Sequence (C.3.4).
        "RelatedGeneralSOPClassUID",
        "SpecimenDescriptionSequence",
        "AnatomicRegionSequence",
    ),
}

# Attributes whose value the index derives from other rows instead of storing (PS3.4 C.6.1.1).
COMPUTED_KEYWORDS: dict[str, tuple[str, ...]] = {
    PATIENT: (
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ),
    STUDY: (
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "ModalitiesInStudy",
        "SOPClassesInStudy",
        "AnatomicRegionsInStudyCodeSequence",
    ),
    SERIES: ("NumberOfSeriesRelatedInstances",),
    IMAGE: (),
}

UNIQUE_KEYWORD: dict[str, str] = {
    PATIENT: "PatientID",
    STUDY: "StudyInstanceUID",
    SERIES: "SeriesInstanceUID",
    IMAGE: "SOPInstanceUID",
}


@dataclass(frozen=True)
class StoredAttribute:
    """One attribute the index keeps: where it lives and how it is matched."""

    keyword: str
    level: str
    vr: str
    column: str
    tag: int

    # Cached: read for every indexed attribute of every store.
    @cached_property
    def folded_column(self) -> str | None:
        """Column with the case-folded value, for case-insensitive PN matching."""
        return f"{self.column}_folded" if self.vr == "PN" else None

    @cached_property
    def normalized_column(self) -> str | None:
        """Column with a sortable normal form, for range matching of TM and DT."""
        return f"{self.column}_norm" if self.vr in ("TM", "DT") else None


def column_name(keyword: str) -> str:
    """Snake-case column name for a DICOM keyword: PatientBirthDate -> patient_birth_date."""
    # "IDs" and "UIDs" are one word each, not "I" + "Ds".
    keyword = keyword.replace("UIDs", "Uids").replace("IDs", "Ids")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", keyword).lower()


def _build_attributes() -> dict[str, StoredAttribute]:
    table: dict[str, StoredAttribute] = {}
    for level, keywords in STORED_KEYWORDS.items():
        for keyword in keywords:
            tag = tag_for_keyword(keyword)
            if tag is None:
                raise LookupError(f"{keyword} is not in pydicom's dictionary")
            vr = dictionary_VR(tag).split(" or ")[0]
            table[keyword] = StoredAttribute(keyword, level, vr, column_name(keyword), tag)
    return table


STORED_ATTRIBUTES: dict[str, StoredAttribute] = _build_attributes()


def stored_attributes(level: str) -> list[StoredAttribute]:
    """The attributes stored at one level, in table order."""
    return [STORED_ATTRIBUTES[k] for k in STORED_KEYWORDS[level]]
