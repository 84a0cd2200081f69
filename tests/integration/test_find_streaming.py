"""C-FIND cancel (PS3.4 C.4.1.3.1) and the match cap (0xA700), on each backend.

The index holds 2,000 instances in one series (indexed without files), so a C-CANCEL
sent after the first responses always arrives while matches are still streaming.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pacs.dimse.server import RunningServer
from pacs.services.context import Services
from tests.dcmtk import run_tool
from tests.factory import make_dataset
from tests.integration.find_support import (
    bulk_index,
    find,
    module_server,
    query,
    series_uid,
    study_uid,
)

BIG, SMALL = 2000, 100


def populate(services: Services, folder: Path) -> None:
    """One series of 2,000 instances and one of 100, indexed without files."""
    def datasets() -> Iterator:
        for number in range(1, BIG + 1):
            yield make_dataset(patient_id="PAT-BULK", study="BULK", series="BIG",
                               instance=number)
        for number in range(1, SMALL + 1):
            yield make_dataset(patient_id="PAT-BULK", study="BULK", series="SMALL",
                               instance=number)

    bulk_index(services, datasets())


find_server = module_server(populate)


def image_query(series: str) -> object:
    """Every instance of one bulk series."""
    return query(QueryRetrieveLevel="IMAGE", InstanceNumber="",
                 StudyInstanceUID=study_uid("PAT-BULK", "BULK"),
                 SeriesInstanceUID=series_uid("PAT-BULK", "BULK", series))


@pytest.fixture
def cap(find_server: RunningServer) -> Iterator[None]:
    """query.max_results set to 100 for one test."""
    services = find_server.services
    before = services.settings
    services.settings = replace(before, max_find_results=SMALL)
    yield
    services.settings = before


# PS3.4 C.4.1.3.1: every match is sent, one Pending response each, then Success.
def test_all_matches_streamed(find_server: RunningServer) -> None:
    result = find(find_server, image_query("BIG"))
    assert result.status == 0x0000
    assert len(result.identifiers) == BIG


# PS3.4 C.4.1.3.1: a C-FIND-CANCEL stops the responses; the final status is 0xFE00.
def test_cancel_stops_responses_with_fe00(find_server: RunningServer) -> None:
    result = find(find_server, image_query("BIG"), cancel_after=1)
    assert result.status == 0xFE00
    assert 1 <= len(result.identifiers) < BIG


# PS3.4 C.4.1.3.1 with DCMTK: findscu --cancel 3 sends a C-FIND-CANCEL after the third Pending
# response; the SCP interrupts matching and answers Cancel, long before the series' BIG matches.
# (findscu -v prints "Find Response: N (Pending)" per Pending response.)
def test_findscu_cancel(find_server: RunningServer, tmp_path: Path) -> None:
    host, port = find_server.address
    arguments = ["-v", "-aec", "MINIPACS", host, str(port), "-S", "--cancel", "3",
                 "-k", "QueryRetrieveLevel=IMAGE", "-k", "InstanceNumber",
                 "-k", f"StudyInstanceUID={study_uid('PAT-BULK', 'BULK')}",
                 "-k", f"SeriesInstanceUID={series_uid('PAT-BULK', 'BULK', 'BIG')}"]
    result = run_tool("findscu", arguments, check=True)
    output = result.stdout + result.stderr
    cancel = output.find("Sending Cancel Request")
    final = re.search(r"Received Final Find Response \(([^)]*)\)", output)
    assert final is not None and "Cancel" in final.group(1), output[-2000:]
    assert 0 <= cancel < final.start(), output[-2000:]
    assert 3 <= len(re.findall(r"Find Response: \d+ \(Pending\)", output)) < BIG


# PS3.4 C.4.1.1.4: more matches than the cap is 0xA700 with a comment, not a truncation.
def test_more_matches_than_the_cap_is_a700(find_server: RunningServer, cap: None) -> None:
    result = find(find_server, image_query("BIG"))
    assert result.status == 0xA700
    assert result.pending == []
    assert result.final is not None and "100" in result.final.ErrorComment


# PS3.4 C.4.1.1.4: exactly as many matches as the cap are all answered.
def test_as_many_matches_as_the_cap_succeed(find_server: RunningServer, cap: None) -> None:
    result = find(find_server, image_query("SMALL"))
    assert result.status == 0x0000
    assert len(result.identifiers) == SMALL


# PS3.4 C.4.1.1.4: the cap counts entities at the query level, not instances below them.
def test_cap_counts_entities_of_the_level(find_server: RunningServer, cap: None) -> None:
    result = find(find_server, query(QueryRetrieveLevel="SERIES", SeriesInstanceUID="",
                                     StudyInstanceUID=study_uid("PAT-BULK", "BULK"),
                                     NumberOfSeriesRelatedInstances=""))
    assert result.status == 0x0000
    assert sorted(int(i.NumberOfSeriesRelatedInstances) for i in result.identifiers) == [
        SMALL, BIG]
