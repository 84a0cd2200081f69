"""Attribute matching of PS3.4 C.2.2.2 as data: one function per matching type.

Layer: pure query translation over levels.py and values.py; no database imports. A request
value becomes a predicate over index columns (the small expression language below), which
query.py compiles to SQL that runs the same on SQLite and PostgreSQL. What SQL cannot say
portably (sequence items, fuzzy names) is a `PostFilter`: a pure test of the row's text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from calendar import monthrange
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydicom.dataset import Dataset

from pacs.dictionary import STORED_ATTRIBUTES, STUDY
from pacs.levels import DATE_TIME_PAIRS, DERIVED, UNIQUE, Key
from pacs.values import fold_name, normalize_datetime, normalize_time

LIKE_ESCAPE = "!"
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
TIMEZONE_COLUMN = "timezone_offset_from_utc"
_DATE = re.compile(r"^\d{8}$")
_DT = r"\d{4}(?:\d{2}){0,5}(?:\.\d{1,6})?(?:[+-]\d{4})?"
_DT_RANGE = re.compile(rf"^({_DT})?-({_DT})?$")
_OFFSET = re.compile(r"^[+-](?:0\d|1[0-4])[0-5]\d$")
_NORMAL_DT = "%Y%m%d%H%M%S.%f"


# --- the expression language -------------------------------------------------------------

@dataclass(frozen=True)
class Col:
    """A column of one index level's table."""

    table: str
    name: str


@dataclass(frozen=True)
class Framed:
    """`d || replace(col, also, d) || d`: each value (and PN group) between delimiters."""

    col: Col
    delimiter: str = "\\"
    also: str | None = None


@dataclass(frozen=True)
class Joined:
    """`left || right`: a date and a normalized time read as one date-time."""

    left: Col
    right: Col


Term = Col | Framed | Joined


@dataclass(frozen=True)
class Compare:
    """`term <op> value`, op one of =, !=, <=, >=."""

    term: Term
    op: str
    value: str


@dataclass(frozen=True)
class In:
    """`term IN (values)`."""

    term: Term
    values: tuple[str, ...]


@dataclass(frozen=True)
class Like:
    """`term LIKE pattern ESCAPE '!'`."""

    term: Term
    pattern: str


@dataclass(frozen=True)
class AnyValueLike:
    """One of the backslash-separated values of `term` matches the DICOM wildcard `pattern`
    (PostgreSQL: a regular expression; SQLite: a linear-time function, see query.py)."""

    term: Term
    pattern: str


