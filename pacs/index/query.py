"""C-FIND against the index: matching predicates to SQL, matches streamed from a cursor.

Room: index/. Imports peewee, index/schema and model/ (predicates, levels). Takes predicates
from model/matching.py and the keys to read; hands out plain dicts of text,
one per entity at the query level, read from a database cursor (a server-side cursor on
PostgreSQL), never a list of everything. Computed keys come from correlated subqueries of
the same statement, so they are always true to the index.
"""

from __future__ import annotations

import itertools
import json
import operator
import uuid
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import reduce
from typing import Any

import peewee

from pacs.index.find_sql import cached_statement
from pacs.index.records import IndexUnavailable
from pacs.index.schema import Instance, Patient, Series, Study, database_proxy, is_sqlite
from pacs.model.dictionary import IMAGE, PATIENT, SERIES, STUDY
from pacs.model.levels import DERIVED, Key
from pacs.model.matching import TIMEZONE_COLUMN
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
    Like,
    Not,
    PostFilter,
    Pred,
    Term,
    Zoned,
)
from pacs.model.value_matching import LIKE_ESCAPE, any_value_matches, multi_value_regex

MODELS: dict[str, Any] = {PATIENT: Patient, STUDY: Study, SERIES: Series, IMAGE: Instance}
_ORDER = (PATIENT, STUDY, SERIES, IMAGE)
_PARENT_FIELD = {STUDY: "patient", SERIES: "study", IMAGE: "series"}
_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
}
_TRUE = peewee.SQL("1 = 1")
SEPARATOR = "\x1e"  # joins collected values; never in a CS, a UI or DICOM JSON text
_BATCH = 500
_aliases = itertools.count()


@dataclass(frozen=True)
class Extra:
    """A column read with each match that is not a key: (name in the row, level, column)."""

    name: str
    table: str
    column: str


class _Compiler:
    """Turns predicates into peewee expressions for one statement."""

    def __init__(self, scope: dict[str, Any]):
        self.scope = scope
        self.offsets: list[str] | None = None

    def term(self, term: Term) -> Any:
        if isinstance(term, Col):
            return getattr(self.scope[term.table], term.name)
        if isinstance(term, Framed):
            inner = self.term(term.col)
            if term.also is not None:
                inner = peewee.fn.REPLACE(inner, term.also, term.delimiter)
            return peewee.Value(term.delimiter).concat(inner).concat(term.delimiter)
        return self.term(term.left).concat(self.term(term.right))

    def pred(self, pred: Pred) -> Any:
        if isinstance(pred, Compare):
            return _OPERATORS[pred.op](self.term(pred.term), pred.value)
        if isinstance(pred, In):
            return self.term(pred.term).in_(list(pred.values))
        if isinstance(pred, Like):
            return peewee.NodeList((self.term(pred.term), peewee.SQL("LIKE"),
                                    peewee.Value(pred.pattern),
                                    peewee.SQL(f"ESCAPE '{LIKE_ESCAPE}'")), parens=True)
        if isinstance(pred, AnyValueLike):
            if is_sqlite(database_proxy.obj):
                return peewee.fn.dicom_any_value_like(pred.pattern, self.term(pred.term))
            return peewee.Expression(self.term(pred.term), "~", multi_value_regex(pred.pattern))
        if isinstance(pred, All):
            return reduce(operator.and_, map(self.pred, pred.items)) if pred.items else _TRUE
        if isinstance(pred, AnyOf):
            return reduce(operator.or_, map(self.pred, pred.items))
        if isinstance(pred, Not):
            return ~self.pred(pred.item)
        if isinstance(pred, Exists):
            query, inner = self._below(pred.child, pred.parent, lambda a: [peewee.SQL("1")])
            return peewee.fn.EXISTS(query.where(_Compiler({**self.scope, **inner})
                                                .pred(pred.where)))
        if isinstance(pred, CountIs):
            return self.count(pred.child, pred.parent) == pred.value
        if isinstance(pred, Zoned):
            return self.zoned(pred)
        raise TypeError(f"{type(pred).__name__} cannot be compiled here")

    def zoned(self, pred: Zoned) -> Any:
        if self.offsets is None:
            column = getattr(Study, TIMEZONE_COLUMN)
            self.offsets = [row[0] for row in Study.select(column).distinct().tuples()]
        column = self.term(pred.tz)
        alternatives = [(column == offset) & self.pred(pred.for_offset(offset))
                        for offset in self.offsets]
        return reduce(operator.or_, alternatives) if alternatives else ~_TRUE

    def _below(self, child: str, parent: str,
               select: Callable[[dict[str, Any]], list[Any]]) -> tuple[Any, dict[str, Any]]:
        """A query over `child` rows (joined up to `parent`) under the outer `parent` row."""
        path = _ORDER[_ORDER.index(parent) + 1 : _ORDER.index(child) + 1]
        aliases = {level: MODELS[level].alias(f"{level.lower()}_{next(_aliases)}")
                   for level in path}
        query = aliases[child].select(*select(aliases))
        for lower, upper in zip(reversed(path), reversed(path[:-1]), strict=False):
            query = query.join(aliases[upper], on=(
                getattr(aliases[lower], _PARENT_FIELD[lower]) == aliases[upper].id))
        top = path[0]
        outer = getattr(aliases[top], _PARENT_FIELD[top]) == self.scope[parent].id
        return query.where(outer), aliases

    def count(self, child: str, parent: str) -> Any:
        # COUNT(*), not COUNT(id): PostgreSQL can then count from the parent-id index alone
        # (an index-only scan) instead of visiting every child row (3-4x at 1M instances).
        query, _ = self._below(child, parent, lambda a: [peewee.fn.COUNT(peewee.SQL("*"))])
        return query

    def collect(self, child: str, parent: str, column: str) -> Any:
        """The distinct non-empty values of a child column, joined by SEPARATOR."""
        query, aliases = self._below(
            child, parent, lambda a: [getattr(a[child], column).alias("v")])
        values = query.where(getattr(aliases[child], column) != "").distinct().alias(
            f"v_{next(_aliases)}")
        join = peewee.fn.GROUP_CONCAT if is_sqlite(database_proxy.obj) else peewee.fn.STRING_AGG
        return peewee.Select([values], [join(values.c.v, SEPARATOR)])


