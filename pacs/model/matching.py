"""Attribute matching of PS3.4 C.2.2.2: one function per matching type, request values in,
neutral predicates (model/predicates.py) out.

Room: model/. Imports model/ only (dictionary, levels, predicates, value_matching) and pydicom;
no database. Unknown values match as Query/Retrieve's C.2.2.1.2 says, unless the options say
a worklist's K.2.2.1.1.1 applies (`MatchOptions.unknown_matches`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from pydicom.dataset import Dataset

from pacs.model.dictionary import STORED_ATTRIBUTES, STUDY
from pacs.model.levels import DATE_TIME_PAIRS, DERIVED, UNIQUE, Key
from pacs.model.predicates import (
    All,
    AnyOf,
    AnyValueLike,
    Col,
    Compare,
    CountIs,
    Exists,
    Framed,
    In,
    Joined,
    Like,
    MatchOptions,
    Not,
    PostFilter,
    Pred,
    QueryValue,
    Zoned,
    any_of,
    between,
    key_column,
)
from pacs.model.value_matching import (
    NORMAL_DT,
    WILDCARD_VRS,
    bounds,
    element_texts,
    fuzzy_name_matches,
    is_universal_wildcard,
    like_literal,
    like_pattern,
    normal_form,
    offset_delta,
    parse_range,
    sequence_matches,
    shift_normal,
)
from pacs.model.values import fold_name

TIMEZONE_COLUMN = "timezone_offset_from_utc"
RANGE_VRS = frozenset({"DA", "TM", "DT"})

# The matching types of PS3.4 C.2.2.2, named as the standard names them.
SINGLE_VALUE = "Single Value"
LIST_OF_UID = "List of UID"
UNIVERSAL = "Universal"
WILDCARD = "Wild Card"
RANGE = "Range"
SEQUENCE = "Sequence"
MULTIPLE_VALUES = "Multiple Values"


def universal_match(value: QueryValue) -> None:
    """C.2.2.2.3: a zero-length value matches every entity; the attribute is returned."""
    return None


def single_value_match(key: Key, value: str, options: MatchOptions) -> Pred:
    """C.2.2.2.1: the exact value, case-sensitive; PN as a whole or as any component group."""
    if key.vr == "PN":
        folded = key.folded_column if options.pn_case_insensitive else None
        text = fold_name(value) if folded else value
        framed = Framed(Col(key.table, folded or key.column or ""), "\\",
                        None if "=" in text else "=")
        return Like(framed, "%\\" + like_literal(text) + "\\%")
    if key.vr in ("TM", "DT"):  # C.2.2.2.1.3: by meaning, "2230" matches "223000"
        return Compare(Col(key.table, key.normalized_column or ""), "=",
                       normal_form(key.vr, value, options.timezone))
    if key.multi:
        return Like(Framed(key_column(key)), "%\\" + like_literal(value) + "\\%")
    return Compare(key_column(key), "=", normal_form("DA", value) if key.vr == "DA" else value)


def list_of_uid_match(key: Key, values: Sequence[str]) -> Pred:
    """C.2.2.2.2: backslash-separated UIDs, each of which may generate a match."""
    if key.multi:
        return any_of([Like(Framed(key_column(key)), "%\\" + like_literal(v) + "\\%")
                       for v in values])
    return In(key_column(key), tuple(values)) if len(values) > 1 else \
        Compare(key_column(key), "=", values[0])


def wildcard_match(key: Key, value: str, options: MatchOptions) -> Pred | None:
    """C.2.2.2.4: `*` any run of characters (none too), `?` one; nothing else is special."""
    if is_universal_wildcard(value):
        return None  # note 1: equivalent to Universal Matching, empty values included
    folded = key.folded_column if key.vr == "PN" and options.pn_case_insensitive else None
    target = Col(key.table, folded or key.column or "")
    text = fold_name(value) if folded else value
    return AnyValueLike(target, text) if key.multi else \
        Like(target, like_pattern(text))


def range_match(key: Key, value: str, options: MatchOptions) -> Pred | None:
    """C.2.2.2.5: `a-b`, `a-`, `-b`, inclusive; TM and DT by meaning, DT offsets honoured."""
    low, high = parse_range(key.vr, value, options.timezone)
    column = key.normalized_column or key.column or ""
    return between(Col(key.table, column), low, high)


def value_match(key: Key, value: str, options: MatchOptions) -> Pred | None:
    """The matching type the VR and the value select, for one value."""
    if value == "":
        return None
    if key.vr in WILDCARD_VRS and ("*" in value or "?" in value):
        return wildcard_match(key, value, options)
    if key.vr in RANGE_VRS and "-" in value:
        return range_match(key, value, options)
    return single_value_match(key, value, options)


def multiple_values_match(key: Key, values: Sequence[str], options: MatchOptions) -> Pred | None:
    """C.2.2.3, multi-valued keys: an entity matches when any requested value matches."""
    predicates = [value_match(key, value, options) for value in values]
    if any(predicate is None for predicate in predicates):
        return None
    return any_of([p for p in predicates if p is not None])


def unknown_value_matches(key: Key, predicate: Pred) -> Pred:
    """C.2.2.1.2: an entity whose value is zero length matches any value of the key.

    Optional keys supported for matching are processed as Required Keys (C.2.2.1.3), so
    the rule holds for every key but Unique Keys, which are never empty.
    """
    if key.kind == UNIQUE:
        return predicate
    if key.computed:
        derivation = DERIVED[key.keyword]
        if derivation.column is None:
            return predicate  # a count is never unknown
        known = Compare(Col(derivation.child, derivation.column), "!=", "")
        return AnyOf((Not(Exists(derivation.child, derivation.parent, known)), predicate))
    return AnyOf((Compare(key_column(key), "=", ""), predicate))


def known_value_matches(key: Key, predicate: Pred) -> Pred:
    """K.2.2.1.1.1 (worklists): an entity whose value is zero length fails to match any
    matching key, so only known values are tested (a range's open end included)."""
    return All((Compare(key_column(key), "!=", ""), predicate))


def sequence_match(key: Key, item: Dataset | None, options: MatchOptions) -> Pred | None:
    """C.2.2.2.6: one request item; an entity matches when one of its items matches it all.
    A stored sequence without items is unknown and matches (C.2.2.1.2)."""
    if item is None or len(item) == 0:
        return None  # zero-length sequence or empty item: Universal Matching
    prefilters: list[Pred] = []
    for element in item:  # exact text values narrow the rows in SQL first
        values = element_texts(element.value) if element.VR != "SQ" else ()
        if element.VR in ("AE", "CS", "LO", "SH", "UI") and len(values) == 1 \
                and not set(values[0]) & {"*", "?"}:
            text = like_literal(json.dumps(values[0]))
            prefilters.append(Like(key_column(key), "%" + text + "%"))
    prefilter = AnyOf((Compare(key_column(key), "=", ""), All(tuple(prefilters)))) \
        if prefilters else None
    case_insensitive = options.pn_case_insensitive
    return PostFilter(key_column(key), lambda text: sequence_matches(item, text, case_insensitive),
                      prefilter)


def fuzzy_name_match(key: Key, values: Sequence[str]) -> Pred:
    """Fuzzy semantic matching of person names, when negotiated (C.2.2.2.1.1)."""
    return PostFilter(key_column(key), lambda stored: any(
        fuzzy_name_matches(stored, value, key.multi) for value in values))


def computed_match(key: Key, values: Sequence[str], options: MatchOptions) -> Pred | None:
    """A key the index computes: any collected child value matches, or a count equals."""
    derivation = DERIVED[key.keyword]
    if derivation.column is None:
        return CountIs(derivation.child, derivation.parent, int(values[0]))
    child = Key(key.keyword, key.tag, key.vr, False, key.level, key.kind,
                derivation.child, derivation.column)
    where = list_of_uid_match(child, values) if key.vr == "UI" else \
        multiple_values_match(child, values, options)
    return Exists(derivation.child, derivation.parent, where) if where is not None else None


def _period(date: Col, time: Col, time_normal: Col, low: str | None,
            high: str | None) -> Pred | None:
    """A date and time within [low, high]; a row without a time by its date alone."""
    with_time = between(Joined(date, time_normal), low, high)
    date_only = between(date, low[:8] if low else None, high[:8] if high else None)
    if with_time is None or date_only is None:
        return None
    return AnyOf((All((Compare(time, "!=", ""), with_time)),
                  All((Compare(time, "=", ""), date_only))))


def _pair_columns(date: Key, time_keyword: str) -> tuple[Col, Col, Col]:
    column = STORED_ATTRIBUTES[time_keyword].column
    return Col(date.table, date.column or ""), Col(date.table, column), \
        Col(date.table, f"{column}_norm")


def combined_datetime_match(date: QueryValue, time: QueryValue) -> Pred | None:
    """C.2.2.2.5.4: a date range and a time range of the same form, as one DT range."""
    date_low, date_high = parse_range("DA", date.values[0])
    time_low, time_high = parse_range("TM", time.values[0])
    low = date_low + time_low if date_low and time_low else None
    high = date_high + time_high if date_high and time_high else None
    predicate = _period(*_pair_columns(date.key, time.key.keyword), low, high)
    return unknown_value_matches(date.key, predicate) if predicate is not None else None


def _shifted_time(time: Col, low: str | None, high: str | None, request_offset: str,
                  stored_offset: str) -> Pred | None:
    """A time-of-day range of the request's zone in the entity's zone, wrapping midnight."""
    delta = offset_delta(request_offset, stored_offset)

    def move(value: str | None, default: str) -> datetime:
        return datetime.strptime("20000102" + (value or default), NORMAL_DT) + delta

    start, end = move(low, "000000.000000"), move(high, "235959.999999")
    first, last = start.strftime("%H%M%S.%f"), end.strftime("%H%M%S.%f")
    if start.date() == end.date():
        return between(time, first, last)
    return AnyOf((Compare(time, ">=", first), Compare(time, "<=", last)))


def zoned_pair_match(date: QueryValue | None, time: QueryValue | None, date_key: Key,
                     time_keyword: str, request_offset: str) -> Pred | None:
    """C.2.2.2.1.3, timezone query adjustment: the request's local date and time, moved to
    each entity's own offset. A date and a time given together are one period, from the
    first date at the first time to the last date at the last time."""
    date_col, time_col, time_normal = _pair_columns(date_key, time_keyword)
    tz = Col(STUDY, TIMEZONE_COLUMN)
    if date is None:
        assert time is not None
        low, high = bounds("TM", time.values[0])
        zoned = Zoned(tz, lambda stored: _shifted_time(time_normal, low, high, request_offset,
                                                        stored) or All(()))
        return AnyOf((Compare(time_col, "=", ""), zoned))
    date_low, date_high = bounds("DA", date.values[0])
    time_low, time_high = bounds("TM", time.values[0]) if time else (None, None)
    low = date_low + (time_low or "000000.000000") if date_low else None
    high = date_high + (time_high or "235959.999999") if date_high else None
    zoned = Zoned(tz, lambda stored: _period(
        date_col, time_col, time_normal, shift_normal(low, request_offset, stored),
        shift_normal(high, request_offset, stored)) or All(()))
    return AnyOf((Compare(date_col, "=", ""), zoned))


def _same_range_form(date: str, time: str) -> bool:
    return "-" in date and "-" in time and date.startswith("-") == time.startswith("-") \
        and date.endswith("-") == time.endswith("-")


def key_match(value: QueryValue, options: MatchOptions) -> Pred | None:
    """The predicate of one key of the request, or None when it matches every entity."""
    key = value.key
    if not key.matchable:
        return None
    if key.vr == "SQ":
        return sequence_match(key, value.item, options)
    if not value.values:
        return universal_match(value)
    if key.vr == "PN" and options.fuzzy_names and not key.computed:
        return fuzzy_name_match(key, value.values)  # unknown names match inside the test
    if key.computed:
        predicate = computed_match(key, value.values, options)
    elif key.vr == "UI":
        predicate = list_of_uid_match(key, value.values)
    else:
        predicate = multiple_values_match(key, value.values, options)
    if predicate is None:
        return None
    if not options.unknown_matches:
        return known_value_matches(key, predicate)
    return unknown_value_matches(key, predicate)


def matching_types(key: Key) -> tuple[str, ...]:
    """The matching types `key_match` applies to `key`, as PS3.4 C.2.2.2 names them;
    empty for a key that is returned but never matched."""
    if not key.matchable:
        return ()
    if key.vr == "SQ":
        return (SEQUENCE, UNIVERSAL)
    types = [SINGLE_VALUE]
    if key.vr == "UI":
        types.append(LIST_OF_UID)
    if key.vr in WILDCARD_VRS:
        types.append(WILDCARD)
    if key.vr in RANGE_VRS:
        types.append(RANGE)
    if key.multi and key.vr != "UI":
        types.append(MULTIPLE_VALUES)  # as multiple_values_match: any requested value
    types.append(UNIVERSAL)
    return tuple(types)


def constraints(values: Sequence[QueryValue], options: MatchOptions) -> list[Pred]:
    """The predicates of a request; an entity matches when all of them hold."""
    by_keyword = {value.key.keyword: value for value in values}
    predicates: list[Pred] = []
    paired: set[str] = set()
    for date_keyword, time_keyword in DATE_TIME_PAIRS:
        date, time = by_keyword.get(date_keyword), by_keyword.get(time_keyword)
        date = date if date is not None and date.values else None
        time = time if time is not None and time.values else None
        if date is None and time is None:
            continue
        key = (date or time).key  # type: ignore[union-attr]
        date_key = by_keyword[date_keyword].key if date_keyword in by_keyword else \
            Key(date_keyword, 0, "DA", False, key.level, key.kind, key.table,
                STORED_ATTRIBUTES[date_keyword].column)
        if options.timezone and key.table != "PATIENT":
            predicate = zoned_pair_match(date, time, date_key, time_keyword, options.timezone)
        elif options.combined_datetime and date and time and \
                _same_range_form(date.values[0], time.values[0]):
            predicate = combined_datetime_match(date, time)
        else:
            continue
        paired |= {date_keyword, time_keyword}
        if predicate is not None:
            predicates.append(predicate)
    for value in values:
        if value.key.keyword not in paired:
            predicate = key_match(value, options)
            if predicate is not None:
                predicates.append(predicate)
    return predicates


def descendant_match(level: str, levels_below: Sequence[str], values: Sequence[QueryValue],
                     options: MatchOptions) -> Pred | None:
    """Keys of levels below the Query/Retrieve Level, answered without a strict hierarchy:
    an entity matches when one of its descendants matches every key of its level, under a
    parent that matches those of the level between ("Modality=MR" at STUDY: the studies
    with an MR series). Sequence and fuzzy-name keys need the row's own text
    (`PostFilter`) and are not matched here; the response says so with 0xFF01."""
    by_level = {below: [p for p in constraints([v for v in values if v.key.level == below],
                                               options) if not isinstance(p, PostFilter)]
                for below in levels_below}

    def nest(parent: str, levels: Sequence[str]) -> Pred | None:
        for position, child in enumerate(levels):
            if by_level[child]:
                deeper = nest(child, levels[position + 1:])
                where = by_level[child] + ([deeper] if deeper is not None else [])
                return Exists(child, parent, All(tuple(where)))
        return None

    return nest(level, levels_below)
