"""The SQL text of C-FIND queries, built once per query shape and reused.

Room: index/. Imports model/predicates only; index/query.py hands it the compiler. peewee builds
a query's SQL text from its expression tree every time (~0.2-0.3 ms for a C-FIND, more than
SQLite takes to run it). Two requests with the same shape (level, keys read, predicates with
the same structure and columns, lists of the same length) differ only in the values they
match, and those travel as parameters. So the first request of a shape compiles a template
whose values are placeholders, and every request of that shape takes its text and puts its
own values in the parameters' places.

The template is trusted only when each parameter peewee produced is either a placeholder,
untouched, or a constant of the shape (a delimiter): a value peewee (or the compiler) converted
or wrote into the text, e.g. the regular expression an any-value wildcard becomes on
PostgreSQL, makes the shape uncacheable, and it is compiled per request as before; so is a
shape whose SQL depends on the index's content (timezone-adjusted matching).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from pacs.model.predicates import (
    All,
    AnyOf,
    AnyValueLike,
    Compare,
    CountIs,
    Exists,
    In,
    Like,
    Not,
    PostFilter,
    Pred,
)

_MARK = "\x00"  # never in a stored text value (index rows are DICOM text), nor in a SQL text
_MOST_SHAPES = 1024  # a bound on the cache: lists of many lengths make many shapes
_UNCACHEABLE = object()

# shape -> (SQL text, per parameter: index of the value, or None and the constant) or the
# marker of a shape that is compiled per request.
_statements: dict[Hashable, Any] = {}


class _NoShape(Exception):
    """The predicates have no fixed SQL text (they depend on the index's content)."""


def _placeholder(number: int) -> str:
    return f"{_MARK}{number}{_MARK}"


def _shape(pred: Pred, values: list[Any]) -> Hashable:
    """The shape of one predicate (its structure and columns), its values appended to
    `values` in the order `_template` numbers its placeholders."""
    if isinstance(pred, Compare):
        values.append(pred.value)
        return ("cmp", pred.term, pred.op)
    if isinstance(pred, In):
        values.extend(pred.values)
        return ("in", pred.term, len(pred.values))
    if isinstance(pred, (Like, AnyValueLike)):
        values.append(pred.pattern)
        return (type(pred).__name__, pred.term)
    if isinstance(pred, (All, AnyOf)):
        return (type(pred).__name__, tuple(_shape(item, values) for item in pred.items))
    if isinstance(pred, Not):
        return ("not", _shape(pred.item, values))
    if isinstance(pred, Exists):
        return ("exists", pred.child, pred.parent, _shape(pred.where, values))
    if isinstance(pred, CountIs):
        values.append(pred.value)
        return ("count", pred.child, pred.parent)
    if isinstance(pred, PostFilter):
        return ("post", pred.col, None if pred.prefilter is None
                else _shape(pred.prefilter, values))
    raise _NoShape  # Zoned: its SQL lists the offsets the index holds


def _placeholders(pred: Pred, count: list[int]) -> Pred:
    """The predicate with its values replaced by numbered placeholders, in `_shape`'s order."""
    def mark() -> str:
        count[0] += 1
        return _placeholder(count[0] - 1)

    if isinstance(pred, Compare):
        return dataclasses.replace(pred, value=mark())
    if isinstance(pred, In):
        return dataclasses.replace(pred, values=tuple(mark() for _ in pred.values))
    if isinstance(pred, (Like, AnyValueLike)):
        return dataclasses.replace(pred, pattern=mark())
    if isinstance(pred, (All, AnyOf)):
        return dataclasses.replace(pred, items=tuple(_placeholders(i, count) for i in pred.items))
    if isinstance(pred, Not):
        return dataclasses.replace(pred, item=_placeholders(pred.item, count))
    if isinstance(pred, Exists):
        return dataclasses.replace(pred, where=_placeholders(pred.where, count))
    if isinstance(pred, CountIs):
        return dataclasses.replace(pred, value=mark())
    if isinstance(pred, PostFilter) and pred.prefilter is not None:
        return dataclasses.replace(pred, prefilter=_placeholders(pred.prefilter, count))
    return pred


def _template(compile_sql: Callable[[Sequence[Pred]], tuple[str, list[Any]]],
              templates: Sequence[Pred], count: int) -> Any:
    """Compile the template; the statement, or _UNCACHEABLE when peewee changed a value."""
    try:
        sql, params = compile_sql(templates)
    except Exception:  # noqa: BLE001 - a placeholder a field cannot convert: compile per request
        return _UNCACHEABLE
    if _MARK in sql:
        return _UNCACHEABLE
    marks = {_placeholder(number): number for number in range(count)}
    slots: list[tuple[int | None, Any]] = []
    for param in params:
        if isinstance(param, str) and param in marks:
            slots.append((marks[param], None))
        elif isinstance(param, str) and _MARK in param:
            return _UNCACHEABLE  # a value converted (e.g. into a regular expression)
        else:
            slots.append((None, param))
    if {number for number, _ in slots if number is not None} != set(range(count)):
        return _UNCACHEABLE
    return sql, tuple(slots)


def cached_statement(context: Hashable, predicates: Sequence[Pred],
                     compile_sql: Callable[[Sequence[Pred]], tuple[str, list[Any]]],
                     ) -> tuple[str, list[Any]] | None:
    """The (SQL, parameters) of `predicates` from the statement of their shape, compiled with
    `compile_sql` the first time; None when the shape is compiled per request. `context`
    holds what else the text depends on (backend, level, columns read)."""
    values: list[Any] = []
    try:
        key = (context, tuple(_shape(pred, values) for pred in predicates))
    except _NoShape:
        return None
    statement = _statements.get(key)
    if statement is None:
        count = [0]
        templates = [_placeholders(pred, count) for pred in predicates]
        statement = _template(compile_sql, templates, len(values))
        if len(_statements) >= _MOST_SHAPES:
            _statements.clear()
        _statements[key] = statement
    if statement is _UNCACHEABLE:
        return None
    sql, slots = statement
    return sql, [constant if number is None else values[number] for number, constant in slots]
