"""The neutral constraint language of a query: predicates over index columns (PS3.4 C.2.2.2).

Room: model/. Imports model/levels and pydicom. The matching rules (model/matching.py) write
requests in this language; index/query.py compiles it to SQL that runs the same on SQLite and
PostgreSQL. What SQL cannot say portably (sequence items, fuzzy names) is a `PostFilter`: a
pure test of the row's text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from pacs.model.levels import Key


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
    # Query/Retrieve: an unknown (zero-length) value matches any key (PS3.4 C.2.2.1.2); a
    # worklist sets False: it fails to match any non-empty matching key (K.2.2.1.1.1).
    unknown_matches: bool = True


def any_of(items: Sequence[Pred]) -> Pred:
    return items[0] if len(items) == 1 else AnyOf(tuple(items))


def between(term: Term, low: str | None, high: str | None) -> Pred | None:
    bounds = [Compare(term, ">=", low)] if low is not None else []
    bounds += [Compare(term, "<=", high)] if high is not None else []
    return (bounds[0] if len(bounds) == 1 else All(tuple(bounds))) if bounds else None


def key_column(key: Key) -> Col:
    return Col(key.table, key.column or "")
