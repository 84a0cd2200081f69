"""C-FIND extended negotiation (PS3.4 C.5.1.1): relational queries (C.4.1.3.2), combined
date-time matching (C.2.2.2.5.4), fuzzy semantic PN matching (C.2.2.2.1.1) and timezone
query adjustment (C.2.2.2.1.3); without the negotiation, baseline rules hold."""

from __future__ import annotations

from pathlib import Path

from pacs.dimse.server import RunningServer
from pacs.services.context import Services
from tests.factory import make_dataset
from tests.integration.find_support import (
    find,
    module_server,
    populate_core,
    query,
    series_uid,
    store_all,
    strict_hierarchy,
    study_uid,
)

RELATIONAL = b"\x01"
COMBINED = b"\x00\x01"
FUZZY = b"\x00\x00\x01"
TIMEZONE = b"\x00\x00\x00\x01"


def populate(services: Services, folder: Path) -> None:
    """The core data set and a study at 23:30 UTC on 5 January."""
    populate_core(services, folder)
    store_all(services, folder / "tz", iter([make_dataset(
        patient_id="PAT-TZ", patient_name="Zone^Tim", study="TZ1", StudyID="TZ1", modality="MR",
        StudyDate="20240105", StudyTime="233000", TimezoneOffsetFromUTC="+0000")]))


find_server = module_server(populate)


# PS3.4 C.5.1.1: each offered sub-field is answered 1 (accepted) or 0; Enhanced
# Multi-Frame Image Conversion (byte 5) is declined.
def test_extended_negotiation_answer(find_server: RunningServer) -> None:
    identifier = query(QueryRetrieveLevel="STUDY", StudyID="DOE1")
    assert find(find_server, identifier, ext_neg=b"\x01\x01\x01\x01\x01").accepted_info == \
        b"\x01\x01\x01\x01\x00"
    assert find(find_server, identifier, ext_neg=b"\x00\x01").accepted_info == b"\x00\x01"


# PS3.4 C.5.1.1: a single byte offered gets a single byte back.
def test_extended_negotiation_single_byte_answered_with_one_byte(
    find_server: RunningServer,
) -> None:
    identifier = query(QueryRetrieveLevel="STUDY", StudyID="DOE1")
    assert find(find_server, identifier, ext_neg=RELATIONAL).accepted_info == b"\x01"
    assert find(find_server, identifier).accepted_info is None


# PS3.4 C.4.1.3.2.2: relational queries may leave out the Unique Keys above and match on
# keys of any level above; responses carry the Unique Keys above all the same.
def test_relational_query_without_unique_key_above(find_server: RunningServer) -> None:
    identifier = query(QueryRetrieveLevel="STUDY", PatientName="Doe*", StudyID="")
    result = find(find_server, identifier, model="P", ext_neg=RELATIONAL)
    assert result.status == 0x0000
    assert result.values("StudyID") == ["DOE1", "DOE2", "JANE1"]
    assert sorted({i.PatientID for i in result.identifiers}) == ["PAT-DOE", "PAT-JANE"]
    with strict_hierarchy(find_server):  # without it, answered as here (issue #11)
        assert find(find_server, identifier, model="P").status == 0xA900


# PS3.4 C.4.1.3.2.2: a SERIES query across every study, keyed on a series attribute.
def test_relational_series_query_across_studies(find_server: RunningServer) -> None:
    identifier = query(QueryRetrieveLevel="SERIES", Modality="CT", SeriesDescription="")
    result = find(find_server, identifier, ext_neg=RELATIONAL)
    assert result.values("SeriesDescription") == ["DOE1-CT", "INJ1-CT", "MUE1-CT"]
    assert {i.StudyInstanceUID for i in result.identifiers} == {
        study_uid("PAT-DOE", "DOE1"), study_uid("PAT-INJ%_", "INJ1"),
        study_uid("PAT-MUE", "MUE1")}
    with strict_hierarchy(find_server):  # without it, answered as here (issue #11)
        assert find(find_server, identifier).status == 0xA900


# PS3.4 C.4.1.3.2.2: keys two levels up take part in matching.
def test_relational_image_query_on_patient_name(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="IMAGE", PatientName="Müller*",
                                     SpecificCharacterSet="ISO_IR 192", InstanceNumber=""),
                  ext_neg=RELATIONAL)
    assert len(result.identifiers) == 1
    identifier = result.identifiers[0]
    assert identifier.SeriesInstanceUID == series_uid("PAT-MUE", "MUE1", "MUE1-CT")
    assert str(identifier.PatientName) == "Müller^Jürgen"


# PS3.4 C.2.2.2.5.4: with combined date-time matching, a date range and a time range are
# one period; without it, each day's 23:00-11:00 is a midnight-crossing range: no match.
def test_combined_date_time_matching(find_server: RunningServer) -> None:
    identifier = query(QueryRetrieveLevel="STUDY", StudyID="", StudyDate="20231231-20240102",
                       StudyTime="2300-1100")
    assert find(find_server, identifier, ext_neg=COMBINED).values("StudyID") == [
        "DOE1", "JANE1"]
    assert find(find_server, identifier).values("StudyID") == []


# PS3.4 C.2.2.2.5.4: different range forms stay separate matches even when negotiated.
def test_combined_matching_needs_the_same_range_form(find_server: RunningServer) -> None:
    identifier = query(QueryRetrieveLevel="STUDY", StudyID="", StudyDate="20240102-20240315",
                       StudyTime="-0900")
    assert find(find_server, identifier, ext_neg=COMBINED).values("StudyID") == ["DOE2"]


# PS3.4 C.2.2.2.1.1: fuzzy semantic matching ignores accents, case and name order.
def test_fuzzy_semantic_person_name_matching(find_server: RunningServer) -> None:
    def names(value: str, ext_neg: bytes | None) -> list[str]:
        return find(find_server, query(QueryRetrieveLevel="STUDY", StudyID="",
                                       PatientName=value), ext_neg=ext_neg).values("StudyID")

    assert names("muller^jurgen", FUZZY) == ["MUE1"]
    assert names("Jurgen Muller", FUZZY) == ["MUE1"]
    assert names("JOHN^DOE", FUZZY) == ["DOE1", "DOE2"]
    assert names("mu*^jurg?n", FUZZY) == ["MUE1"]
    assert names("muller^jurgen", None) == []


# PS3.4 C.2.2.2.1.3: with timezone adjustment, the request's local date and time are moved
# to each study's offset: 01:00-02:00 on 6 Jan at +0200 is 23:00-00:00 on 5 Jan at +0000.
def test_timezone_query_adjustment_of_date_and_time(find_server: RunningServer) -> None:
    identifier = query(QueryRetrieveLevel="STUDY", StudyID="", StudyDate="20240106",
                       StudyTime="0100-0200", TimezoneOffsetFromUTC="+0200")
    assert find(find_server, identifier, ext_neg=TIMEZONE).values("StudyID") == ["TZ1"]
    assert find(find_server, identifier).values("StudyID") == []


# PS3.4 C.2.2.2.1.3: a time alone is moved too, wrapping midnight.
def test_timezone_query_adjustment_of_a_time(find_server: RunningServer) -> None:
    identifier = query(QueryRetrieveLevel="STUDY", StudyID="", StudyTime="0100-0200",
                       TimezoneOffsetFromUTC="+0200")
    assert find(find_server, identifier, ext_neg=TIMEZONE).values("StudyID") == ["TZ1"]


# PS3.4 C.2.2.2.1.3: DT values without an offset are read in the request's time zone.
def test_timezone_query_adjustment_of_datetime(find_server: RunningServer) -> None:
    identifier = query(QueryRetrieveLevel="IMAGE", InstanceNumber="",
                       StudyInstanceUID=study_uid("PAT-DOE", "DOE1"),
                       SeriesInstanceUID=series_uid("PAT-DOE", "DOE1", "DOE1-CT"),
                       AcquisitionDateTime="20240102121500-20240102121520",
                       TimezoneOffsetFromUTC="+0200")
    assert find(find_server, identifier, ext_neg=TIMEZONE).values("InstanceNumber") == ["1"]
    assert find(find_server, identifier).values("InstanceNumber") == []
