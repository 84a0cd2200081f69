"""matching.py: PS3.4 C.2.2.2 matching types as pure functions and predicates."""

from __future__ import annotations

import re
import time

import pytest
from pydicom.dataset import Dataset

from pacs.model.levels import STUDY_ROOT, find_key
from pacs.model.matching import constraints, key_match
from pacs.model.predicates import (
    All,
    AnyOf,
    AnyValueLike,
    Col,
    Compare,
    Framed,
    In,
    Like,
    MatchOptions,
    PostFilter,
    QueryValue,
)
from pacs.model.value_matching import (
    any_value_matches,
    fuzzy_name_matches,
    like_pattern,
    multi_value_regex,
    normal_form,
    parse_range,
    sequence_matches,
    value_matches,
    wildcard_matches,
)


def key(keyword: str):  # noqa: ANN201 - a levels.Key
    from pydicom.datadict import tag_for_keyword

    found = find_key(STUDY_ROOT, tag_for_keyword(keyword))
    assert found is not None
    return found


def value(keyword: str, *values: str) -> QueryValue:
    return QueryValue(key(keyword), values)


# PS3.4 C.2.2.2.4: only * and ? are wildcards; LIKE's own characters are escaped.
def test_like_pattern_escapes_sql_wildcards() -> None:
    assert like_pattern("100%_!*?") == "100!%!_!!%_"


# PS3.4 C.2.2.3 + C.2.2.2.4: a wildcard matches within one value of a multi-valued text.
@pytest.mark.parametrize("check", [
    lambda pattern, stored: any_value_matches(pattern, stored),
    lambda pattern, stored: bool(re.search(multi_value_regex(pattern), stored)),
], ids=["sqlite-function", "postgresql-regex"])
def test_multi_value_wildcard_stays_within_one_value(check) -> None:  # noqa: ANN001
    stored = "ORIGINAL\\PRIMARY\\AXIAL"
    assert check("AXIAL", stored)
    assert check("*ARY", stored)
    assert not check("ORIG*MARY", stored)
    assert not check("AX", stored)
    assert check("a.b", "x\\a.b")
    assert not check("a.b", "axb")
    assert check("P?IMARY", stored)


# PS3.4 C.2.2.2.4: wildcard matching takes polynomial time whatever the request holds.
def test_wildcard_matching_has_no_backtracking_blow_up() -> None:
    started = time.perf_counter()
    assert not wildcard_matches("*a" * 30 + "*b", "a" * 64)
    assert wildcard_matches("*a*a*a*?", "xaxaxaxy")
    assert wildcard_matches("*", "")
    assert not wildcard_matches("?", "")
    assert time.perf_counter() - started < 0.5


# PS3.4 C.2.2.2.1.3: TM and DT single values compare by meaning.
def test_normal_forms_by_meaning() -> None:
    assert normal_form("TM", "2230") == normal_form("TM", "223000.000")
    assert normal_form("DT", "19980128103000", "-0300") == normal_form("DT", "19980128133000")
    with pytest.raises(ValueError):
        normal_form("DA", "2024-01-02")


# PS3.4 C.2.2.2.5: upper bounds cover their precision; lower bounds start it.
def test_range_bounds() -> None:
    assert parse_range("TM", "10-1015") == ("100000.000000", "101559.999999")
    assert parse_range("DA", "-20240229") == (None, "20240229")
    assert parse_range("DT", "202402-") == ("20240201000000.000000", None)
    assert parse_range("DT", "-202402") == (None, "20240229235959.999999")


# PS3.4 C.2.2.2.5.3 d: offsets in DT range values are honoured.
def test_datetime_range_with_offsets() -> None:
    low, high = parse_range("DT", "20240102110000+0100-20240102120000-0100")
    assert (low, high) == ("20240102100000.000000", "20240102130000.999999")


# PS3.4 C.2.2.2.5: a malformed range is an error, not a silent match.
def test_malformed_range_raises() -> None:
    with pytest.raises(ValueError):
        parse_range("DA", "2024-01-2024")
    with pytest.raises(ValueError):
        parse_range("TM", "25-26")


# PS3.4 C.2.2.2.5.1: a range has a value on at least one side; "-" alone is not a range.
@pytest.mark.parametrize("vr", ["DA", "TM", "DT"])
def test_lone_dash_is_not_a_range(vr: str) -> None:
    with pytest.raises(ValueError, match="not a range"):
        parse_range(vr, "-")


# PS3.4 C.2.2.2.1: PN single value by whole name or by any component group.
def test_value_matches_person_name_groups() -> None:
    stored = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert value_matches("PN", stored, "山田^太郎", True)
    assert value_matches("PN", stored, "yamada^tarou", True)
    assert not value_matches("PN", stored, "yamada^tarou", False)
    assert not value_matches("PN", stored, "Yamada", True)


