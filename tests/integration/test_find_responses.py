"""C-FIND responses (PS3.4 C.4.1.1.3.2, C.3.4): what each Pending response carries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacs.dimse.server import RunningServer
from tests.factory import make_dataset
from tests.integration.find_support import (
    STUDY_BY_LABEL,
    find,
    module_server,
    populate_core,
    query,
    series_uid,
    store_all,
    study_uid,
)

find_server = module_server(populate_core)
DOE1 = study_uid("PAT-DOE", "DOE1")


def keys(identifier: Dataset) -> set[str]:
    """The keywords of an identifier (private tags as their tag)."""
    return {element.keyword or str(element.tag) for element in identifier}


# PS3.4 C.4.1.3.1: one Pending response per matching study, not one per instance.
def test_one_response_per_study(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=""))
    assert len(result.identifiers) == len(STUDY_BY_LABEL) == 6
    assert len(set(result.values("StudyInstanceUID"))) == 6
    assert result.status == 0x0000


# PS3.4 C.4.1.3.1: one Pending response per matching series at SERIES level.
def test_one_response_per_series(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="SERIES", StudyInstanceUID=DOE1,
                                     SeriesDescription=""))
    assert result.values("SeriesDescription") == ["DOE1-CT", "DOE1-SR"]


# PS3.4 C.4.1.1.3.2: only the requested keys, the Query/Retrieve Level and Retrieve AE
# Title (which shall be present when no File-Set ID is) come back; nothing else.
def test_response_carries_only_requested_keys(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", PatientName="Doe^John",
                                     StudyDate=""))
    assert len(result.identifiers) == 2
    for identifier in result.identifiers:
        assert keys(identifier) == {"QueryRetrieveLevel", "RetrieveAETitle", "PatientName",
                                    "StudyDate"}
        assert identifier.RetrieveAETitle == "MINIPACS"
        assert identifier.QueryRetrieveLevel == "STUDY"


# PS3.4 C.4.1.3.1.1: the Unique Keys of the levels above are in every response.
def test_response_carries_unique_keys_above(find_server: RunningServer) -> None:
    result = find(find_server, query(
        QueryRetrieveLevel="IMAGE", PatientID="PAT-DOE", StudyInstanceUID=DOE1,
        SeriesInstanceUID=series_uid("PAT-DOE", "DOE1", "DOE1-CT"), InstanceNumber=""),
        model="P")
    assert result.values("InstanceNumber") == ["1", "2"]
    for identifier in result.identifiers:
        assert identifier.PatientID == "PAT-DOE"
        assert identifier.StudyInstanceUID == DOE1
        assert "SOPInstanceUID" not in identifier


# PS3.4 C.4.1.1.3.2 note 2: a supported key without a value comes back zero length.
def test_supported_key_without_value_comes_back_empty(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyID="DOE1",
                                     PatientBirthTime="", AdmittingDiagnosesDescription=""))
    identifier = result.identifiers[0]
    assert identifier["PatientBirthTime"].is_empty
    assert identifier["AdmittingDiagnosesDescription"].is_empty
    assert result.pending[0][0] == 0xFF00


# PS3.4 C.4.1.1.4: a requested key we do not support comes back empty, status 0xFF01.
def test_unsupported_key_comes_back_empty_with_ff01(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyID="DOE1",
                                     PatientMotherBirthName="Smith"))
    assert [status for status, _ in result.pending] == [0xFF01]
    assert result.identifiers[0]["PatientMotherBirthName"].is_empty
    assert result.status == 0x0000


# PS3.4 C.4.1.1.3.2 note 4: private keys are not returned; the status says 0xFF01.
def test_private_key_is_not_returned(find_server: RunningServer) -> None:
    identifier = query(QueryRetrieveLevel="STUDY", StudyID="DOE1")
    block = identifier.private_block(0x0009, "MINIPACS TEST", create=True)
    block.add_new(0x01, "LO", "x")
    result = find(find_server, identifier)
    assert [status for status, _ in result.pending] == [0xFF01]
    assert not any(element.tag.is_private for element in result.identifiers[0])


# PS3.4 C.4.1.1.3.2: Specific Character Set only when a value is not plain ASCII.
def test_specific_character_set_only_when_needed(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", SpecificCharacterSet="ISO_IR 100",
                                     StudyID="", PatientName="", StudyDate="20240102"))
    by_study = {identifier.StudyID: identifier for identifier in result.identifiers}
    assert by_study["MUE1"].SpecificCharacterSet == "ISO_IR 192"
    assert str(by_study["MUE1"].PatientName) == "Müller^Jürgen"
    assert "SpecificCharacterSet" not in by_study["DOE1"]


# PS3.4 C.2.2.2: request values are decoded with the request's own character set.
def test_request_decoded_with_its_character_set(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", SpecificCharacterSet="ISO_IR 100",
                                     PatientName="Müller^Jürgen", StudyDescription="Schädel"))
    assert [str(i.PatientName) for i in result.identifiers] == ["Müller^Jürgen"]
    assert result.identifiers[0].StudyDescription == "Schädel"


# PS3.4 C.4.1.1.3.2: Instance Availability and Timezone Offset From UTC when asked.
def test_instance_availability_and_timezone_when_asked(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyID="DOE*",
                                     InstanceAvailability="", TimezoneOffsetFromUTC=""))
    by_study = {identifier.StudyID: identifier for identifier in result.identifiers}
    assert by_study["DOE1"].InstanceAvailability == "ONLINE"
    assert by_study["DOE1"].TimezoneOffsetFromUTC == "+0000"
    assert "TimezoneOffsetFromUTC" not in by_study["DOE2"]  # never sent zero length


# --- computed keys (C.3.4) ----------------------------------------------------------------

# PS3.4 C.3.4: Number of Patient Related Studies/Series/Instances from the index.
def test_patient_related_counts(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="PATIENT", PatientID="PAT-DOE",
                                     NumberOfPatientRelatedStudies="",
                                     NumberOfPatientRelatedSeries="",
                                     NumberOfPatientRelatedInstances=""), model="P")
    identifier = result.identifiers[0]
    assert (identifier.NumberOfPatientRelatedStudies, identifier.NumberOfPatientRelatedSeries,
            identifier.NumberOfPatientRelatedInstances) == (2, 3, 4)


# PS3.4 C.3.4: study counts, Modalities in Study and SOP Classes in Study.
def test_study_related_counts_modalities_and_sop_classes(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=DOE1,
                                     NumberOfStudyRelatedSeries="",
                                     NumberOfStudyRelatedInstances="", ModalitiesInStudy="",
                                     SOPClassesInStudy="", NumberOfPatientRelatedStudies=""))
    identifier = result.identifiers[0]
    assert (identifier.NumberOfStudyRelatedSeries, identifier.NumberOfStudyRelatedInstances) \
        == (2, 3)
    assert list(identifier.ModalitiesInStudy) == ["CT", "SR"]
    assert list(identifier.SOPClassesInStudy) == ["1.2.840.10008.5.1.4.1.1.2",
                                                  "1.2.840.10008.5.1.4.1.1.88.11"]
    assert identifier.NumberOfPatientRelatedStudies == 2  # Study Root: patient keys too


# PS3.4 C.3.4: Number of Series Related Instances.
def test_series_related_instances(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="SERIES", StudyInstanceUID=DOE1,
                                     SeriesDescription="", NumberOfSeriesRelatedInstances=""))
    counts = {i.SeriesDescription: i.NumberOfSeriesRelatedInstances for i in result.identifiers}
    assert counts == {"DOE1-CT": 2, "DOE1-SR": 1}


# PS3.4 C.3.4: a computed count can be matched.
def test_count_can_be_matched(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyID="",
                                     NumberOfStudyRelatedInstances="3"))
    assert result.values("StudyID") == ["DOE1"]


@pytest.fixture
def extra_instance(find_server: RunningServer, tmp_path: Path) -> Iterator[None]:
    """One more CT instance in study DOE2, removed afterwards."""
    dataset = make_dataset(series="DOE2-CT", instance=9, modality="CT",
                           **STUDY_BY_LABEL["DOE2"])
    store_all(find_server.services, tmp_path, iter([dataset]))
    yield
    record = find_server.services.index.remove_instance(dataset.SOPInstanceUID)
    assert record is not None
    find_server.services.archive.remove(record.file_path)


# PS3.4 C.3.4: computed keys follow the index at once; nothing is a stale counter.
def test_computed_keys_are_never_stale(find_server: RunningServer, extra_instance: None
                                       ) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyID="DOE2",
                                     NumberOfStudyRelatedSeries="", ModalitiesInStudy="",
                                     NumberOfStudyRelatedInstances=""))
    identifier = result.identifiers[0]
    assert (identifier.NumberOfStudyRelatedSeries, identifier.NumberOfStudyRelatedInstances,
            list(identifier.ModalitiesInStudy)) == (2, 2, ["CT", "MR"])


# --- the rest of PS3.4 Tables C.6-2 and C.6-4 ---------------------------------------------

def _ct_images(server: RunningServer, **keys: object):  # noqa: ANN202 - FindResult
    return find(server, query(QueryRetrieveLevel="IMAGE", StudyInstanceUID=DOE1,
                              SeriesInstanceUID=series_uid("PAT-DOE", "DOE1", "DOE1-CT"),
                              InstanceNumber="", **keys))


# PS3.4 C.3.4: Anatomic Regions in Study Code Sequence: the union of the instances' codes.
def test_anatomic_regions_in_study_is_the_union(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=DOE1,
                                     AnatomicRegionsInStudyCodeSequence=[]))
    regions = result.identifiers[0].AnatomicRegionsInStudyCodeSequence
    assert sorted(item.CodeMeaning for item in regions) == ["Abdomen", "Chest"]
    assert result.pending[0][0] == 0xFF00


# PS3.4 C.2.2.1.3: it is returned but not matched: a value asked for gives 0xFF01.
def test_anatomic_regions_in_study_not_matched_warns(find_server: RunningServer) -> None:
    item = Dataset()
    item.CodeValue = "nothing-like-this"
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=DOE1,
                                     AnatomicRegionsInStudyCodeSequence=[item]))
    assert [status for status, _ in result.pending] == [0xFF01]


# PS3.4 C.6.1.1.5.1: Alternate Representation Sequence: we hold no alternates: no items.
def test_alternate_representation_is_empty(find_server: RunningServer) -> None:
    result = _ct_images(find_server, AlternateRepresentationSequence=[])
    assert [len(i.AlternateRepresentationSequence) for i in result.identifiers] == [0, 0]
    assert {status for status, _ in result.pending} == {0xFF00}


# PS3.4 C.6.1.1.5.2: Available Transfer Syntax UID is the syntax the instance is held in.
def test_available_transfer_syntax(find_server: RunningServer) -> None:
    result = _ct_images(find_server, AvailableTransferSyntaxUID="")
    assert {str(i.AvailableTransferSyntaxUID) for i in result.identifiers} == {
        "1.2.840.10008.1.2.1"}


# PS3.4 Table C.6-4: Related General SOP Class UID, list of UID matching.
def test_related_general_sop_class_uid(find_server: RunningServer) -> None:
    result = _ct_images(find_server, RelatedGeneralSOPClassUID=[
        "1.2.840.10008.5.1.4.1.1.2.1", "1.2.9.9"])
    assert result.values("InstanceNumber") == ["1"]


# PS3.4 Table C.6-4: Specimen Description Sequence, sequence matching on its identifier.
def test_specimen_description_sequence(find_server: RunningServer) -> None:
    item = Dataset()
    item.SpecimenIdentifier = "SPEC-*"
    item.SpecimenUID = ""
    result = find(find_server, query(
        QueryRetrieveLevel="IMAGE", StudyInstanceUID=DOE1,
        SeriesInstanceUID=series_uid("PAT-DOE", "DOE1", "DOE1-SR"), InstanceNumber="",
        SpecimenDescriptionSequence=[item]))
    specimens = result.identifiers[0].SpecimenDescriptionSequence
    assert [(s.SpecimenIdentifier, s.SpecimenUID) for s in specimens] == [("SPEC-1",
                                                                             "1.2.3.77")]
