"""QIDO-RS (PS3.18 10.6) with dicomweb-client and httpx, on the C-FIND suites' data set, on
SQLite and PostgreSQL: the same question asked as C-FIND and as QIDO-RS gets the same answer.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.find_support import find, populate_core, query, series_uid, study_uid
from tests.web.support import Faces, module_faces, value

faces = module_faces(populate_core)
ALL = ["DOE1", "DOE2", "DROP1", "INJ1", "JANE1", "MUE1"]


def qido_study_ids(faces: Faces, **params: Any) -> list[str]:
    response = faces.get("studies", params={**params, "includefield": "StudyID"})
    assert response.status_code == 200, response.text
    return sorted(value(item, "00200010") for item in response.json())


def cfind_study_ids(faces: Faces, **keys: Any) -> list[str]:
    result = find(faces.dimse, query(QueryRetrieveLevel="STUDY", StudyID="", **keys))
    assert result.status == 0x0000
    return result.values("StudyID")


# PS3.18 10.6.1 / PS3.4 C.2.2.2: a search is a C-FIND: matching agrees key by key.
@pytest.mark.parametrize(("params", "keys"), [
    ({"PatientName": "doe*"}, {"PatientName": "doe*"}),
    ({"PatientName": "Doe^John"}, {"PatientName": "Doe^John"}),
    ({"00100010": "DOE^JANE"}, {"PatientName": "DOE^JANE"}),
    ({"PatientName": "Müller^Jürgen"},
     {"PatientName": "Müller^Jürgen", "SpecificCharacterSet": "ISO_IR 192"}),
    ({"StudyDate": "20240101-20240201"}, {"StudyDate": "20240101-20240201"}),
    ({"StudyDate": "-20231231"}, {"StudyDate": "-20231231"}),
    ({"StudyTime": "1015"}, {"StudyTime": "1015"}),
    ({"AccessionNumber": "ACC_1%"}, {"AccessionNumber": "ACC_1%"}),
    ({"AccessionNumber": "acc-doe1"}, {"AccessionNumber": "acc-doe1"}),
    ({"StudyDescription": "100%_sure [x]"}, {"StudyDescription": "100%_sure [x]"}),
    ({"StudyDescription": "*?*"}, {"StudyDescription": "*?*"}),
    ({"ModalitiesInStudy": "SR"}, {"ModalitiesInStudy": "SR"}),
    ({"ModalitiesInStudy": "C*"}, {"ModalitiesInStudy": "C*"}),
    ({"PatientID": "PAT-INJ%_"}, {"PatientID": "PAT-INJ%_"}),
    ({"ReferringPhysicianName": "Dvořák^Antonín"},
     {"ReferringPhysicianName": "Dvořák^Antonín", "SpecificCharacterSet": "ISO_IR 192"}),
    ({"ProcedureCodeSequence.CodeValue": "CT-CHEST"},
     {"ProcedureCodeSequence": [query(CodeValue="CT-CHEST")]}),
])
def test_search_matches_as_c_find(faces: Faces, params: dict[str, str],
                                  keys: dict[str, Any]) -> None:
    assert qido_study_ids(faces, **params) == cfind_study_ids(faces, **keys)


# PS3.18 8.3.4.1 / PS3.4 C.2.2.2.2: UIDs listed with commas are a list of UID matching.
def test_uid_list_with_commas(faces: Faces) -> None:
    uids = ",".join([study_uid("PAT-DOE", "DOE1"), study_uid("PAT-MUE", "MUE1"), "1.2.3.999"])
    assert qido_study_ids(faces, StudyInstanceUID=uids) == ["DOE1", "MUE1"]


# PS3.18 8.3.4.1: values are percent-decoded (`^`, `*`, non-ASCII written as %XX).
def test_values_are_percent_decoded(faces: Faces) -> None:
    response = faces.get("studies?PatientName=M%C3%BCller%5EJ%C3%BCrgen&includefield=StudyID")
    assert [value(item, "00200010") for item in response.json()] == ["MUE1"]
    response = faces.get("studies?PatientName=Doe%5EJo%2A&includefield=StudyID")
    assert sorted(value(item, "00200010") for item in response.json()) == ["DOE1", "DOE2"]


# PS3.18 10.6.3.3.1 / PS3.4 C.3.4: computed keys agree with C-FIND's.
def test_computed_keys_agree_with_c_find(faces: Faces) -> None:
    response = faces.get("studies", params={"StudyID": "DOE1"})
    (study,) = response.json()
    result = find(faces.dimse, query(QueryRetrieveLevel="STUDY", StudyID="DOE1",
                                     NumberOfStudyRelatedSeries="",
                                     NumberOfStudyRelatedInstances="", ModalitiesInStudy=""))
    (identifier,) = result.identifiers
    assert value(study, "00201206") == identifier.NumberOfStudyRelatedSeries == 2
    assert value(study, "00201208") == identifier.NumberOfStudyRelatedInstances == 3
    assert study["00080061"]["Value"] == list(identifier.ModalitiesInStudy) == ["CT", "SR"]


# PS3.18 10.6.1: searches at every level, with dicomweb-client.
def test_search_at_every_level_with_dicomweb_client(faces: Faces) -> None:
    client = faces.client()
    doe1 = study_uid("PAT-DOE", "DOE1")
    ct = series_uid("PAT-DOE", "DOE1", "DOE1-CT")
    assert len(client.search_for_studies()) == 6
    assert len(client.search_for_series()) == 7
    assert len(client.search_for_instances()) == 8
    assert len(client.search_for_series(study_instance_uid=doe1)) == 2
    assert len(client.search_for_instances(study_instance_uid=doe1)) == 3
    instances = client.search_for_instances(study_instance_uid=doe1, series_instance_uid=ct)
    assert sorted(value(i, "00200013") for i in instances) == [1, 2]
    assert all(value(i, "0020000D") == doe1 and value(i, "0020000E") == ct for i in instances)


# PS3.18 10.6.3.3.1: each result carries its Retrieve URL, on the host and port used.
def test_results_carry_retrieve_url(faces: Faces) -> None:
    doe1 = study_uid("PAT-DOE", "DOE1")
    (series,) = faces.get(f"studies/{doe1}/series", params={"Modality": "SR"}).json()
    url = value(series, "00081190")
    assert url == f"{faces.root}/studies/{doe1}/series/{value(series, '0020000E')}"


# PS3.18 8.3.4.3: includefield takes keywords and tags, a comma list, or `all`.
def test_includefield_list_tags_and_all(faces: Faces) -> None:
    (study,) = faces.get("studies", params={"StudyID": "DOE1",
                                            "includefield": "StudyDescription,00081060"}).json()
    assert value(study, "00081030") == "CT Chest"
    assert value(study, "00081060") == "Reader^One"
    (everything,) = faces.get("studies", params={"StudyID": "DOE1",
                                                 "includefield": "all"}).json()
    assert "00080062" in everything  # SOP Classes in Study is not a default key
    assert "00080062" not in study


# PS3.18 8.3.4.4: limit and offset page through the matches; paging until an empty page ends.
def test_limit_offset_paging_terminates(faces: Faces) -> None:
    pages = [faces.get("studies", params={"limit": 4, "offset": offset,
                                          "includefield": "StudyID"}).json()
             for offset in (0, 4, 8)]
    assert [len(page) for page in pages] == [4, 2, 0]
    found = sorted(value(item, "00200010") for page in pages for item in page)
    assert found == ALL
    client = faces.client()
    assert len(client.search_for_studies(limit=2, get_remaining=True)) == 6


# PS3.18 8.3.4.1: unknown query parameters are ignored.
def test_unknown_parameters_are_ignored(faces: Faces) -> None:
    assert len(faces.get("studies", params={"_": "12345", "NotAnAttribute": "x"}).json()) == 6


# PS3.18 10.6.3 (CP-2473): no match is 200 with an empty array.
def test_no_match_is_an_empty_array(faces: Faces) -> None:
    response = faces.get("studies", params={"PatientID": "NOBODY"})
    assert (response.status_code, response.json()) == (200, [])


# PS3.18 10.6.3.2: a bad value is 400 with the reason.
@pytest.mark.parametrize(("params", "reason"), [
    ({"StudyDate": "2024-13-45"}, "StudyDate"),
    ({"limit": "ten"}, "limit"),
    ({"offset": "-1"}, "offset"),
    ({"StudyInstanceUID": "1.2.*"}, "UID"),
    ({"includefield": "NoSuchKeyword"}, "includefield"),
    ({"fuzzymatching": "maybe"}, "fuzzymatching"),
])
def test_bad_value_is_400_with_reason(faces: Faces, params: dict[str, str],
                                      reason: str) -> None:
    response = faces.get("studies", params=params)
    assert response.status_code == 400
    assert reason in response.json()["reason"]


# PS3.18 8.3.4.2 / PS3.4 C.2.2.2.1.4: fuzzymatching=true is fuzzy semantic PN matching.
def test_fuzzymatching(faces: Faces) -> None:
    assert qido_study_ids(faces, PatientName="john^doe") == []
    assert qido_study_ids(faces, PatientName="john^doe", fuzzymatching="true") == [
        "DOE1", "DOE2"]


# PS3.18 10.6.1: a series-level search under a study that does not exist finds nothing.
def test_series_of_unknown_study_is_empty(faces: Faces) -> None:
    assert faces.get("studies/1.2.3.4.5/series").json() == []
