"""The plain reads of the index: instance records for retrieve and the operator tools, stats.

Room: index/. Imports peewee, index/schema and index/records. `IndexReads` is the read half
of `Index` (index/database.py); C-FIND's matching queries live in index/query.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import peewee

from pacs.index.records import IndexStats, IndexUnavailable, InstanceRecord
from pacs.index.schema import Instance, Patient, Series, Study

_RECORD_FIELDS = (
    Instance.sop_instance_uid,
    Instance.sop_class_uid,
    Instance.transfer_syntax_uid,
    Instance.file_path,
    Instance.file_size,
    Instance.file_sha256,
    Series.series_instance_uid,
    Study.study_instance_uid,
    Patient.patient_id,
)  # the order of InstanceRecord's fields
# (database, number of values per key list) -> the retrieve SELECT; a bounded number of shapes.
_RETRIEVE_SQL: dict[tuple[str, tuple[int, ...]], str] = {}
_RETRIEVE_SHAPES = 256



class IndexReads:
    """Reads of instance records and counts, shared by every caller of the index."""

    def _records(self) -> peewee.ModelSelect:
        return (
            Instance.select(*_RECORD_FIELDS)
            .join(Series)
            .join(Study)
            .join(Patient)
        )

    @staticmethod
    def _record(row: Any) -> InstanceRecord:
        return InstanceRecord(
            sop_instance_uid=row.sop_instance_uid,
            sop_class_uid=row.sop_class_uid,
            transfer_syntax_uid=row.transfer_syntax_uid,
            file_path=row.file_path,
            file_size=row.file_size,
            file_sha256=row.file_sha256,
            series_instance_uid=row.series.series_instance_uid,
            study_instance_uid=row.series.study.study_instance_uid,
            patient_id=row.series.study.patient.patient_id,
        )

    def get_instance(self, sop_instance_uid: str) -> InstanceRecord | None:
        """The record of one instance, or None."""
        try:
            row = self._records().where(Instance.sop_instance_uid == sop_instance_uid).first()
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc
        return self._record(row) if row is not None else None

    def instances_for_retrieve(
        self,
        patient_ids: Sequence[str] = (),
        study_uids: Sequence[str] = (),
        series_uids: Sequence[str] = (),
        sop_instance_uids: Sequence[str] = (),
    ) -> list[InstanceRecord]:
        """Instances under the given unique keys (each list ORs, the lists AND), in order."""
        keys = (list(patient_ids), list(study_uids), list(series_uids), list(sop_instance_uids))
        parameters = [value for values in keys for value in values]
        try:
            # The SQL of one shape of request (how many values in each list) is built once:
            # peewee's query building was most of a C-MOVE's index time.
            shape = tuple(len(values) for values in keys)
            # Keyed by the kind of database (its SQL dialect), not by id(): a database object
            # freed (a test's PostgreSQL index) can leave its id to a SQLite one.
            key = (type(self.database).__name__, shape)
            sql = _RETRIEVE_SQL.get(key)
            if sql is None:
                sql, built = self._retrieve_query(*keys).sql()
                if list(built) != parameters:  # not the layout assumed: no shortcut
                    return [self._record(row) for row in self._retrieve_query(*keys)]
                if len(_RETRIEVE_SQL) < _RETRIEVE_SHAPES:
                    _RETRIEVE_SQL[key] = sql
            cursor = self.database.execute_sql(sql, parameters)
            return [InstanceRecord(*row) for row in cursor.fetchall()]
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc

    def _retrieve_query(self, patient_ids: list[str], study_uids: list[str],
                        series_uids: list[str], sop_instance_uids: list[str],
                        ) -> peewee.ModelSelect:
        query = self._records()
        if patient_ids:
            query = query.where(Patient.patient_id.in_(patient_ids))
        if study_uids:
            query = query.where(Study.study_instance_uid.in_(study_uids))
        if series_uids:
            query = query.where(Series.series_instance_uid.in_(series_uids))
        if sop_instance_uids:
            query = query.where(Instance.sop_instance_uid.in_(sop_instance_uids))
        return query.order_by(Study.id, Series.id, Instance.id)

    def iter_instances(self) -> Iterator[InstanceRecord]:
        """Every indexed instance, streamed from a cursor."""
        for row in self._records().order_by(Instance.id).iterator():
            yield self._record(row)

    def stats(self) -> IndexStats:
        """Counts of patients, studies, series, instances and stored bytes."""
        try:
            size = Instance.select(peewee.fn.COALESCE(peewee.fn.SUM(Instance.file_size), 0))
            return IndexStats(
                patients=Patient.select().count(),
                studies=Study.select().count(),
                series=Series.select().count(),
                instances=Instance.select().count(),
                bytes=int(size.scalar() or 0),
            )
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc

    # --- operator tools (verify, reindex, delete) ---

    def iter_instances_paged(self, batch_size: int = 1000) -> Iterator[InstanceRecord]:
        """Every indexed instance in id order, read a page at a time (bounded memory on every
        backend, no cursor held open between pages)."""
        last = 0
        while True:
            query = (
                self._records()
                .select_extend(Instance.id)
                .where(Instance.id > last)
                .order_by(Instance.id)
                .limit(batch_size)
            )
            try:
                rows = list(query)
            except peewee.PeeweeException as exc:
                raise IndexUnavailable(f"index read failed: {exc}") from exc
            for row in rows:
                yield self._record(row)
            if len(rows) < batch_size:
                return
            last = rows[-1].id

    def patient_issuers(self, patient_id: str) -> list[str]:
        """The Issuers of Patient ID under which `patient_id` is indexed ('' for none)."""
        try:
            query = Patient.select(Patient.issuer_of_patient_id).where(
                Patient.patient_id == patient_id
            )
            return sorted(row.issuer_of_patient_id for row in query)
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc

    def instances_under(
        self, level: str, key: str, issuer: str | None = None
    ) -> list[InstanceRecord]:
        """The instances of one patient (`issuer` narrows the Patient ID), study, series or
        instance; `level` is "patient", "study", "series" or "instance"."""
        column = {
            "patient": Patient.patient_id,
            "study": Study.study_instance_uid,
            "series": Series.series_instance_uid,
            "instance": Instance.sop_instance_uid,
        }[level]
        query = self._records().where(column == key)
        if level == "patient" and issuer is not None:
            query = query.where(Patient.issuer_of_patient_id == issuer)
        try:
            return [self._record(row) for row in query.order_by(Instance.id)]
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc
