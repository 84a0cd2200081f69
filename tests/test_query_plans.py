"""Query plans: the keys C-FIND filters by are answered from indexes, on both backends.

Issue #5: queries stay fast as the index grows because the planner can use an index for
every key a PACS user filters by, and computed keys (counts, Modalities in Study) are found
through foreign-key indexes instead of scanning all instances for each response.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset

from pacs.index.database import Index
from pacs.index.query import FindQuery
from pacs.index.schema import is_sqlite
from pacs.model.identifier import parse_request
from pacs.model.levels import PATIENT_ROOT, STUDY_ROOT, InformationModel
from pacs.model.matching import constraints
from pacs.model.predicates import MatchOptions
from pacs.model.responses import response_keys

STUDY_UID = "1.2.826.0.1.3680043.10.1071.5.1"
SERIES_UID = "1.2.826.0.1.3680043.10.1071.5.1.1"
# (name, model, level, {keyword: value}, table that must not be scanned)
QUERIES = [
    ("patient by ID", PATIENT_ROOT, "PATIENT", {"PatientID": "PID42"}, "patient"),
    ("patient by name prefix", PATIENT_ROOT, "PATIENT", {"PatientName": "DOE*"}, "patient"),
    ("patient by birth date", PATIENT_ROOT, "PATIENT", {"PatientBirthDate": "19700101"},
     "patient"),
    ("study by UID", STUDY_ROOT, "STUDY", {"StudyInstanceUID": STUDY_UID}, "study"),
    ("study by date range", STUDY_ROOT, "STUDY", {"StudyDate": "20240101-20240107"}, "study"),
    ("study by accession", STUDY_ROOT, "STUDY", {"AccessionNumber": "A123"}, "study"),
    ("study by study ID", STUDY_ROOT, "STUDY", {"StudyID": "77"}, "study"),
    ("study by patient ID", STUDY_ROOT, "STUDY", {"PatientID": "PID42"}, "patient"),
    ("study by patient name prefix", STUDY_ROOT, "STUDY", {"PatientName": "DOE*"}, "patient"),
    ("series of a study", STUDY_ROOT, "SERIES", {"StudyInstanceUID": STUDY_UID}, "series"),
    ("series by UID", STUDY_ROOT, "SERIES",
     {"StudyInstanceUID": STUDY_UID, "SeriesInstanceUID": SERIES_UID}, "series"),
    ("images of a series", STUDY_ROOT, "IMAGE",
     {"StudyInstanceUID": STUDY_UID, "SeriesInstanceUID": SERIES_UID}, "instance"),
    ("image by UID", STUDY_ROOT, "IMAGE",
     {"StudyInstanceUID": STUDY_UID, "SeriesInstanceUID": SERIES_UID,
      "SOPInstanceUID": SERIES_UID + ".1"}, "instance"),
]
# Keys returned with every study query in the plans: the computed ones must not scan.
COMPUTED = ("NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries", "ModalitiesInStudy")


@pytest.fixture
def index(database_url: str) -> Iterator[Index]:
    opened = Index(database_url)
    if not is_sqlite(opened.database):
        # Tiny test tables make a sequential scan cheapest; what matters is that an index
        # exists the planner can use once the tables are large.
        opened.database.execute_sql("SET enable_seqscan = off")
    yield opened
    opened.close()


def _query(model: InformationModel, level: str, values: dict[str, str]) -> FindQuery:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in values.items():
        setattr(identifier, keyword, value)
    if level == "STUDY":
        for keyword in COMPUTED:
            setattr(identifier, keyword, "")
    request = parse_request(identifier, model, relational=False)
    options = MatchOptions(pn_case_insensitive=True)
    return FindQuery(request.level, constraints(request.values, options),
                     response_keys(request))


def _plan(index: Index, query: FindQuery) -> str:
    sql, params = query.sql()
    prefix = "EXPLAIN QUERY PLAN " if is_sqlite(index.database) else "EXPLAIN "
    rows = index.database.execute_sql(prefix + sql, params).fetchall()
    return "\n".join(" ".join(str(column) for column in row) for row in rows)


def _table_scans(plan: str, sqlite: bool) -> list[str]:
    """Plan lines that read a whole table (peewee aliases tables, so any table counts)."""
    if sqlite:
        # "SCAN v_1" reads a subquery's own small result (a co-routine), not a table.
        return [line for line in plan.splitlines()
                if (m := re.search(r"\bSCAN (\S+)", line)) and not m.group(1).startswith("v_")]
    # PostgreSQL: a Seq Scan, or an index walked end to end (no Index Cond under the node).
    lines = plan.splitlines()
    whole = []
    for number, line in enumerate(lines):
        if "Seq Scan" in line:
            whole.append(line)
        elif "Index Scan using" in line or "Index Only Scan using" in line:
            detail = []
            for following in lines[number + 1 :]:
                if "->" in following or "Scan" in following:
                    break
                detail.append(following)
            if not any("Index Cond" in d for d in detail):
                whole.append(line)
    return whole


@pytest.mark.parametrize(("name", "model", "level", "values", "table"), QUERIES,
                         ids=[q[0] for q in QUERIES])
def test_filter_key_is_answered_from_an_index(
    index: Index, name: str, model: InformationModel, level: str, values: dict[str, str],
    table: str,
) -> None:
    # No table is read whole: not the level's (`table`), and not instance, whose counts and
    # Modalities in Study must come through the foreign-key indexes.
    plan = _plan(index, _query(model, level, values))
    assert _table_scans(plan, is_sqlite(index.database)) == [], f"{name} ({table}):\n{plan}"


def test_an_unindexed_key_shows_up_as_a_scan(index: Index) -> None:
    # The detector itself: Patient Comments (LT) has no index, so its plan scans patient.
    plan = _plan(index, _query(PATIENT_ROOT, "PATIENT", {"PatientComments": "x"}))
    assert _table_scans(plan, is_sqlite(index.database)) != []


# PS3.4 C.6.1.1.3 (Number of Study Related Instances): counted from the instance table's
# index on its series alone, never from the instance rows (a covering/index-only read).
def test_instance_counts_read_only_the_series_index(index: Index) -> None:
    plan = _plan(index, _query(STUDY_ROOT, "STUDY", {"StudyDate": "20240101-20240107"}))
    if is_sqlite(index.database):
        assert re.search(r"SEARCH \S+ USING COVERING INDEX instance_series_id", plan), plan
    else:
        index.database.execute_sql("SET enable_bitmapscan = off")
        plan = _plan(index, _query(STUDY_ROOT, "STUDY", {"StudyDate": "20240101-20240107"}))
        assert "Index Only Scan using instance_series_id" in plan, plan
