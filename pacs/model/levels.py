"""Query/Retrieve information models, levels and their keys, as data (PS3.4 C.3, C.6).

Room: model/. Imports model/dictionary and pydicom's data dictionary only.
Patient Root and Study Root differ only in the rows of these tables, never in code paths:
the supported-keys table below says, for each model and level, which attributes are keys,
whether each is Unique, Required or Optional there, where its value lives in the index
(a stored column or a value computed from the rows below) and its VR from pydicom.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pydicom.datadict import dictionary_VM, dictionary_VR, tag_for_keyword

from pacs.model.dictionary import (
    COMPUTED_KEYWORDS,
    IMAGE,
    PATIENT,
    SERIES,
    STORED_ATTRIBUTES,
    STORED_KEYWORDS,
    STUDY,
    UNIQUE_KEYWORD,
)

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"

UNIQUE, REQUIRED, OPTIONAL = "U", "R", "O"

# Required keys per level (PS3.4 Tables C.6-1 to C.6-4); every other key there is Optional.
_REQUIRED: dict[str, tuple[str, ...]] = {
    PATIENT: ("PatientName",),
    STUDY: ("StudyDate", "StudyTime", "AccessionNumber", "StudyID"),
    SERIES: ("Modality", "SeriesNumber"),
    IMAGE: ("InstanceNumber",),
}
# Stored at STUDY in the index but not a key of any level: it qualifies times, it is never
# matched (PS3.4 C.2.2.2); identifier.py handles it apart.
_NOT_KEYS = frozenset({"TimezoneOffsetFromUTC"})
# Keys whose value is an index column that is not a DICOM attribute of the stored data set.
_EXTRA_COLUMNS: dict[str, tuple[str, str]] = {
    # PS3.4 C.6.1.1.5.2: a transfer syntax we can deliver without loss: the one we hold.
    "AvailableTransferSyntaxUID": (IMAGE, "transfer_syntax_uid"),
}
# Keys we answer but never hold a value for: we keep no alternate encodings (C.6.1.1.5.1,
# which also defines only Universal Matching for it).
_ALWAYS_EMPTY: dict[str, str] = {"AlternateRepresentationSequence": IMAGE}
# Computed keys returned but not matched: the union of the instances' code sequences.
_NOT_MATCHED = frozenset({"AnatomicRegionsInStudyCodeSequence"})


@dataclass(frozen=True)
class Key:
    """One key of one level of one information model."""

    keyword: str
    tag: int
    vr: str
    multi: bool  # value multiplicity can exceed 1: "any value matches" (PS3.4 C.2.2.3)
    level: str  # the Query/Retrieve level the key belongs to in this model
    kind: str  # UNIQUE, REQUIRED or OPTIONAL at that level
    table: str  # the index level whose row holds the value (PATIENT for Study Root names)
    column: str | None  # stored column; None for a computed or an always-empty key
    computed: bool = False
    matchable: bool = True  # False: returned, never matched (0xFF01 when asked to)

    @property
    def folded_column(self) -> str | None:
        """The case-folded column of a stored PN key."""
        return f"{self.column}_folded" if self.vr == "PN" and self.column else None

    @property
    def normalized_column(self) -> str | None:
        """The sortable normal form column of a stored TM or DT key."""
        return f"{self.column}_norm" if self.vr in ("TM", "DT") and self.column else None


@dataclass(frozen=True)
class InformationModel:
    """One Q/R information model: its levels, top first, and its SOP classes."""

    name: str
    levels: tuple[str, ...]
    find_sop_class: str
    move_sop_class: str
    get_sop_class: str

    def has_level(self, level: str) -> bool:
        """Whether the model has this Query/Retrieve Level."""
        return level in self.levels

    def levels_above(self, level: str) -> tuple[str, ...]:
        """The model's levels above `level`, top first (empty for its top level)."""
        return self.levels[: self.levels.index(level)]

    def levels_below(self, level: str) -> tuple[str, ...]:
        """The model's levels below `level`."""
        return self.levels[self.levels.index(level) + 1 :]

    def levels_to(self, level: str) -> tuple[str, ...]:
        """The model's levels from the top down to and including `level`."""
        return self.levels[: self.levels.index(level) + 1]


PATIENT_ROOT = InformationModel(
    "Patient Root", (PATIENT, STUDY, SERIES, IMAGE),
    PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET,
)
STUDY_ROOT = InformationModel(
    "Study Root", (STUDY, SERIES, IMAGE),
    STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET,
)
MODELS: tuple[InformationModel, ...] = (PATIENT_ROOT, STUDY_ROOT)
MODEL_BY_SOP_CLASS: dict[str, InformationModel] = {
    uid: model
    for model in MODELS
    for uid in (model.find_sop_class, model.move_sop_class, model.get_sop_class)
}
FIND_SOP_CLASSES: tuple[str, ...] = tuple(model.find_sop_class for model in MODELS)

# Pairs of a date and a time key matched together by combined date-time matching
# (PS3.4 C.2.2.2.5.4) and by timezone query adjustment (C.2.2.2.1.3).
DATE_TIME_PAIRS: tuple[tuple[str, str], ...] = (
    ("PatientBirthDate", "PatientBirthTime"),
    ("StudyDate", "StudyTime"),
    ("SeriesDate", "SeriesTime"),
    ("PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"),
    ("ContentDate", "ContentTime"),
    ("AcquisitionDate", "AcquisitionTime"),
)


@dataclass(frozen=True)
class Derivation:
    """How the index computes a key from the rows below its entity (PS3.4 C.3.4)."""

    child: str  # the index level whose rows are counted or whose values are collected
    parent: str  # the index level of the entity the key describes
    column: str | None = None  # distinct values of this child column; None: a row count


DERIVED: dict[str, Derivation] = {
    "NumberOfPatientRelatedStudies": Derivation(STUDY, PATIENT),
    "NumberOfPatientRelatedSeries": Derivation(SERIES, PATIENT),
    "NumberOfPatientRelatedInstances": Derivation(IMAGE, PATIENT),
    "NumberOfStudyRelatedSeries": Derivation(SERIES, STUDY),
    "NumberOfStudyRelatedInstances": Derivation(IMAGE, STUDY),
    "ModalitiesInStudy": Derivation(SERIES, STUDY, "modality"),
    "SOPClassesInStudy": Derivation(IMAGE, STUDY, "sop_class_uid"),
    "AnatomicRegionsInStudyCodeSequence": Derivation(IMAGE, STUDY, "anatomic_region_sequence"),
    "NumberOfSeriesRelatedInstances": Derivation(IMAGE, SERIES),
}


def model_for_sop_class(sop_class_uid: str) -> InformationModel | None:
    """The information model a Q/R SOP class belongs to, or None."""
    return MODEL_BY_SOP_CLASS.get(str(sop_class_uid))


def unique_keyword(level: str) -> str:
    """The unique key of a level (PS3.4 C.6.1.1): PatientID, StudyInstanceUID, ..."""
    return UNIQUE_KEYWORD[level]


def _dictionary_key(keyword: str, level: str, kind: str, table: str, column: str | None,
                    computed: bool) -> Key:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise LookupError(f"{keyword} is not in pydicom's dictionary")
    vm = dictionary_VM(tag)
    matchable = keyword not in _NOT_MATCHED and (column is not None or computed)
    return Key(keyword, tag, dictionary_VR(tag).split(" or ")[0], vm != "1", level, kind,
               table, column, computed, matchable)


def _kind(keyword: str, level: str) -> str:
    if UNIQUE_KEYWORD[level] == keyword:
        return UNIQUE
    return REQUIRED if keyword in _REQUIRED[level] else OPTIONAL


def _index_level_keys(index_level: str, model_level: str,
                      kind_of: Mapping[str, str] | None = None) -> list[Key]:
    """The keys stored or computed at one index level, as keys of `model_level`."""
    keys = []
    for keyword in STORED_KEYWORDS[index_level]:
        if keyword in _NOT_KEYS:
            continue
        kind = (kind_of or {}).get(keyword) or _kind(keyword, index_level)
        keys.append(_dictionary_key(keyword, model_level, kind, index_level,
                                    STORED_ATTRIBUTES[keyword].column, False))
    for keyword, (level, column) in _EXTRA_COLUMNS.items():
        if level == index_level:
            keys.append(_dictionary_key(keyword, model_level, OPTIONAL, level, column, False))
    for keyword in COMPUTED_KEYWORDS[index_level]:
        keys.append(_dictionary_key(keyword, model_level, OPTIONAL, index_level, None, True))
    for keyword, level in _ALWAYS_EMPTY.items():
        if level == index_level:
            keys.append(_dictionary_key(keyword, model_level, OPTIONAL, level, None, False))
    return keys


def _build_table() -> dict[tuple[str, str], Mapping[int, Key]]:
    table: dict[tuple[str, str], Mapping[int, Key]] = {}
    for model in MODELS:
        for level in model.levels:
            keys = _index_level_keys(level, level)
            if level == model.levels[0] and level != PATIENT:
                # Study Root: "Attributes of patients are considered to be Attributes of
                # studies" (C.3.2); Patient's Name and Patient ID are Required (C.6-5).
                keys += _index_level_keys(
                    PATIENT, level, {"PatientName": REQUIRED, "PatientID": REQUIRED}
                )
            table[(model.name, level)] = MappingProxyType({key.tag: key for key in keys})
    return table


_KEYS = _build_table()


def keys_at(model: InformationModel, level: str) -> Mapping[int, Key]:
    """The supported keys of one level of a model, by tag."""
    return _KEYS[(model.name, level)]


def find_key(model: InformationModel, tag: int) -> Key | None:
    """The key with this tag at whichever level of the model has it, or None."""
    for level in model.levels:
        key = _KEYS[(model.name, level)].get(tag)
        if key is not None:
            return key
    return None


def unique_key(model: InformationModel, level: str) -> Key:
    """The Unique Key of a level of a model, as a `Key`."""
    tag = tag_for_keyword(UNIQUE_KEYWORD[level])
    assert tag is not None
    return _KEYS[(model.name, level)][tag]