def _base(level: str, columns: Sequence[Any]) -> Any:
    model = MODELS[level]
    query = model.select(*columns)
    for lower in reversed(_ORDER[1 : _ORDER.index(level) + 1]):
        upper = _ORDER[_ORDER.index(lower) - 1]
        query = query.join(MODELS[upper], on=(
            getattr(MODELS[lower], _PARENT_FIELD[lower]) == MODELS[upper].id))
    return query


class FindQuery:
    """The entities of one level that satisfy every predicate, with the keys to read.

    Its SQL text comes from the statement of its shape (index/find_sql.py) when there is one;
    the peewee expressions are built only when a shape is compiled, or to count.
    """

    def __init__(self, level: str, predicates: Sequence[Pred], keys: Sequence[Key] = (),
                 extras: Sequence[Extra] = ()):
        self.level = level
        self.predicates = tuple(predicates)
        self.keys = tuple(keys)
        self.extras = tuple(extras)
        self.post = [p for p in self.predicates if isinstance(p, PostFilter)]
        self.post_names = [f"__post{number}" for number in range(len(self.post))]
        names: list[str] = []
        read = [key.keyword for key in self.keys  # a key with neither is always empty
                if key.column is not None or key.computed]
        for name in read + [extra.name for extra in self.extras]:
            if name not in names:
                names.append(name)
        if not names:  # no key to read (only keys below): SELECT still needs a column
            names.append("__entity")
        self.names = names + [name for name in self.post_names if name not in names]
        self.collected = {key.keyword: key.vr for key in self.keys
                          if key.computed and DERIVED[key.keyword].column}

    def _compile(self, predicates: Sequence[Pred]) -> tuple[Any, list[Any]]:
        """The peewee WHERE expression (None: none) and the aliased columns of `names`."""
        compiler = _Compiler(dict(MODELS))
        post = [p for p in predicates if isinstance(p, PostFilter)]
        where = [compiler.pred(p.prefilter) for p in post if p.prefilter]
        where += [compiler.pred(p) for p in predicates if not isinstance(p, PostFilter)]
        names: list[str] = []
        columns: list[Any] = []

        def add(name: str, column: Callable[[], Any]) -> None:
            if name not in names:
                names.append(name)
                columns.append(column().alias(f"c{len(columns)}"))

        for key in self.keys:
            if key.column is not None or key.computed:
                add(key.keyword, lambda key=key: _key_column(compiler, key))  # type: ignore[misc]
        for extra in self.extras:
            add(extra.name, lambda extra=extra: getattr(  # type: ignore[misc]
                MODELS[extra.table], extra.column))
        if not columns:
            add("__entity", lambda: MODELS[self.level].id)
        for name, item in zip(self.post_names, post, strict=True):
            add(name, lambda item=item: compiler.term(item.col))  # type: ignore[misc]
        return (reduce(operator.and_, where) if where else None), columns

    def _compile_sql(self, predicates: Sequence[Pred]) -> tuple[str, list[Any]]:
        where, columns = self._compile(predicates)
        query = _base(self.level, columns)
        query = query.where(where) if where is not None else query
        sql, params = query.order_by(MODELS[self.level].id).sql()
        return sql, list(params)

    def sql(self) -> tuple[str, list[Any]]:
        """The SELECT that `rows` runs, with its parameters (for EXPLAIN and logs)."""
        database = database_proxy.obj
        context = (type(database).__name__, is_sqlite(database), self.level, self.keys,
                   self.extras)
        cached = cached_statement(context, self.predicates, self._compile_sql)
        return cached if cached is not None else self._compile_sql(self.predicates)

    def _select(self, columns: Sequence[Any]) -> Any:
        where, _ = self._compile(self.predicates)
        query = _base(self.level, columns)
        return query.where(where) if where is not None else query

    def _passes(self, row: dict[str, Any]) -> bool:
        return all(post.test(row[name] or "")
                   for post, name in zip(self.post, self.post_names, strict=True))

    def count(self, limit: int) -> int:
        """How many entities match, counting no further than `limit`."""
        try:
            _prepare(database_proxy.obj)
            if not self.post:
                return int(self._select([MODELS[self.level].id]).limit(limit).count())
            return sum(1 for _ in itertools.islice(self.rows(), limit))
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc

    def rows(self) -> Generator[dict[str, str], None, None]:
        """Each matching entity as {name: text}, in index order, from a cursor (closing the
        generator closes the cursor and ends its read transaction)."""
        sql, params = self.sql()
        try:
            with _cursor(sql, params) as cursor:
                while True:
                    batch = cursor.fetchmany(_BATCH)
                    for values in batch:
                        row = dict(zip(self.names, values, strict=True))
                        if self.post and not self._passes(row):
                            continue
                        yield {name: self._text(name, value) for name, value in row.items()}
                    if len(batch) < _BATCH:
                        break  # a short batch is the last: no round trip to hear "no more"
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc

    def _text(self, name: str, value: Any) -> str:
        if value is None:
            return ""
        if name in self.collected:
            values = sorted(set(str(value).split(SEPARATOR)))
            if self.collected[name] == "SQ":  # the union of the items of DICOM JSON arrays
                items = {json.dumps(item, sort_keys=True): item
                         for text in values for item in _json_items(text)}
                return json.dumps([items[k] for k in sorted(items)])
            return "\\".join(values)
        return str(value)