# PS3.4 C.2.2.2.1.1: the fuzzy mechanism: accents, case, punctuation and order ignored.
def test_fuzzy_name_matching() -> None:
    assert fuzzy_name_matches("Müller^Jürgen", "jurgen muller")
    assert fuzzy_name_matches("Smíth^Mary^^Dr", "SMITH^MARY")
    assert fuzzy_name_matches("O'Brien^Pat", "obrien*")
    assert fuzzy_name_matches("Smith-Jones^Ann", "ann jones")
    assert fuzzy_name_matches("", "anyone")  # unknown matches (C.2.2.1.2)
    assert not fuzzy_name_matches("Doe^John", "Doe^Jane")


# PS3.4 C.2.2.2.3: zero length and a bare "*" are universal: no predicate.
def test_universal_values_give_no_predicate() -> None:
    assert key_match(value("PatientName"), MatchOptions()) is None
    assert key_match(value("PatientName", "*"), MatchOptions()) is None
    assert key_match(value("StudyDescription", "**"), MatchOptions()) is None


# PS3.4 C.2.2.2.1.1: PN matching uses the case-folded column only when configured.
def test_pn_uses_folded_column_when_case_insensitive() -> None:
    predicate = key_match(value("PatientName", "Doe^John"), MatchOptions())
    assert isinstance(predicate, AnyOf)  # zero-length name, or the name
    like = predicate.items[1]
    assert isinstance(like, Like) and isinstance(like.term, Framed)
    assert like.term.col == Col("PATIENT", "patient_name_folded")
    assert like.pattern == "%\\doe^john\\%"
    strict = key_match(value("PatientName", "Doe^John"), MatchOptions(pn_case_insensitive=False))
    assert isinstance(strict, AnyOf)
    assert strict.items[1].term.col == Col("PATIENT", "patient_name")  # type: ignore[union-attr]


# PS3.4 C.2.2.2.2: a list of UIDs is one IN; a Unique Key is never "unknown".
def test_list_of_uids_is_in() -> None:
    predicate = key_match(value("StudyInstanceUID", "1.2", "1.3"), MatchOptions())
    assert predicate == In(Col("STUDY", "study_instance_uid"), ("1.2", "1.3"))


# PS3.4 C.2.2.3: a wildcard on a multi-valued attribute matches value by value.
def test_wildcard_on_multi_valued_is_regex() -> None:
    predicate = key_match(value("NameOfPhysiciansReadingStudy", "Reader*"), MatchOptions())
    assert isinstance(predicate, AnyOf) and isinstance(predicate.items[1], AnyValueLike)


# PS3.4 C.2.2.1.2: an empty stored value matches any value of a Required Key.
def test_unknown_value_matches_required_key() -> None:
    predicate = key_match(value("AccessionNumber", "A1"), MatchOptions())
    assert predicate == AnyOf((Compare(Col("STUDY", "accession_number"), "=", ""),
                               Compare(Col("STUDY", "accession_number"), "=", "A1")))


# PS3.4 C.2.2.2.5.4: combined date-time matching only when negotiated and same form.
def test_combined_only_when_negotiated_and_same_form() -> None:
    pair = [value("StudyDate", "20240101-20240102"), value("StudyTime", "2300-0100")]
    assert len(constraints(pair, MatchOptions())) == 2
    combined = constraints(pair, MatchOptions(combined_datetime=True))
    assert len(combined) == 1
    mixed = [value("StudyDate", "20240101-20240102"), value("StudyTime", "-0100")]
    assert len(constraints(mixed, MatchOptions(combined_datetime=True))) == 2


# PS3.4 C.2.2.2.6: a sequence key is a post-filter with an SQL pre-filter on exact values.
def test_sequence_match_is_post_filter() -> None:
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    predicate = key_match(QueryValue(key("ReferencedStudySequence"), (), item), MatchOptions())
    assert isinstance(predicate, PostFilter)
    assert isinstance(predicate.prefilter, AnyOf)
    assert isinstance(predicate.prefilter.items[1], All)
    assert predicate.test("")  # no stored items: unknown, matches
    stored = '[{"00081155": {"vr": "UI", "Value": ["1.2.3"]}}]'
    assert sequence_matches(item, stored, True)
    assert not sequence_matches(item, stored.replace("1.2.3", "1.2.4"), True)


# PS3.4 C.2.2.2.1.3: a time of the request's zone, moved to an entity's zone.
def test_timezone_adjustment_moves_a_time_range() -> None:
    (predicate,) = constraints([value("StudyTime", "-0200")], MatchOptions(timezone="-0200"))
    assert isinstance(predicate, AnyOf)
    zoned = predicate.items[1]
    column = Col("STUDY", "study_time_norm")
    assert zoned.for_offset("+0000") == All((  # type: ignore[union-attr]
        Compare(column, ">=", "020000.000000"), Compare(column, "<=", "040059.999999")))
    assert zoned.for_offset("-0500") == All((  # type: ignore[union-attr]
        Compare(column, ">=", "210000.000000"), Compare(column, "<=", "230059.999999")))
    assert zoned.for_offset("-0300") == AnyOf((  # wraps midnight  # type: ignore[union-attr]
        Compare(column, ">=", "230000.000000"), Compare(column, "<=", "010059.999999")))
    assert zoned.for_offset("")  == All((  # type: ignore[union-attr]
        Compare(column, ">=", "000000.000000"), Compare(column, "<=", "020059.999999")))
