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


def _split(pred: Pred, values: list[Any]) -> tuple[Hashable, Pred]:
    """(shape, template) of one predicate: its values appended to `values`, replaced by
    placeholders in the template."""
    if isinstance(pred, Compare):
        values.append(pred.value)
        return ("cmp", pred.term, pred.op), dataclasses.replace(
            pred, value=_placeholder(len(values) - 1))
    if isinstance(pred, In):
        first = len(values)
        values.extend(pred.values)
        marks = tuple(_placeholder(first + i) for i in range(len(pred.values)))
        return ("in", pred.term, len(marks)), dataclasses.replace(pred, values=marks)
    if isinstance(pred, (Like, AnyValueLike)):
        values.append(pred.pattern)
        return (type(pred).__name__, pred.term), dataclasses.replace(
            pred, pattern=_placeholder(len(values) - 1))
    if isinstance(pred, (All, AnyOf)):
        parts = [_split(item, values) for item in pred.items]
        return (type(pred).__name__, tuple(s for s, _ in parts)), dataclasses.replace(
            pred, items=tuple(t for _, t in parts))
    if isinstance(pred, Not):
        shape, template = _split(pred.item, values)
        return ("not", shape), dataclasses.replace(pred, item=template)
    if isinstance(pred, Exists):
        shape, template = _split(pred.where, values)
        return ("exists", pred.child, pred.parent, shape), dataclasses.replace(
            pred, where=template)
    if isinstance(pred, CountIs):
        values.append(pred.value)
        return ("count", pred.child, pred.parent), dataclasses.replace(
            pred, value=_placeholder(len(values) - 1))
    if isinstance(pred, PostFilter):
        if pred.prefilter is None:
            return ("post", pred.col, None), pred
        shape, template = _split(pred.prefilter, values)
        return ("post", pred.col, shape), dataclasses.replace(pred, prefilter=template)
    raise _NoShape  # Zoned: its SQL lists the offsets the index holds


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
        parts = [_split(pred, values) for pred in predicates]
    except _NoShape:
        return None
    key = (context, tuple(shape for shape, _ in parts))
    statement = _statements.get(key)
    if statement is None:
        statement = _template(compile_sql, [template for _, template in parts], len(values))
        if len(_statements) >= _MOST_SHAPES:
            _statements.clear()
        _statements[key] = statement
    if statement is _UNCACHEABLE:
        return None
    sql, slots = statement
    return sql, [constant if number is None else values[number] for number, constant in slots]
