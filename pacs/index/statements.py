"""The SQL text of the statements every store runs, built once per shape and reused.

Room: index/. Imports peewee and index/schema. peewee compiles a query object into SQL text
each time it runs, which costs more CPU than SQLite takes to execute a one-row statement;
these statements are built once per table (or key) from the models' fields and executed with
parameters on the connection's cursor. Values go through each field's `db_value`, as peewee
would convert them, and a column left out of a row gets its field's default, as peewee's
insert gives it, so the rows written are the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import peewee

from pacs.index.schema import Instance, Series


class _RowInsert:
    """`INSERT ... ON CONFLICT DO NOTHING` of one row of a model, every column but the id."""

    def __init__(self, database: peewee.Database, model: Any, conflict: str | None):
        fields = [f for f in model._meta.sorted_fields if f is not model._meta.primary_key]
        quote = _quoter(database)
        mark = database.param
        target = f" ({quote(conflict)})" if conflict else ""
        self.sql = (
            f"INSERT INTO {quote(model._meta.table_name)} "
            f"({', '.join(quote(f.column_name) for f in fields)}) "
            f"VALUES ({', '.join(mark for _ in fields)}) ON CONFLICT{target} DO NOTHING"
        )
        # The same, only while a row of the series table has this id and UID (one statement
        # where a check and an insert were two round trips).
        self.sql_in_series = (
            f"INSERT INTO {quote(model._meta.table_name)} "
            f"({', '.join(quote(f.column_name) for f in fields)}) "
            f"SELECT {', '.join(mark for _ in fields)} WHERE EXISTS (SELECT 1 FROM "
            f"{quote(Series._meta.table_name)} WHERE {quote('id')} = {mark} AND "
            f"{quote('series_instance_uid')} = {mark}) ON CONFLICT{target} DO NOTHING"
        )
        # Text values are already text: only other fields (ids, sizes, times) need converting.
        self._columns = [
            (f.name, f.column_name, None if isinstance(f, peewee.TextField) else f.db_value,
             f.default)
            for f in fields
        ]
        self._known = frozenset(f.name for f in fields) | {f.column_name for f in fields}
        self._table = model._meta.table_name

    def parameters(self, row: Mapping[str, Any]) -> list[Any]:
        """The row's values in column order (by field name or column name; else the default).

        Raises ValueError for a key that is no column of the table, as peewee's insert would.
        """
        unknown = row.keys() - self._known
        if unknown:
            raise ValueError(f"{self._table} has no column {', '.join(sorted(unknown))}")
        values = []
        for name, column, convert, default in self._columns:
            if name in row:
                value = row[name]
            elif column in row:
                value = row[column]
            elif callable(default):
                value = default()
            else:
                value = default
            values.append(convert(value) if convert is not None else value)
        return values


class Statements:
    """The cached statements of one database (its parameter mark and quoting)."""

    def __init__(self, database: peewee.Database):
        self.database = database
        self._inserts: dict[tuple[Any, str | None], _RowInsert] = {}
        self._selects: dict[tuple[Any, tuple[str, ...]], str] = {}
        quote, mark = _quoter(database), database.param
        table = quote(Instance._meta.table_name)
        self._instance_by_uid = (
            f"SELECT {quote('id')}, {quote('file_path')}, {quote('file_size')} FROM {table} "
            f"WHERE {quote('sop_instance_uid')} = {mark}"
        )

    def insert(self, model: Any, row: Mapping[str, Any], conflict: str | None = None) -> int:
        """Insert `row` unless it conflicts (on `conflict`, else on any unique key); returns
        the number of rows inserted (0 or 1)."""
        statement = self._inserts.get((model, conflict))
        if statement is None:
            statement = self._inserts[(model, conflict)] = _RowInsert(
                self.database, model, conflict)
        cursor = self.database.execute_sql(statement.sql, statement.parameters(row))
        return int(cursor.rowcount)

    def insert_in_series(self, model: Any, row: Mapping[str, Any], conflict: str | None,
                         series_id: int, series_uid: str) -> int:
        """`insert`, done only while the series row `series_id` still has `series_uid`;
        0 when the row conflicts or that series is gone (or its id was reused)."""
        statement = self._inserts.get((model, conflict))
        if statement is None:
            statement = self._inserts[(model, conflict)] = _RowInsert(
                self.database, model, conflict)
        cursor = self.database.execute_sql(statement.sql_in_series,
                                           [*statement.parameters(row), series_id, series_uid])
        return int(cursor.rowcount)

    def row_id(self, model: Any, key: Mapping[str, Any]) -> int | None:
        """The id of the row of `model` whose columns equal `key`, or None."""
        names = tuple(key)
        sql = self._selects.get((model, names))
        if sql is None:
            quote, mark = _quoter(self.database), self.database.param
            where = " AND ".join(f"{quote(getattr(model, n).column_name)} = {mark}"
                                 for n in names)
            sql = self._selects[(model, names)] = (
                f"SELECT {quote('id')} FROM {quote(model._meta.table_name)} WHERE {where}")
        row = self.database.execute_sql(sql, tuple(key.values())).fetchone()
        return int(row[0]) if row is not None else None

    def instance(self, sop_instance_uid: str) -> tuple[int, str, int] | None:
        """(id, file path, file size) of the instance row with this UID, or None."""
        row = self.database.execute_sql(self._instance_by_uid, (sop_instance_uid,)).fetchone()
        return (int(row[0]), row[1], int(row[2])) if row is not None else None


def _quoter(database: peewee.Database) -> Any:
    opening, closing = database.quote

    def quote(name: str) -> str:
        return f"{opening}{name}{closing}"
    return quote


def ensure_row(statements: Statements, model: Any, key: Mapping[str, Any],
               values: Mapping[str, Any]) -> int:
    """The id of the row of `model` with `key`, inserted with `values` when absent.

    Another process may insert the same row between the select and the insert: the insert
    then does nothing and the select after it finds that row.
    """
    found = statements.row_id(model, key)
    if found is not None:
        return found
    statements.insert(model, {**values, **key})
    found = statements.row_id(model, key)
    if found is None:
        raise peewee.IntegrityError(f"{model._meta.table_name} row {dict(key)} not inserted")
    return found