@dataclass(frozen=True)
class All:
    """Every item holds."""

    items: tuple[Pred, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one item holds."""

    items: tuple[Pred, ...]


@dataclass(frozen=True)
class Not:
    """The item does not hold."""

    item: Pred


@dataclass(frozen=True)
class Exists:
    """Some row of level `child` under the current row of level `parent` satisfies `where`."""

    child: str
    parent: str
    where: Pred


@dataclass(frozen=True)
class CountIs:
    """The number of `child` rows under the current `parent` row is `value`."""

    child: str
    parent: str
    value: int


@dataclass(frozen=True)
class PostFilter:
    """A pure test of one column's text, on the rows the SQL `prefilter` lets through."""

    col: Col
    test: Callable[[str], bool]
    prefilter: Pred | None = None


@dataclass(frozen=True)
class Zoned:
    """A predicate that depends on each row's stored Timezone Offset From UTC (`tz`)."""

    tz: Col
    for_offset: Callable[[str], Pred]


Pred = (Compare | In | Like | AnyValueLike | All | AnyOf | Not | Exists | CountIs | PostFilter
        | Zoned)


@dataclass(frozen=True)
class QueryValue:
    """One key of a request: its values (none: zero length) or, for a sequence, its item."""

    key: Key
    values: tuple[str, ...] = ()
    item: Dataset | None = None


@dataclass(frozen=True)
class MatchOptions:
    """What the configuration and the association's extended negotiation switch on."""

    pn_case_insensitive: bool = True
    fuzzy_names: bool = False
    combined_datetime: bool = False
    timezone: str = ""  # the request's offset, when timezone query adjustment applies


def _any(items: Sequence[Pred]) -> Pred:
    return items[0] if len(items) == 1 else AnyOf(tuple(items))


def _between(term: Term, low: str | None, high: str | None) -> Pred | None:
    bounds = [Compare(term, ">=", low)] if low is not None else []
    bounds += [Compare(term, "<=", high)] if high is not None else []
    return (bounds[0] if len(bounds) == 1 else All(tuple(bounds))) if bounds else None


def _col(key: Key) -> Col:
    return Col(key.table, key.column or "")


# --- values: wildcards, normal forms, ranges ---------------------------------------------

def like_literal(text: str) -> str:
    """`text` with LIKE's `%` and `_` (and the escape character) taken literally."""
    e = LIKE_ESCAPE
    return text.replace(e, e + e).replace("%", e + "%").replace("_", e + "_")


def like_pattern(value: str) -> str:
    """A DICOM wildcard value as a LIKE pattern: `*` -> `%`, `?` -> `_`, all else literal."""
    return "".join("%" if c == "*" else "_" if c == "?" else like_literal(c) for c in value)


def _regex_literal(char: str) -> str:
    # A backslash before ASCII punctuation is a literal in Python re and PostgreSQL AREs.
    return "\\" + char if char.isascii() and not char.isalnum() else char


def multi_value_regex(value: str) -> str:
    """A wildcard value as a regular expression matching any one of backslash-separated
    values (capture-free, so PostgreSQL can run it without backtracking)."""
    body = "".join("[^\\\\]*" if c == "*" else "[^\\\\]" if c == "?" else _regex_literal(c)
                   for c in value)
    return f"^(?:.*\\\\)?{body}(?:\\\\.*)?$"


def wildcard_matches(pattern: str, text: str) -> bool:
    """Whether `text` matches the DICOM wildcard `pattern` (`*`, `?`), in O(len * len)
    time at worst: no backtracking blow-up, whatever the request holds."""
    p = t = 0
    star, resume = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif p < len(pattern) and pattern[p] in ("?", text[t]):
            p += 1
            t += 1
        elif star >= 0:
            p, resume = star + 1, resume + 1
            t = resume
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def any_value_matches(pattern: str, stored: str | None) -> bool:
    """Whether one of the backslash-separated values of `stored` matches `pattern`."""
    return stored is not None and any(wildcard_matches(pattern, value)
                                      for value in stored.split("\\"))


def is_universal_wildcard(value: str) -> bool:
    """Whether a value is only `*`s: Universal Matching (PS3.4 C.2.2.2.4 note 1)."""
    return value != "" and set(value) == {"*"}


def _has_offset(value: str) -> bool:
    return len(value) > 5 and bool(_OFFSET.match(value[-5:]))


def normal_form(vr: str, value: str, timezone: str = "") -> str:
    """The comparable form of one DA, TM or DT value; ValueError when it is not one."""
    if vr == "DA":
        value = value.replace(".", "")
        if not _DATE.match(value):
            raise ValueError(f"{value!r} is not a date YYYYMMDD")
        return value
    if vr == "TM":
        normal = normalize_time(value)
    else:
        normal = normalize_datetime(value if _has_offset(value) or not timezone
                                    else value + timezone)
    if not normal:
        raise ValueError(f"{value!r} is not a valid {vr}")
    return normal


def _upper_time(value: str) -> str:
    normal_form("TM", value)  # validates
    digits, _, fraction = value.replace(":", "").partition(".")
    return (f"{digits[0:2]}{digits[2:4] or '59'}{digits[4:6] or '59'}."
            f"{fraction.ljust(6, '9')}")


def _upper_datetime(value: str) -> str:
    body, offset = (value[:-5], value[-5:]) if _has_offset(value) else (value, "")
    digits, _, fraction = body.partition(".")
    year, month = digits[0:4], digits[4:6] or "12"
    if not 1 <= int(month) <= 12:
        raise ValueError(f"{value!r} is not a valid DT")
    day = digits[6:8] or f"{monthrange(int(year), int(month))[1]:02d}"
    return (f"{year}{month}{day}{digits[8:10] or '23'}{digits[10:12] or '59'}"
            f"{digits[12:14] or '59'}.{fraction.ljust(6, '9')}{offset}")


def parse_range(vr: str, value: str, timezone: str = "") -> tuple[str | None, str | None]:
    """`a-b`, `a-` or `-b` as inclusive normal-form bounds; an upper bound given with less
    precision covers its whole unit ("-1800" includes 18:00:30). ValueError if malformed."""
    if vr == "DT":
        match = _DT_RANGE.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a DT range")
        low, high = match.groups()
    else:
        low, _, high = value.partition("-")
        if "-" in high:
            raise ValueError(f"{value!r} has more than one '-'")
    upper = {"DA": lambda v: v, "TM": _upper_time, "DT": _upper_datetime}[vr]
    if vr == "DT" and timezone:
        low = low if not low or _has_offset(low) else low + timezone
        high = high if not high or _has_offset(high) else high + timezone
    return (normal_form(vr, low) if low else None,
            normal_form(vr, upper(high)) if high else None)


def _bounds(vr: str, value: str) -> tuple[str | None, str | None]:
    if "-" in value:
        return parse_range(vr, value)
    normal = normal_form(vr, value)
    return normal, normal


def _minutes(offset: str) -> int:
    sign = -1 if offset[0] == "-" else 1
    return sign * (int(offset[1:3]) * 60 + int(offset[3:5]))


def _delta(request_offset: str, stored_offset: str) -> timedelta:
    """How far the request's local clock is from the entity's (zero when it has none)."""
    if not _OFFSET.match(stored_offset or ""):
        return timedelta(0)
    return timedelta(minutes=_minutes(stored_offset) - _minutes(request_offset))


def shift_normal(moment: str | None, request_offset: str, stored_offset: str) -> str | None:
    """A normal-form date-time of the request's zone, in the entity's zone."""
    if moment is None:
        return None
    shifted = datetime.strptime(moment, _NORMAL_DT) + _delta(request_offset, stored_offset)
    return shifted.strftime(_NORMAL_DT)


# --- matching in Python: sequence items, fuzzy names --------------------------------------

def element_texts(value: object) -> tuple[str, ...]:
    """The text of each value of an element's value (PN as its full string, IS as written)."""
    if value is None or value == "":
        return ()
    values = value if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" \
        else [value]
    texts = []
    for item in values:  # type: ignore[union-attr]
        if isinstance(item, bytes):
            item = item.decode("ascii", "replace")
        original = getattr(item, "original_string", None)  # IS and DS as written
        text = original if isinstance(original, str) and type(item).__name__ in ("IS", "DSfloat",
                                                                            "DSdecimal") else item
        texts.append(str(text).strip("\x00 "))
    return tuple(texts) if any(texts) else ()


def value_matches(vr: str, stored: str, query: str, case_insensitive: bool) -> bool:
    """One stored value against one request value, with the rules of the SQL predicates."""
    if vr == "PN" and case_insensitive:
        stored, query = fold_name(stored), fold_name(query)
    if vr in WILDCARD_VRS and ("*" in query or "?" in query):
        return wildcard_matches(query, stored)
    if vr in ("DA", "TM", "DT"):
        try:
            low, high = _bounds(vr, query)
            normal = normal_form(vr, stored)
        except ValueError:
            return False
        return (low is None or normal >= low) and (high is None or normal <= high)
    if vr == "PN" and "=" not in query:
        return query == stored or query in stored.split("=")
    return query == stored


def item_matches(query: Dataset, stored: Dataset, case_insensitive: bool) -> bool:
    """C.2.2.2.6: every key of the request item matches this stored item (unknown matches)."""
    for element in query:
        found = stored.get(element.tag)
        if element.VR == "SQ":
            if not element.value or len(element.value[0]) == 0 or found is None \
                    or not found.value:
                continue
            if not any(item_matches(element.value[0], item, case_insensitive)
                       for item in found.value):
                return False
            continue
        wanted = element_texts(element.value)
        have = element_texts(found.value) if found is not None else ()
        if wanted and have and not any(value_matches(element.VR, s, q, case_insensitive)
                                       for q in wanted for s in have):
            return False
    return True


def load_items(stored: str) -> list[Dataset]:
    """The items of a sequence stored as DICOM JSON (empty when absent or unreadable)."""
    try:
        return [Dataset.from_json(item) for item in json.loads(stored)] if stored else []
    except (ValueError, TypeError, KeyError):
        return []


def sequence_matches(item: Dataset, stored: str, case_insensitive: bool) -> bool:
    """Whether one stored item matches the request item; an empty sequence is unknown."""
    items = load_items(stored)
    return not items or any(item_matches(item, each, case_insensitive) for each in items)


def _name_parts(name: str) -> list[str]:
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    plain = re.sub(r"['.\u2019]", "", plain.casefold())  # O'Brien is OBrien, Dr. is Dr
    return [part for part in re.split(r"[\^=,\s\-]+", plain) if part]


def _assign(wanted: list[str], parts: list[str]) -> bool:
    """Whether each wanted part matches a different stored part (bipartite matching)."""
    owner: dict[int, int] = {}

    def place(index: int, seen: set[int]) -> bool:
        for slot, part in enumerate(parts):
            if slot not in seen and wildcard_matches(wanted[index], part):
                seen.add(slot)
                if slot not in owner or place(owner[slot], seen):
                    owner[slot] = index
                    return True
        return False

    return all(place(index, set()) for index in range(len(wanted)))


def fuzzy_name_matches(stored: str, query: str, multi: bool = False) -> bool:
    """Fuzzy semantic PN matching: case, accents, apostrophes and component order ignored;
    each part of the request (wildcards allowed) matches a different part of the name, in
    any component group. "smith^mary" matches "Smíth^Mary^^Dr" and "Mary^Smith"."""
    wanted = [part for part in _name_parts(query) if set(part) != {"*"}]
    values = stored.split("\\") if multi else [stored]
    return not stored or any(_assign(wanted, _name_parts(value)) for value in values)


# --- one function per matching type (PS3.4 C.2.2.2) --------------------------------------

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
        return Like(Framed(_col(key)), "%\\" + like_literal(value) + "\\%")
    return Compare(_col(key), "=", normal_form("DA", value) if key.vr == "DA" else value)


def list_of_uid_match(key: Key, values: Sequence[str]) -> Pred:
    """C.2.2.2.2: backslash-separated UIDs, each of which may generate a match."""
    if key.multi:
        return _any([Like(Framed(_col(key)), "%\\" + like_literal(v) + "\\%") for v in values])
    return In(_col(key), tuple(values)) if len(values) > 1 else \
        Compare(_col(key), "=", values[0])


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
    return _between(Col(key.table, column), low, high)


def value_match(key: Key, value: str, options: MatchOptions) -> Pred | None:
    """The matching type the VR and the value select, for one value."""
    if value == "":
        return None
    if key.vr in WILDCARD_VRS and ("*" in value or "?" in value):
        return wildcard_match(key, value, options)
    if key.vr in ("DA", "TM", "DT") and "-" in value:
        return range_match(key, value, options)
    return single_value_match(key, value, options)


def multiple_values_match(key: Key, values: Sequence[str], options: MatchOptions) -> Pred | None:
    """C.2.2.3, multi-valued keys: an entity matches when any requested value matches."""
    predicates = [value_match(key, value, options) for value in values]
    if any(predicate is None for predicate in predicates):
        return None
    return _any([p for p in predicates if p is not None])


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
    return AnyOf((Compare(_col(key), "=", ""), predicate))


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
            prefilters.append(Like(_col(key), "%" + like_literal(json.dumps(values[0])) + "%"))
    prefilter = AnyOf((Compare(_col(key), "=", ""), All(tuple(prefilters)))) \
        if prefilters else None
    case_insensitive = options.pn_case_insensitive
    return PostFilter(_col(key), lambda text: sequence_matches(item, text, case_insensitive),
                      prefilter)


def fuzzy_name_match(key: Key, values: Sequence[str]) -> Pred:
    """Fuzzy semantic matching of person names, when negotiated (C.2.2.2.1.1)."""
    return PostFilter(_col(key), lambda stored: any(
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
    with_time = _between(Joined(date, time_normal), low, high)
    date_only = _between(date, low[:8] if low else None, high[:8] if high else None)
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
    delta = _delta(request_offset, stored_offset)

    def move(value: str | None, default: str) -> datetime:
        return datetime.strptime("20000102" + (value or default), _NORMAL_DT) + delta

    start, end = move(low, "000000.000000"), move(high, "235959.999999")
    first, last = start.strftime("%H%M%S.%f"), end.strftime("%H%M%S.%f")
    if start.date() == end.date():
        return _between(time, first, last)
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
        low, high = _bounds("TM", time.values[0])
        zoned = Zoned(tz, lambda stored: _shifted_time(time_normal, low, high, request_offset,
                                                        stored) or All(()))
        return AnyOf((Compare(time_col, "=", ""), zoned))
    date_low, date_high = _bounds("DA", date.values[0])
    time_low, time_high = _bounds("TM", time.values[0]) if time else (None, None)
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
    return unknown_value_matches(key, predicate) if predicate is not None else None


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
