"""Hierarchical C-FIND validation (PS3.4 C.4.1.2.1, C.4.1.1.4): 0xA900 with Offending
Element and Error Comment, before any Pending response."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacs.config import Peer
from pacs.dimse.server import RunningServer
from pacs.services.access import AccessPolicy
from tests.dcmtk import run_tool
from tests.integration.find_support import (
    FindResult,
    find,
    module_server,
    populate_core,
    query,
    series_uid,
    strict_hierarchy,
    study_uid,
)

find_server = module_server(populate_core)
DOE1 = study_uid("PAT-DOE", "DOE1")
DOE1_CT = series_uid("PAT-DOE", "DOE1", "DOE1-CT")


def refused(result: FindResult, tag: int) -> None:
    """Assert 0xA900 naming `tag`, with a comment, and no Pending response before it."""
    assert result.pending == []
    assert result.status == 0xA900, result.final
    assert result.final is not None
    offending = result.final["OffendingElement"]
    assert (list(offending.value) if offending.VM > 1 else [offending.value]) == [tag]
    assert result.final.ErrorComment


# PS3.4 C.4.1.1.3.1: Query/Retrieve Level is mandatory.
def test_missing_query_retrieve_level_is_a900(find_server: RunningServer) -> None:
    refused(find(find_server, query(PatientName="Doe*")), 0x00080052)


# PS3.4 C.6.2.1: a value that is no level of the model.
def test_invalid_query_retrieve_level_is_a900(find_server: RunningServer) -> None:
    refused(find(find_server, query(QueryRetrieveLevel="STUDIES", PatientName="")), 0x00080052)
    refused(find(find_server, query(QueryRetrieveLevel="study", PatientName="")), 0x00080052)


# PS3.4 C.6.2.1: Study Root has no PATIENT level.
def test_patient_level_in_study_root_is_a900(find_server: RunningServer) -> None:
    refused(find(find_server, query(QueryRetrieveLevel="PATIENT", PatientID="")), 0x00080052)


# PS3.4 C.4.1.2.1, query.strict_hierarchy = true: the Unique Key of each level above must be
# given.
def test_missing_unique_key_above_is_a900_when_strict(find_server: RunningServer) -> None:
    with strict_hierarchy(find_server):
        refused(find(find_server, query(QueryRetrieveLevel="STUDY", StudyDate=""), model="P"),
                0x00100020)
        refused(find(find_server, query(QueryRetrieveLevel="IMAGE", StudyInstanceUID=DOE1,
                                        SOPInstanceUID="")), 0x0020000E)


# PS3.4 C.4.1.2.1, strict: ... with a single value: no wildcard ...
def test_wildcard_unique_key_above_is_a900_when_strict(find_server: RunningServer) -> None:
    with strict_hierarchy(find_server):
        refused(find(find_server, query(QueryRetrieveLevel="STUDY", PatientID="PAT-*",
                                        StudyDate=""), model="P"), 0x00100020)


# PS3.4 C.4.1.2.1, strict: ... no list, and no zero-length value.
def test_list_or_empty_unique_key_above_is_a900_when_strict(find_server: RunningServer) -> None:
    with strict_hierarchy(find_server):
        refused(find(find_server, query(QueryRetrieveLevel="SERIES",
                                        StudyInstanceUID=[DOE1, "1.2.3"], Modality="")),
                0x0020000D)
        refused(find(find_server, query(QueryRetrieveLevel="SERIES", StudyInstanceUID="",
                                        Modality="")), 0x0020000D)


# PS3.4 C.4.1.2.1, strict: no Required or Optional keys of the levels above.
def test_non_unique_key_above_is_a900_when_strict(find_server: RunningServer) -> None:
    with strict_hierarchy(find_server):
        refused(find(find_server, query(QueryRetrieveLevel="STUDY", PatientID="PAT-DOE",
                                        PatientName="Doe^John"), model="P"), 0x00100010)


# PS3.4 C.4.1.2.1, strict: keys of the levels below the Query/Retrieve Level are not allowed.
def test_key_below_the_level_is_a900_when_strict(find_server: RunningServer) -> None:
    with strict_hierarchy(find_server):
        refused(find(find_server, query(QueryRetrieveLevel="STUDY", Modality="CT")),
                0x00080060)
        refused(find(find_server, query(QueryRetrieveLevel="PATIENT", PatientID="",
                                        StudyDate=""), model="P"), 0x00080020)


# PS3.4 C.2.2.2.5.1: a DA value that is neither a date nor a range.
def test_malformed_date_is_a900(find_server: RunningServer) -> None:
    refused(find(find_server, query(QueryRetrieveLevel="STUDY", StudyDate="2024-01-02")),
            0x00080020)
    refused(find(find_server, query(QueryRetrieveLevel="STUDY", StudyDate="yesterday")),
            0x00080020)



# PS3.4 C.2.2.2.5.1: "-" alone bounds neither end; it is refused, not read as "everything".
@pytest.mark.parametrize("keyword, tag", [("StudyDate", 0x00080020), ("StudyTime", 0x00080030),
                                          ("AcquisitionDateTime", 0x0008002A)])
def test_lone_dash_range_is_a900(find_server: RunningServer, keyword: str, tag: int) -> None:
    level = "IMAGE" if keyword == "AcquisitionDateTime" else "STUDY"
    keys = {"StudyInstanceUID": DOE1, "SeriesInstanceUID": DOE1_CT} if level == "IMAGE" else {}
    refused(find(find_server, query(QueryRetrieveLevel=level, **keys, **{keyword: "-"})), tag)


# PS3.4 C.2.2.2.5.1 with DCMTK's findscu: the same refusal, with the comment on the wire.
def test_lone_dash_range_from_findscu_is_a900(find_server: RunningServer) -> None:
    host, port = find_server.address
    result = run_tool("findscu", ["-d", "-S", "-aec", "MINIPACS", host, str(port),
                                  "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyDate=-",
                                  "-k", "StudyInstanceUID"])
    output = result.stdout + result.stderr
    assert "DIMSE Status                  : 0xa900" in output, output
    assert "(0000,0902) LO [StudyDate '-' alone is not a range]" in output
    assert "Find Response: 1" not in output


# PS3.4 C.2.2.2.6: a sequence key holds one item.
def test_sequence_key_with_two_items_is_a900(find_server: RunningServer) -> None:
    sequence = Sequence([Dataset(), Dataset()])
    sequence[0].ReferencedSOPInstanceUID = "1.2"
    sequence[1].ReferencedSOPInstanceUID = "1.3"
    refused(find(find_server, query(QueryRetrieveLevel="STUDY",
                                    ReferencedStudySequence=sequence)), 0x00081110)


# PS3.4 C.2.2.2: only UI keys take a list of values; a single-valued key does not.
def test_several_values_on_a_single_valued_key_is_a900(find_server: RunningServer) -> None:
    refused(find(find_server, query(QueryRetrieveLevel="STUDY", AccessionNumber=["A", "B"])),
            0x00080050)


# PS3.4 C.4.1.1.4: a valid identifier after a refused one on the same server still works.
def test_valid_query_after_refusals_succeeds(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", PatientID="PAT-DOE",
                                     StudyID=""), model="P")
    assert result.status == 0x0000
    assert result.values("StudyID") == ["DOE1", "DOE2"]


@pytest.fixture
def store_only_allow_list(find_server: RunningServer) -> Iterator[None]:
    """An allow-list that lets FINDSCU store but not query, for one test."""
    services = find_server.services
    before = services.access
    services.access = AccessPolicy((Peer("FINDSCU", None, frozenset({"store"})),), "reject")
    yield
    services.access = before


# PS3.7 C.5.4: a caller the allow-list does not let query gets 0x0124, no matches.
def test_caller_without_find_permission_is_refused(find_server: RunningServer,
                                                   store_only_allow_list: None) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", StudyID=""))
    assert result.pending == []
    assert result.status == 0x0124