def _key_column(compiler: _Compiler, key: Key) -> Any:
    """The column (or the subquery of a computed key) a key is read from."""
    if not key.computed:
        return getattr(MODELS[key.table], key.column or "")
    derivation = DERIVED[key.keyword]
    if derivation.column is None:
        return compiler.count(derivation.child, derivation.parent)
    return compiler.collect(derivation.child, derivation.parent, derivation.column)


def _json_items(text: str) -> list[Any]:
    try:
        items = json.loads(text)
    except ValueError:
        return []
    return items if isinstance(items, list) else []


_PREPARED: weakref.WeakSet[Any] = weakref.WeakSet()


def _prepare(database: Any) -> None:
    """Give SQLite connections the wildcard function: registered once with peewee, which
    loads it into this thread's connection now and into every connection opened later.
    (Not per statement: SQLite refuses to create a function while a cursor is open.)"""
    if is_sqlite(database) and database not in _PREPARED:
        database.register_function(any_value_matches, "dicom_any_value_like", 2,
                                   deterministic=True)
        _PREPARED.add(database)


class _DeclaredCursor:
    """A PostgreSQL server-side cursor declared and first fetched in one round trip; the
    later batches are FETCHed from it. It lives in the read transaction and ends with it."""

    def __init__(self, cursor: Any, sql: str, params: Sequence[Any]):
        self.cursor = cursor
        self.name = f"find_{uuid.uuid4().hex}"
        # A cursor is planned for its first 10 % of rows (cursor_tuple_fraction) unless told
        # otherwise; every match is read, so plan for all of them: a date-range study search
        # at 1M instances otherwise walks the study table in id order (9 ms instead of 2).
        cursor.execute('SET LOCAL cursor_tuple_fraction = 1.0; '
                       f'DECLARE "{self.name}" NO SCROLL CURSOR FOR {sql}; '
                       f'FETCH FORWARD {_BATCH} FROM "{self.name}"', params)
        self.first: list[Any] | None = cursor.fetchall()

    def fetchmany(self, size: int) -> list[Any]:
        """The next batch of rows (empty at the end)."""
        if self.first is not None:
            rows, self.first = self.first, None
            return rows
        self.cursor.execute(f'FETCH FORWARD {int(size)} FROM "{self.name}"')
        return list(self.cursor.fetchall())

    def close(self) -> None:
        """Close the client side; the server's cursor closes with the transaction."""
        self.cursor.close()


@contextmanager
def _cursor(sql: str, params: Sequence[Any]) -> Iterator[Any]:
    """A cursor over the statement, reading one snapshot throughout."""
    database = database_proxy.obj
    wrapper = peewee.__exception_wrapper__
    if is_sqlite(database):
        # One SELECT is one read transaction in SQLite, from its first step until the cursor
        # is exhausted or closed: no BEGIN and COMMIT around it (two more statements).
        _prepare(database)
        cursor = database.execute_sql(sql, params)
        try:
            with wrapper:
                yield cursor
        finally:
            cursor.close()
        return
    with database.atomic():
        # A server-side cursor: rows travel in batches as they are read. Declared by hand
        # rather than by psycopg2's named cursor, which takes three round trips (DECLARE,
        # FETCH, CLOSE) where this takes one for a search of one batch. It lives in the
        # transaction.
        with wrapper:
            cursor = _DeclaredCursor(database.connection().cursor(), sql, params)
        try:
            with wrapper:
                yield cursor
        finally:
            cursor.close()
