"""The index's connection, schema version and every write; reads come from `IndexReads`.

Room: index/. Imports peewee, index/schema, index/records, index/reads and index/statements.
Hands out plain records (index/records.py), never peewee rows or pydicom Datasets. The writes
of every store run prebuilt SQL (index/statements.py); the rarer ones use peewee queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import peewee

from pacs.index.reads import IndexReads
from pacs.index.records import AddResult, IndexEntry, IndexUnavailable, InstanceRecord
from pacs.index.schema import (
    Instance,
    Patient,
    SchemaMismatch,
    Series,
    Study,
    create_schema,
    is_sqlite,
    open_database,
    schema_version,
    upgrade_schema,
)
from pacs.index.statements import Statements, ensure_row

# Series row ids remembered between stores (a study arrives series by series), at most this many.
_REMEMBERED_SERIES = 4096


def instance_values(entry: IndexEntry, series_id: int) -> dict[str, Any]:
    """The instance row of `entry` under the series row `series_id`."""
    return {
        **entry.instance,
        "series": series_id,
        "transfer_syntax_uid": entry.transfer_syntax_uid,
        "file_path": entry.file_path,
        "file_size": entry.file_size,
        "file_sha256": entry.file_sha256,
        "received_at": entry.received_at,
        "source_ae": entry.source_ae,
    }


class Index(IndexReads):
    """The Patient -> Study -> Series -> Instance index in SQLite or PostgreSQL."""

    def __init__(self, url: str, create: bool = True):
        self.url = url
        self._series_ids: dict[str, int] = {}
        try:
            self.database = open_database(url)
            self._statements = Statements(self.database)
            if create:
                create_schema(self.database)
        except SchemaMismatch as exc:
            raise IndexUnavailable(str(exc)) from exc
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"cannot open index {url}: {exc}") from exc

    def schema_version(self) -> int | None:
        """The schema version recorded in the database (None: empty database)."""
        return schema_version(self.database)

    def upgrade(self) -> list[int]:
        """Apply pending schema migrations; the versions applied (empty: already current)."""
        try:
            return upgrade_schema(self.database)
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"schema upgrade failed: {exc}") from exc

    # --- connections ---------------------------------------------------------------------------

    def write_transaction(self) -> AbstractContextManager[Any]:
        """A transaction that takes the write lock up front on SQLite (no upgrade deadlocks)."""
        if is_sqlite(self.database):
            return self.database.atomic(lock_type="IMMEDIATE")
        return self.database.atomic()

    def release_connection(self) -> None:
        """Close (or return to the pool) the calling thread's connection."""
        if not self.database.is_closed():
            self.database.close()

    def analyze(self) -> None:
        """Refresh the planner's statistics (after a bulk load: PostgreSQL plans go stale)."""
        self.database.execute_sql("ANALYZE")

    def end_operation(self) -> None:
        """Return the calling thread's connection to the pool after each operation (both
        backends pool: a worker thread that ends must not keep one out of the pool)."""
        self.release_connection()

    def close(self) -> None:
        """Close the calling thread's connection and, for a pool, all idle ones."""
        self.release_connection()
        # SQLite: the idle ones only, as before only the caller's closed (other threads may
        # still be reading); PostgreSQL: every one.
        close = getattr(self.database, "close_idle" if is_sqlite(self.database) else "close_all",
                        None)
        if close:
            close()

    # --- writes --------------------------------------------------------------------------------

    def add_instance(self, entry: IndexEntry, replace: bool = False) -> AddResult:
        """Index one instance and its parents in one transaction.

        An instance already indexed is left alone (outcome "kept") unless `replace`, which
        updates its row in place (outcome "replaced", with the old file path). Parent rows are
        created when missing; their attributes are those of the first instance seen.
        """
        return self.add_instances([entry], replace)[0]

    def add_instances(self, entries: Sequence[IndexEntry], replace: bool = False
                      ) -> list[AddResult]:
        """Index several instances (and their parents) in ONE transaction: one commit, one
        fsync of the log, for stores that arrived together (group commit).

        Each entry is handled as `add_instance` would, in order (a second entry with the same
        SOP Instance UID is "kept"); when any fails, none is indexed.
        """
        try:
            try:
                return self._add_instances(entries, replace)
            except peewee.IntegrityError:
                # A series deleted between the check and the insert: forget ids, try once more.
                self._series_ids.clear()
                return self._add_instances(entries, replace)
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index write failed: {exc}") from exc

    def _add_instances(self, entries: Sequence[IndexEntry], replace: bool) -> list[AddResult]:
        with self.write_transaction():
            return [self._add_one(entry, replace) for entry in entries]

    def _add_one(self, entry: IndexEntry, replace: bool) -> AddResult:
        series_uid = entry.series["series_instance_uid"]
        series_id = self._series_ids.get(series_uid)
        # A new instance of a series seen before (the common case) costs one statement.
        if series_id is not None and self._statements.insert_in_series(
                Instance, instance_values(entry, series_id), "sop_instance_uid",
                series_id, series_uid):
            return AddResult("inserted")
        if series_id is not None and not self._is_series(series_id, series_uid):
            series_id = None  # deleted meanwhile, or its id reused (SQLite reuses rowids)
        if series_id is None:
            series_id = self._ensure_parents(entry)
            if len(self._series_ids) > _REMEMBERED_SERIES:
                self._series_ids.clear()
            self._series_ids[series_uid] = series_id
        values = instance_values(entry, series_id)
        if self._statements.insert(Instance, values, conflict="sop_instance_uid"):
            return AddResult("inserted")
        existing = self._statements.instance(entry.instance["sop_instance_uid"])
        if existing is None:  # cannot happen: the insert conflicted on this very UID
            raise peewee.IntegrityError("instance row neither inserted nor found")
        if not replace:
            return AddResult("kept", existing[1])
        Instance.update(values).where(Instance.id == existing[0]).execute()
        return AddResult("replaced", existing[1])

    def _is_series(self, series_id: int, series_uid: str) -> bool:
        # Plain SQL: this runs on every store, and compiling a peewee query costs more.
        mark = self.database.param
        cursor = self.database.execute_sql(
            f"SELECT 1 FROM series WHERE id = {mark} AND series_instance_uid = {mark}",
            (series_id, series_uid),
        )
        return cursor.fetchone() is not None

    def _ensure_parents(self, entry: IndexEntry) -> int:
        """The series row id of `entry`, creating its patient, study and series when missing."""
        patient_id = self._ensure(
            Patient,
            {
                "patient_id": entry.patient.get("patient_id", ""),
                "issuer_of_patient_id": entry.patient.get("issuer_of_patient_id", ""),
            },
            entry.patient,
        )
        study_id = self._ensure(
            Study,
            {"study_instance_uid": entry.study["study_instance_uid"]},
            {**entry.study, "patient": patient_id},
        )
        return self._ensure(
            Series,
            {"series_instance_uid": entry.series["series_instance_uid"]},
            {**entry.series, "study": study_id},
        )

    def stored_file(self, sop_instance_uid: str) -> tuple[str, int] | None:
        """(relative path, size) of an indexed instance, or None: the cheap duplicate check."""
        try:
            row = self._statements.instance(sop_instance_uid)
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc
        return (row[1], row[2]) if row is not None else None

    def add_instances_bulk(self, entries: Iterable[IndexEntry], batch_size: int = 2000) -> int:
        """Index many instances fast (benchmarks, migrations): batches of one transaction each.

        Parents are created once and remembered; instances already indexed are skipped.
        Returns how many entries were given.
        """
        parents: dict[tuple[str, ...], int] = {}
        count = 0
        batch: list[IndexEntry] = []

        def flush() -> None:
            rows = []
            with self.write_transaction():
                for entry in batch:
                    patient_key = ("P", entry.patient.get("patient_id", ""),
                                   entry.patient.get("issuer_of_patient_id", ""))
                    if patient_key not in parents:
                        parents[patient_key] = self._ensure(
                            Patient, {"patient_id": patient_key[1],
                                      "issuer_of_patient_id": patient_key[2]}, entry.patient)
                    study_key = ("S", entry.study["study_instance_uid"])
                    if study_key not in parents:
                        parents[study_key] = self._ensure(
                            Study, {"study_instance_uid": study_key[1]},
                            {**entry.study, "patient": parents[patient_key]})
                    series_key = ("E", entry.series["series_instance_uid"])
                    if series_key not in parents:
                        parents[series_key] = self._ensure(
                            Series, {"series_instance_uid": series_key[1]},
                            {**entry.series, "study": parents[study_key]})
                    rows.append(instance_values(entry, parents[series_key]))
                for start in range(0, len(rows), 200):
                    Instance.insert_many(rows[start:start + 200]).on_conflict_ignore().execute()
            batch.clear()

        try:
            for entry in entries:
                batch.append(entry)
                count += 1
                if len(batch) >= batch_size:
                    flush()
            if batch:
                flush()
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"bulk index write failed: {exc}") from exc
        return count

    def _ensure(self, model: Any, key: dict[str, Any], values: dict[str, Any]) -> int:
        """The id of the row with `key`, inserting it with `values` when absent (race-safe)."""
        return ensure_row(self._statements, model, key, values)

    def remove_instance(self, sop_instance_uid: str) -> InstanceRecord | None:
        """Delete one instance row, and parents left empty; returns what was removed."""
        try:
            with self.write_transaction():
                record = self.get_instance(sop_instance_uid)
                if record is None:
                    return None
                row = Instance.get(Instance.sop_instance_uid == sop_instance_uid)
                series_id = row.series_id
                row.delete_instance()
                self._remove_empty_parents(series_id)
                return record
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index write failed: {exc}") from exc

    @staticmethod
    def _remove_empty_parents(series_id: int) -> None:
        series = Series.get_by_id(series_id)
        if not Instance.select().where(Instance.series == series_id).exists():
            study_id = series.study_id
            series.delete_instance()
            if not Series.select().where(Series.study == study_id).exists():
                study = Study.get_by_id(study_id)
                patient_id = study.patient_id
                study.delete_instance()
                if not Study.select().where(Study.patient == patient_id).exists():
                    Patient.delete().where(Patient.id == patient_id).execute()

    # --- reads ---------------------------------------------------------------------------------

    def delete_instances(self, sop_instance_uids: Sequence[str], chunk: int = 500) -> int:
        """Delete these instance rows, and parents left empty, in ONE transaction; returns how
        many rows were deleted (UIDs no longer indexed are skipped)."""
        uids = list(dict.fromkeys(sop_instance_uids))
        try:
            with self.write_transaction():
                series_ids: set[int] = set()
                deleted = 0
                for start in range(0, len(uids), chunk):
                    part = uids[start:start + chunk]
                    where = Instance.sop_instance_uid.in_(part)
                    series_ids.update(s for (s,) in Instance.select(Instance.series)
                                      .where(where).tuples())
                    deleted += Instance.delete().where(where).execute()
                self._prune_empty(tuple(series_ids), (), ())
                return deleted
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index write failed: {exc}") from exc

    def upsert_instances(self, entries: Sequence[IndexEntry]) -> list[AddResult]:
        """Index instances from their files as the source of truth, in one transaction.

        Unlike `add_instance`, the patient, study and series rows take each entry's values and
        links too (so a rebuild repairs parents that drifted), an existing instance row is
        updated ("replaced", with its old file path) and parents left empty when an instance,
        series or study moved elsewhere are removed.
        """
        try:
            with self.write_transaction():
                return [self._upsert(entry) for entry in entries]
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index write failed: {exc}") from exc

    def _upsert(self, entry: IndexEntry) -> AddResult:
        patient_key = {
            "patient_id": entry.patient.get("patient_id", ""),
            "issuer_of_patient_id": entry.patient.get("issuer_of_patient_id", ""),
        }
        patient_id = self._ensure(Patient, patient_key, entry.patient)
        Patient.update({**entry.patient, **patient_key}).where(Patient.id == patient_id).execute()
        study_values = {**entry.study, "patient": patient_id}
        study_id = self._ensure(
            Study, {"study_instance_uid": entry.study["study_instance_uid"]}, study_values
        )
        old_patient = Study.get_by_id(study_id).patient_id
        Study.update(study_values).where(Study.id == study_id).execute()
        series_values = {**entry.series, "study": study_id}
        series_id = self._ensure(
            Series, {"series_instance_uid": entry.series["series_instance_uid"]}, series_values
        )
        old_study = Series.get_by_id(series_id).study_id
        Series.update(series_values).where(Series.id == series_id).execute()
        values = instance_values(entry, series_id)
        uid = entry.instance["sop_instance_uid"]
        existing = (
            Instance.select(Instance.id, Instance.series, Instance.file_path)
            .where(Instance.sop_instance_uid == uid)
            .first()
        )
        if existing is None:
            Instance.insert(values).on_conflict_ignore().execute()
            self._prune_empty((), (old_study,), (old_patient,))
            return AddResult("inserted")
        Instance.update(values).where(Instance.id == existing.id).execute()
        # Whatever this instance, its series or its study left may now be empty.
        self._prune_empty((existing.series_id,), (old_study,), (old_patient,))
        return AddResult("replaced", existing.file_path)

    @staticmethod
    def _prune_empty(
        series_ids: Sequence[int], study_ids: Sequence[int], patient_ids: Sequence[int]
    ) -> None:
        """Delete those of the given series without instances, then studies without series,
        then patients without studies (parents of removed rows are checked too)."""
        studies, patients = set(study_ids), set(patient_ids)
        for series_id in set(series_ids):
            series = Series.get_or_none(Series.id == series_id)
            if series and not Instance.select().where(Instance.series == series_id).exists():
                studies.add(series.study_id)
                series.delete_instance()
        for study_id in sorted(studies):
            study = Study.get_or_none(Study.id == study_id)
            if study and not Series.select().where(Series.study == study_id).exists():
                patients.add(study.patient_id)
                study.delete_instance()
        for patient_id in sorted(patients):
            if not Study.select().where(Study.patient == patient_id).exists():
                Patient.delete().where(Patient.id == patient_id).execute()
