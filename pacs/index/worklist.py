"""Modality worklist items in the index: add, replace, remove, list, and the C-FIND query that
streams the matching items from a cursor.

Room: index/. Imports peewee, index/ (schema, query, records, database) and model/predicates.
Matching predicates come from model/worklist.py and compile with C-FIND's compiler over the
worklist table; items come back as DICOM JSON text.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import peewee

from pacs.index.database import Index
from pacs.index.query import _BATCH, _Compiler, _cursor, _prepare
from pacs.index.records import IndexUnavailable
from pacs.index.schema import WorklistItem, database_proxy
from pacs.model.predicates import Pred

WORKLIST_TABLE = "WORKLIST"
DONE = "COMPLETED"  # a step an MPPS completed is no longer on the worklist


@dataclass(frozen=True)
class WorklistRecord:
    """One worklist item as stored."""

    id: int
    step_key: str
    source: str
    source_stamp: str
    state: str
    added_at: float
    updated_at: float
    dataset: str  # DICOM JSON


def _record(row: Any) -> WorklistRecord:
    return WorklistRecord(row.id, row.step_key, row.source, row.source_stamp, row.state,
                          row.added_at, row.updated_at, row.dataset)


@dataclass(frozen=True)
class ItemWrite:
    """One item to add or replace: its identity, where it came from, its columns and JSON."""

    step_key: str
    source: str
    source_stamp: str
    dataset: str
    columns: Mapping[str, str]


class WorklistItems:
    """The worklist items of one index."""

    def __init__(self, index: Index):
        self.index = index

    def put(self, item: ItemWrite) -> str:
        """Add an item, or replace the one with its step key when it has the same source.

        Returns "added", "replaced", or "conflict" (the step key belongs to an item of
        another source: the folder and `pacs worklist add` never overwrite each other).
        The state an MPPS gave an item survives its replacement.
        """
        now = time.time()
        values = {**item.columns, "source": item.source, "source_stamp": item.source_stamp,
                  "dataset": item.dataset, "updated_at": now}
        try:
            with self.index.write_transaction():
                existing = WorklistItem.get_or_none(WorklistItem.step_key == item.step_key)
                if existing is None:
                    WorklistItem.insert(step_key=item.step_key, added_at=now, **values) \
                        .on_conflict_ignore().execute()
                    return "added"
                if existing.source != item.source:
                    return "conflict"
                WorklistItem.update(values).where(WorklistItem.id == existing.id).execute()
                return "replaced"
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index write failed: {exc}") from exc

    def folder_stamps(self) -> dict[str, str]:
        """{source file: stamp when read} of the items that came from the worklist folder."""
        try:
            # Plain SQL: this runs on every worklist query, over every folder item.
            cursor = self.index.database.execute_sql(
                "SELECT source, source_stamp FROM worklist_item WHERE source != ''")
            return dict(cursor.fetchall())
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc

    def remove_sources(self, sources: Sequence[str]) -> int:
        """Remove the items of these folder files; how many were removed."""
        if not sources:
            return 0
        try:
            with self.index.write_transaction():
                return int(WorklistItem.delete()
                           .where(WorklistItem.source.in_(list(sources))).execute())
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index write failed: {exc}") from exc

    def get(self, item_id: int) -> WorklistRecord | None:
        """The item with this id, or None."""
        try:
            row = WorklistItem.get_or_none(WorklistItem.id == item_id)
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc
        return _record(row) if row is not None else None

    def remove(self, item_ids: Sequence[int]) -> int:
        """Remove items by id; how many were removed."""
        try:
            with self.index.write_transaction():
                return int(WorklistItem.delete()
                           .where(WorklistItem.id.in_(list(item_ids))).execute())
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index write failed: {exc}") from exc

    def list(self) -> list[WorklistRecord]:
        """Every item, by scheduled start and then by id."""
        try:
            return [_record(row) for row in WorklistItem.select().order_by(*_ORDER)]
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc


_ORDER = (WorklistItem.scheduled_procedure_step_start_date,
          WorklistItem.scheduled_procedure_step_start_time_norm, WorklistItem.id)


class WorklistQuery:
    """The items on the worklist (not yet completed) that satisfy every predicate."""

    def __init__(self, predicates: Sequence[Pred]):
        compiler = _Compiler({WORKLIST_TABLE: WorklistItem})
        where = [WorklistItem.state != DONE, *(compiler.pred(p) for p in predicates)]
        self.where = reduce(operator.and_, where)

    def count(self, limit: int) -> int:
        """How many items match, counting no further than `limit`."""
        try:
            _prepare(database_proxy.obj)
            return int(WorklistItem.select(WorklistItem.id).where(self.where)
                       .limit(limit).count())
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc

    def rows(self) -> Iterator[str]:
        """The DICOM JSON of each matching item, by scheduled start, from a cursor."""
        sql, params = (WorklistItem.select(WorklistItem.dataset).where(self.where)
                       .order_by(*_ORDER).sql())
        try:
            with _cursor(sql, params) as cursor:
                while batch := cursor.fetchmany(_BATCH):
                    for (dataset,) in batch:
                        yield dataset
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc
