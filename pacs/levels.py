"""Query/Retrieve information models and levels as data (PS3.4 C.3, C.6).

Layer: query translation, beside identifier.py; imports only dictionary.py and pydicom UIDs.
Patient Root and Study Root differ only in the rows of these tables, never in code paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacs.dictionary import IMAGE, PATIENT, SERIES, STUDY, UNIQUE_KEYWORD

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"


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


def model_for_sop_class(sop_class_uid: str) -> InformationModel | None:
    """The information model a Q/R SOP class belongs to, or None."""
    return MODEL_BY_SOP_CLASS.get(str(sop_class_uid))


def unique_keyword(level: str) -> str:
    """The unique key of a level (PS3.4 C.6.1.1): PatientID, StudyInstanceUID, ..."""
    return UNIQUE_KEYWORD[level]
