"""C-FIND matching (PS3.4 C.2.2.2) through pynetdicom's SCU, on each backend.

The core data set (find_support) has, for each rule, entities that must match and
entities that must not; every expectation is the exact set of entities.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacs.dimse.server import RunningServer
from tests.factory import make_dataset
from tests.integration.find_support import (
    FindResult,
    find,
    module_server,
    populate_core,
    query,
    series_uid,
    store_all,
    study_uid,
)

find_server = module_server(populate_core)
ALL = ["DOE1", "DOE2", "DROP1", "INJ1", "JANE1", "MUE1"]


def studies(server: RunningServer, **keys: object) -> list[str]:
    """Study IDs of a Study Root STUDY-level query (the final status must be Success)."""
    result = find(server, query(QueryRetrieveLevel="STUDY", StudyID="", **keys))
    assert result.status == 0x0000, result.final
    return result.values("StudyID")


def images(server: RunningServer, study: str, series: str, **keys: object) -> FindResult:
    """An IMAGE-level query under one series (hierarchical: both UIDs above given)."""
    patient = {"DOE1": "PAT-DOE"}[study]
    return find(server, query(QueryRetrieveLevel="IMAGE", InstanceNumber="",
                              StudyInstanceUID=study_uid(patient, study),
                              SeriesInstanceUID=series_uid(patient, study, series), **keys))


@pytest.fixture
def case_sensitive_names(find_server: RunningServer) -> Iterator[None]:
    """Switch query.pn_case_insensitive off for one test."""
    services = find_server.services
    before = services.settings
    services.settings = replace(before, pn_case_insensitive=False)
    yield
    services.settings = before


@pytest.fixture
def unknown_values(find_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[None]:
    """A study whose patient name, date, time, accession number and ID are zero length."""
    dataset = make_dataset(patient_id="PAT-EMPTY", patient_name="", study="EMPTY1",
                           StudyID="", StudyDate="", StudyTime="", AccessionNumber="",
                           StudyDescription="EMPTY1")
    services = find_server.services
    store_all(services, tmp_path_factory.mktemp("empty"), iter([dataset]))
    yield
    record = services.index.remove_instance(dataset.SOPInstanceUID)
    assert record is not None
    services.archive.remove(record.file_path)


# --- single value (C.2.2.2.1) ----------------------------------------------------------------

# PS3.4 C.2.2.2.1: single value matching is exact and case-sensitive (here on an SH).
def test_single_value_is_exact_and_case_sensitive(find_server: RunningServer) -> None:
    assert studies(find_server, AccessionNumber="ACC-DOE1") == ["DOE1"]
    assert studies(find_server, AccessionNumber="acc-doe1") == []
    assert studies(find_server, AccessionNumber="ACC-DOE") == []


# PS3.4 C.2.2.2.1.1: PN matching case-insensitive by default (query.pn_case_insensitive).
def test_single_value_pn_is_case_insensitive_by_default(find_server: RunningServer) -> None:
    assert studies(find_server, PatientName="DOE^JANE") == ["JANE1"]


# PS3.4 C.2.2.2.1.1: with the switch off, PN matching is case-sensitive too.
def test_single_value_pn_case_sensitive_when_configured(
    find_server: RunningServer, case_sensitive_names: None
) -> None:
    assert studies(find_server, PatientName="DOE^JANE") == []
    assert studies(find_server, PatientName="doe^jane") == ["JANE1"]


# PS3.4 C.2.2.2.1: single value PN matching is on the whole name, not a prefix or a part.
def test_single_value_pn_is_the_whole_name(find_server: RunningServer) -> None:
    assert studies(find_server, PatientName="Doe") == []
    assert studies(find_server, PatientName="Doe^John") == ["DOE1", "DOE2"]


# PS3.4 C.2.2.2.1: non-ASCII values are matched as Unicode, accents are significant.
def test_single_value_pn_with_accents(find_server: RunningServer) -> None:
    assert studies(find_server, PatientName="Müller^Jürgen", SpecificCharacterSet="ISO_IR 192"
                   ) == ["MUE1"]
    assert studies(find_server, PatientName="Muller^Jurgen") == []


# PS3.4 C.2.2.2.1.3: TM single value by meaning: "1015" is 10:15:00.
def test_single_value_time_by_meaning(find_server: RunningServer) -> None:
    assert studies(find_server, StudyTime="1015") == ["DOE1"]
    assert studies(find_server, StudyTime="101500.000") == ["DOE1"]


# --- list of UIDs (C.2.2.2.2) -----------------------------------------------------------

# PS3.4 C.2.2.2.2: a backslash-separated list of UIDs; each may generate a match.
def test_list_of_uid_matching(find_server: RunningServer) -> None:
    uids = [study_uid("PAT-DOE", "DOE1"), study_uid("PAT-MUE", "MUE1"), "1.2.3.999"]
    assert studies(find_server, StudyInstanceUID=uids) == ["DOE1", "MUE1"]


# PS3.4 C.2.2.2.2: list of UID matching on an optional, computed UI key.
def test_list_of_uid_matching_on_sop_classes_in_study(find_server: RunningServer) -> None:
    assert studies(find_server, SOPClassesInStudy=["1.2.840.10008.5.1.4.1.1.88.11",
                                                   "1.2.840.10008.5.1.4.1.1.4"]) == [
        "DOE1", "DOE2"]


# --- universal (C.2.2.2.3) --------------------------------------------------------------

# PS3.4 C.2.2.2.3: a zero-length value matches every entity and asks for the value.
def test_universal_matching_returns_every_entity_and_the_value(
    find_server: RunningServer,
) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyID="",
                                     StudyDescription=""))
    assert result.values("StudyID") == ALL
    assert "Schädel" in result.values("StudyDescription")


# --- wildcards (C.2.2.2.4) --------------------------------------------------------------

# PS3.4 C.2.2.2.4: "*" matches any sequence of characters.
def test_wildcard_star_is_a_prefix_match(find_server: RunningServer) -> None:
    assert studies(find_server, PatientName="Doe*") == ["DOE1", "DOE2", "JANE1"]
    assert studies(find_server, StudyDescription="*Ch*") == ["DOE1"]


# PS3.4 C.2.2.2.4: "?" matches exactly one character (a non-ASCII one too).
def test_wildcard_question_mark_is_one_character(find_server: RunningServer) -> None:
    assert studies(find_server, PatientName="M?ller^J?rgen") == ["MUE1"]
    assert studies(find_server, AccessionNumber="ACC-DOE?") == ["DOE1", "DOE2"]
    assert studies(find_server, AccessionNumber="ACC-DOE??") == []


# PS3.4 C.2.2.2.4 note 1: a bare "*" is Universal Matching: empty values match too.
def test_wildcard_bare_star_matches_everything_empty_included(
    find_server: RunningServer, unknown_values: None
) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyDescription="",
                                     PatientName="*"))
    assert "EMPTY1" in result.values("StudyDescription")
    assert len(result.identifiers) == len(ALL) + 1


# PS3.4 C.2.2.2.4: "%" is not a wildcard: it matches itself only.
def test_wildcard_percent_is_literal(find_server: RunningServer) -> None:
    assert studies(find_server, StudyDescription="100%") == []
    assert studies(find_server, StudyDescription="100%*") == ["INJ1"]
    assert studies(find_server, AccessionNumber="ACC%") == []


# PS3.4 C.2.2.2.4: "_" is not a wildcard: "ACC_1%" does not match "ACCX1YZ".
def test_wildcard_underscore_is_literal(find_server: RunningServer) -> None:
    assert studies(find_server, AccessionNumber="ACC_1%") == ["INJ1"]
    assert studies(find_server, AccessionNumber="ACC_*") == ["INJ1"]


# PS3.4 C.2.2.2.4: "[" and the LIKE escape character are literal.
def test_wildcard_brackets_and_escape_are_literal(find_server: RunningServer) -> None:
    assert studies(find_server, StudyDescription="*[x]") == ["INJ1"]
    assert studies(find_server, StudyDescription="*[a-z]") == []
    assert studies(find_server, StudyDescription="*!*") == []


# PS3.4 C.2.2.2.4: "\" in an LT value (PatientComments) is a literal character.
def test_wildcard_backslash_is_literal_in_text(find_server: RunningServer) -> None:
    assert studies(find_server, PatientComments="C:\\temp\\*") == ["INJ1"]
    assert studies(find_server, PatientComments="C:\\temp") == []


# PS3.4 C.2.2.2.4: quotes and SQL fragments in PN and LO values are matched literally.
def test_sql_injection_strings_are_matched_literally(find_server: RunningServer) -> None:
    assert studies(find_server, PatientName="O'Brien^Pat") == ["INJ1"]
    assert studies(find_server, PatientName="Robert'); DROP TABLE patient;--") == ["DROP1"]
    assert studies(find_server, StudyDescription="x' OR '1'='1") == ["DROP1"]
    assert studies(find_server, StudyDescription="' OR 1=1 --") == []
    assert studies(find_server, PatientName="*'*") == ["DROP1", "INJ1"]
    assert studies(find_server) == ALL  # the tables are all still there


# PS3.4 C.2.2.2.4: a request full of "*" costs no more than any other (no backtracking).
def test_pathological_wildcards_answer_quickly(find_server: RunningServer) -> None:
    pattern = "*e" * 30 + "*x"
    started = time.monotonic()
    assert studies(find_server, NameOfPhysiciansReadingStudy=pattern) == []
    assert studies(find_server, StudyDescription=pattern) == []
    assert time.monotonic() - started < 5


# PS3.4 C.2.2.2.4: wildcard matching on a CS value is case-sensitive.
def test_wildcard_on_cs_is_case_sensitive(find_server: RunningServer) -> None:
    assert studies(find_server, ModalitiesInStudy="c*") == []
    assert studies(find_server, ModalitiesInStudy="C*") == ["DOE1", "INJ1", "MUE1"]


# --- ranges (C.2.2.2.5) -------------------------------------------------------------------

# PS3.4 C.2.2.2.5.1: "a-b" includes both ends.
def test_date_range_is_inclusive(find_server: RunningServer) -> None:
    assert studies(find_server, StudyDate="20240102-20240201") == ["DOE1", "INJ1", "MUE1"]


# PS3.4 C.2.2.2.5.1: "-b" is b and everything before it.
def test_date_range_open_start(find_server: RunningServer) -> None:
    assert studies(find_server, StudyDate="-20231231") == ["JANE1"]


# PS3.4 C.2.2.2.5.1: "a-" is a and everything after it.
def test_date_range_open_end(find_server: RunningServer) -> None:
    assert studies(find_server, StudyDate="20240202-") == ["DOE2", "DROP1"]


# PS3.4 C.2.2.2.5.2: TM ranges compare times within a day, inclusively.
def test_time_range(find_server: RunningServer) -> None:
    assert studies(find_server, StudyTime="1000-1100") == ["DOE1"]
    assert studies(find_server, StudyTime="-0830") == ["DOE2"]
    assert studies(find_server, StudyTime="2359-") == ["JANE1"]


# PS3.4 C.2.2.2.5.2: an upper bound given to the minute covers that whole minute.
def test_time_range_upper_bound_covers_its_precision(find_server: RunningServer) -> None:
    assert studies(find_server, StudyTime="1400-1415") == ["MUE1"]  # 14:15:00.123456


# PS3.4 C.2.2.2.5.2: fractional seconds take part in range matching.
def test_time_range_fractional_seconds(find_server: RunningServer) -> None:
    assert studies(find_server, StudyTime="141500.1-141500.2") == ["MUE1"]
    assert studies(find_server, StudyTime="141500.2-141500.3") == []


# PS3.4 C.2.2.2.5.2: a range crossing midnight is not supported: it matches nothing.
def test_time_range_crossing_midnight_matches_nothing(find_server: RunningServer) -> None:
    assert studies(find_server, StudyTime="2300-0100") == []


# PS3.4 C.2.2.2.5.3: DT ranges with fractional seconds.
def test_datetime_range_fractional_seconds(find_server: RunningServer) -> None:
    result = images(find_server, "DOE1", "DOE1-CT",
                    AcquisitionDateTime="20240102101500.2-20240102101500.3")
    assert result.values("InstanceNumber") == ["1"]


# PS3.4 C.2.2.2.5.3 d: a UTC offset in the request is taken into account.
def test_datetime_range_with_utc_offset(find_server: RunningServer) -> None:
    # Stored 10:15:00.25 and 10:15:30.75 in a study at +0000; asked in +0100.
    result = images(find_server, "DOE1", "DOE1-CT",
                    AcquisitionDateTime="20240102111500+0100-20240102111520+0100")
    assert result.values("InstanceNumber") == ["1"]
    result = images(find_server, "DOE1", "DOE1-CT",
                    AcquisitionDateTime="20240102111500-0100-")
    assert result.values("InstanceNumber") == []


# --- sequences (C.2.2.2.6) ----------------------------------------------------------------

def _item(**keys: object) -> Sequence:
    item = Dataset()
    for keyword, value in keys.items():
        setattr(item, keyword, value)
    return Sequence([item])


# PS3.4 C.2.2.2.6: Referenced Study Sequence matched item by item; only matching items,
# with only the requested attributes, come back.
def test_sequence_matching_referenced_study(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyID="",
                                     ReferencedStudySequence=_item(
                                         ReferencedSOPInstanceUID="1.2.3.4.101",
                                         ReferencedSOPClassUID="")))
    assert result.values("StudyID") == ["DOE1"]
    items = result.identifiers[0].ReferencedStudySequence
    assert [item.ReferencedSOPInstanceUID for item in items] == ["1.2.3.4.101"]
    assert sorted(items[0].keys()) == [0x00081150, 0x00081155]


# PS3.4 C.2.2.2.6: Referenced Patient Sequence at PATIENT level (Patient Root).
def test_sequence_matching_referenced_patient(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="PATIENT", PatientID="",
                                     ReferencedPatientSequence=_item(
                                         ReferencedSOPInstanceUID="1.2.3.5.8")), model="P")
    assert result.values("PatientID") == ["PAT-DROP", "PAT-JANE"]


# PS3.4 C.2.2.2.6: Procedure Code Sequence with a wildcard in an item key.
def test_sequence_matching_procedure_code(find_server: RunningServer) -> None:
    assert studies(find_server, ProcedureCodeSequence=_item(CodeValue="CT-*",
                                                           CodingSchemeDesignator="99LOCAL")
                   ) == ["DOE1"]
    assert studies(find_server, ProcedureCodeSequence=_item(CodeValue="CT-CHEST",
                                                           CodingSchemeDesignator="SCT")
                   ) == []


# PS3.4 C.2.2.2.6: a zero-length sequence (or empty item) returns the whole sequence.
def test_sequence_universal_returns_every_item(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyID="DOE1",
                                     ReferencedStudySequence=Sequence([])))
    items = result.identifiers[0].ReferencedStudySequence
    assert sorted(i.ReferencedSOPInstanceUID for i in items) == ["1.2.3.4.100", "1.2.3.4.101"]


# --- multi-valued attributes (C.2.2.3) ----------------------------------------------------

# PS3.4 C.2.2.3: Modalities in Study matches when any of its values matches.
def test_modalities_in_study_any_value_matches(find_server: RunningServer) -> None:
    assert studies(find_server, ModalitiesInStudy="SR") == ["DOE1"]
    assert studies(find_server, ModalitiesInStudy=["MR", "US"]) == ["DOE2", "JANE1"]


# PS3.4 C.2.2.3: SOP Classes in Study matches when any of its values matches.
def test_sop_classes_in_study_any_value_matches(find_server: RunningServer) -> None:
    assert studies(find_server, SOPClassesInStudy="1.2.840.10008.5.1.4.1.1.2") == [
        "DOE1", "INJ1", "MUE1"]


# PS3.4 C.2.2.3: Image Type (CS, 2-n): any value matches; a wildcard never spans values.
def test_image_type_any_value_matches_wildcards_within_one_value(
    find_server: RunningServer,
) -> None:
    assert images(find_server, "DOE1", "DOE1-CT", ImageType="AXIAL").values(
        "InstanceNumber") == ["1"]
    assert images(find_server, "DOE1", "DOE1-CT", ImageType="*ARY").values(
        "InstanceNumber") == ["1", "2"]
    assert images(find_server, "DOE1", "DOE1-CT", ImageType="ORIG*MARY").values(
        "InstanceNumber") == []


# PS3.4 C.2.2.3: a multi-valued PN (Other Patient Names), any value matches.
def test_other_patient_names_any_value_matches(find_server: RunningServer) -> None:
    assert studies(find_server, OtherPatientNames="johnny^doe") == ["DOE1", "DOE2"]
    assert studies(find_server, NameOfPhysiciansReadingStudy="Reader^T*") == ["DOE1"]


# --- unknown (zero-length) stored values (C.2.2.1.2) --------------------------------------

# PS3.4 C.2.2.1.2: an entity with a zero-length Required Key matches any value of it.
def test_empty_required_key_matches_any_value(
    find_server: RunningServer, unknown_values: None
) -> None:
    def described(**keys: object) -> list[str]:
        return find(find_server, query(QueryRetrieveLevel="STUDY", StudyDescription="",
                                       **keys)).values("StudyDescription")

    assert "EMPTY1" in described(PatientName="Doe^John")
    assert "EMPTY1" in described(StudyDate="20240102-20240103")
    assert "EMPTY1" in described(AccessionNumber="ACC-DOE1")
    assert "EMPTY1" in described(StudyTime="1015")
    assert described(StudyDate="20240102") == ["CT Chest", "EMPTY1", "Schädel"]
