"""query.py: predicates to SQL with bound values, counts, and matches read from a cursor,
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import pacs.index.query
from pacs.index.query import FindQuery
from pacs.model.levels import DERIVED, STUDY_ROOT, find_key
from pacs.model.matching import constraints, descendant_match
from pacs.model.predicates import Col, Compare, In, Like, MatchOptions, QueryValue
from pacs.services.context import Services, open_services
from tests.conftest import BACKENDS
from tests.conftest import test_settings as settings_for
from tests.factory import make_dataset, uid
from tests.integration.find_support import bulk_index

INSTANCES = 1200


@pytest.fixture(scope="module", params=BACKENDS)
def indexed(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """An index of 1,200 instances: 3 patients, 6 studies, 12 series (no files)."""
    folder: Path = tmp_path_factory.mktemp("query")
    url = f"sqlite:///{folder}/index.sqlite" if request.param == "sqlite" else \
        request.getfixturevalue("postgres_server").new_database()
    services = open_services(settings_for(folder / "archive", url))

    def datasets() -> Iterator[Any]:
        for number in range(INSTANCES):
            patient = number % 3
            yield make_dataset(patient_id=f"Q{patient}", patient_name=f"Quote'{patient}^%_",
                               study=f"S{number % 6}", series=f"E{number % 12}",
                               instance=number, modality=("CT", "MR")[number % 2])

    bulk_index(services, datasets())
    yield services
    services.close()


def key(keyword: str):  # noqa: ANN201 - a levels.Key
    from pydicom.datadict import tag_for_keyword

    found = find_key(STUDY_ROOT, tag_for_keyword(keyword))
    assert found is not None
    return found


# DESIGN rule 5: matches come from a cursor in batches, never a list of everything.
def test_rows_are_read_from_a_cursor_in_batches(indexed: Services,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[int] = []
    original = pacs.index.query._cursor

    @contextmanager
    def counting(sql: str, params: Any) -> Iterator[Any]:
        with original(sql, params) as cursor:
            class Counting:
                def fetchmany(self, size: int) -> list[Any]:
                    rows = cursor.fetchmany(size)
                    fetched.append(len(rows))
                    return rows
            yield Counting()

    monkeypatch.setattr(pacs.index.query, "_cursor", counting)
    rows = FindQuery("IMAGE", [], [key("SOPInstanceUID")]).rows()
    first = next(rows)
    assert first["SOPInstanceUID"]
    assert sum(fetched) <= pacs.index.query._BATCH < INSTANCES
    rows.close()


# PS3.4 C.4.1.1.4 (the cap): counting stops at the limit instead of counting everything.
def test_count_stops_at_the_limit(indexed: Services) -> None:
    assert FindQuery("IMAGE", []).count(11) == 11
    assert FindQuery("STUDY", []).count(100) == 6


# SQL metacharacters in values are bound parameters, never part of the statement text.
def test_values_are_bound_parameters(indexed: Services) -> None:
    predicates = constraints([QueryValue(key("PatientName"), ("Quote'1^%_",))],
                             MatchOptions(pn_case_insensitive=False))
    query = FindQuery("STUDY", predicates, [key("StudyInstanceUID")])
    sql, params = query.sql()
    assert "Quote" not in sql
    assert any("Quote'1^!%!_" in str(param) for param in params)
    assert query.count(100) == 2


# PS3.4 C.2.2.2.4: LIKE runs with an explicit escape, the same on both backends.
def test_like_with_escape_is_literal(indexed: Services) -> None:
    percent = Like(Col("PATIENT", "patient_name"), "%^!%!_")
    assert FindQuery("PATIENT", [percent]).count(10) == 3
    none = Like(Col("PATIENT", "patient_name"), "%^!%")
    assert FindQuery("PATIENT", [none]).count(10) == 0


# PS3.4 C.3.4: computed keys from correlated subqueries are right for every row.
def test_computed_keys_are_exact(indexed: Services) -> None:
    keys = [key(name) for name in ("StudyInstanceUID", "NumberOfStudyRelatedSeries",
                                   "NumberOfStudyRelatedInstances", "ModalitiesInStudy",
                                   "NumberOfPatientRelatedInstances")]
    rows = list(FindQuery("STUDY", [], keys).rows())
    assert len(rows) == 6
    for row in rows:
        assert row["NumberOfStudyRelatedSeries"] == "2"
        assert row["NumberOfStudyRelatedInstances"] == str(INSTANCES // 6)
        assert row["NumberOfPatientRelatedInstances"] == str(INSTANCES // 3)
    # number % 6 fixes number % 2: a study holds one modality.
    assert sorted(row["ModalitiesInStudy"] for row in rows) == ["CT"] * 3 + ["MR"] * 3
    assert set(DERIVED) >= {k.keyword for k in keys if k.computed}


# PS3.4 C.2.2.1.2: a Compare on '' finds the entities whose value is unknown.
def test_compare_empty_finds_unknown(indexed: Services) -> None:
    assert FindQuery("STUDY", [Compare(Col("STUDY", "study_description"), "=", "")]
                     ).count(10) == 0
    assert FindQuery("SERIES", [Compare(Col("SERIES", "body_part_examined"), "=", "")]
                     ).count(100) == 12


def _studies_with(*keys: tuple[str, str]) -> list[str]:
    """Study IDs of the studies whose descendants match (keyword, value) keys below STUDY."""
    values = [QueryValue(key(keyword), (value,)) for keyword, value in keys]
    below = descendant_match("STUDY", ("SERIES", "IMAGE"), values, MatchOptions())
    assert below is not None
    return sorted(row["StudyID"] for row in FindQuery("STUDY", [below], [key("StudyID")]).rows())


# Issue #11 (keys below the level, no strict hierarchy): a study matches when one of its
# series matches; keys of two levels below nest, series first, then one of its instances.
def test_descendant_match_selects_studies_by_their_series_and_instances(
        indexed: Services) -> None:
    instance_7 = uid("Q1", "S1", "E7", 7)  # number 7: patient Q1, study S1, series E7, MR
    assert _studies_with(("Modality", "MR")) == ["S1", "S3", "S5"]
    assert _studies_with(("SeriesInstanceUID", uid("Q1", "S1", "E7"))) == ["S1"]
    assert _studies_with(("SOPInstanceUID", instance_7)) == ["S1"]
    assert _studies_with(("Modality", "MR"), ("SOPInstanceUID", instance_7)) == ["S1"]
    assert _studies_with(("Modality", "CT"), ("SOPInstanceUID", instance_7)) == []
    assert _studies_with(("Modality", "C*"), ("InstanceNumber", "7")) == []
    assert _studies_with(("Modality", "M?"), ("InstanceNumber", "7")) == ["S1"]


# PS3.4 C.4.1.1.4: a request with no key to read (QueryRetrieveLevel alone, or only keys below
# it) still yields one row per entity, not an error.
def test_query_without_keys_yields_one_row_per_entity(indexed: Services) -> None:
    assert len(list(FindQuery("PATIENT", [], []).rows())) == 3
    assert FindQuery("PATIENT", [], []).count(10) == 3


def _patients(query: FindQuery) -> list[str]:
    return sorted(row["PatientID"] for row in query.rows())


# Issue #12: the SQL text of a query shape is built once; every request of that shape binds
# its own values (PS3.4 C.2.2.2.1 single value matching, C.2.2.2.2 list of UIDs).
def test_one_statement_per_shape_with_each_request_s_values(indexed: Services) -> None:
    def by_id(*values: str) -> FindQuery:
        column = Col("PATIENT", "patient_id")
        return FindQuery("PATIENT", [Compare(column, "=", values[0]) if len(values) == 1
                                     else In(column, values)], [key("PatientID")])

    assert by_id("Q0").sql()[0] == by_id("Q1").sql()[0]
    assert by_id("Q0").sql()[1] != by_id("Q1").sql()[1]
    assert _patients(by_id("Q0")) == ["Q0"]
    assert _patients(by_id("Q1")) == ["Q1"]
    assert _patients(by_id("Q0", "Q2")) == ["Q0", "Q2"]
    assert _patients(by_id("Q0", "Q1", "Q2")) == ["Q0", "Q1", "Q2"]


# Issue #12: wildcards take their own values through a reused statement too (C.2.2.2.4),
# on both backends (PostgreSQL's any-value regular expression is compiled per request).
def test_wildcard_shapes_match_each_request_s_pattern(indexed: Services) -> None:
    options = MatchOptions(pn_case_insensitive=False)

    def by_name(pattern: str) -> FindQuery:
        return FindQuery("PATIENT", constraints([QueryValue(key("PatientName"), (pattern,))],
                                                options), [key("PatientID")])

    assert _patients(by_name("Quote'1*")) == ["Q1"]
    assert _patients(by_name("Quote'2*")) == ["Q2"]
    assert _patients(by_name("Quote'?^%_")) == ["Q0", "Q1", "Q2"]
    assert _patients(by_name("Nobody*")) == []
