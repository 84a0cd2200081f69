"""The index: bulk loading keeps the same shape as one-by-one stores."""

from __future__ import annotations

from pacs.index.database import Index
from pacs.index.records import IndexEntry
from tests.factory import uid


def _entry(patient: int, study: int, series: int, instance: int) -> IndexEntry:
    return IndexEntry(
        patient={"patient_id": f"P{patient}", "patient_name": f"Name^{patient}"},
        study={"study_instance_uid": uid("st", patient, study), "study_date": "20240101"},
        series={"series_instance_uid": uid("se", patient, study, series), "modality": "CT"},
        instance={"sop_instance_uid": uid("in", patient, study, series, instance),
                  "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2"},
        transfer_syntax_uid="1.2.840.10008.1.2.1", file_path="none", file_size=0,
        file_sha256="",
    )


def test_bulk_load_builds_the_hierarchy_and_skips_known_instances(database_url: str) -> None:
    index = Index(database_url)
    try:
        entries = [_entry(p, s, e, i) for p in range(3) for s in range(2) for e in range(2)
                   for i in range(5)]
        assert index.add_instances_bulk(entries, batch_size=7) == 60
        assert index.add_instances_bulk(entries[:10]) == 10  # already there: skipped
        stats = index.stats()
        assert (stats.patients, stats.studies, stats.series, stats.instances) == (3, 6, 12, 60)
    finally:
        index.close()


# DESIGN "index/": the prebuilt statements a store runs (index/statements.py) write the very
# row peewee's own insert writes: the same values, and the defaults of columns left out.
def test_a_stored_row_equals_the_row_peewee_would_write(database_url: str) -> None:
    from datetime import UTC, datetime

    from pacs.index.database import instance_values
    from pacs.index.schema import Instance

    index = Index(database_url)
    try:
        received = datetime(2026, 12, 3, 5, 48, 40, 123456, tzinfo=UTC)
        ours, theirs = _entry(1, 1, 1, 1), _entry(1, 1, 1, 2)
        for entry in (ours, theirs):
            entry.received_at, entry.source_ae, entry.file_size = received, "MOD", 1 << 33
        assert index.add_instance(ours).outcome == "inserted"
        series_id = Instance.get(Instance.sop_instance_uid ==
                                 ours.instance["sop_instance_uid"]).series_id
        Instance.insert(instance_values(theirs, series_id)).execute()
        rows = [Instance.select().where(Instance.sop_instance_uid == e.instance["sop_instance_uid"])
                .dicts().get() for e in (ours, theirs)]
        for row in rows:
            del row["id"], row["sop_instance_uid"]
        assert rows[0] == rows[1]
        assert rows[0]["file_size"] == 1 << 33 and rows[0]["instance_number"] == ""
        assert index.add_instance(ours).outcome == "kept"
    finally:
        index.close()


# DESIGN "index/": a store remembers its series' row id; when that series was deleted since
# (its last instance removed, by this process or another), the next instance recreates it
# and hangs under the new row, never under a stale id. (A new instance of a remembered
# series is inserted in one statement guarded by the series row.)
def test_instance_of_a_series_deleted_meanwhile_recreates_its_series(database_url: str) -> None:
    from pacs.index.schema import Instance, Series

    index = Index(database_url)
    try:
        first, second, third = _entry(1, 1, 1, 1), _entry(1, 1, 1, 2), _entry(1, 1, 1, 3)
        assert index.add_instance(first).outcome == "inserted"
        assert index.add_instance(second).outcome == "inserted"  # remembered series
        old_series = Series.get(Series.series_instance_uid ==
                                first.series["series_instance_uid"]).id
        for entry in (first, second):
            index.remove_instance(entry.instance["sop_instance_uid"])
        Series.delete().where(Series.id == old_series).execute()  # as delete would, if empty
        assert index.add_instance(third).outcome == "inserted"
        row = Instance.get(Instance.sop_instance_uid == third.instance["sop_instance_uid"])
        series = Series.get_by_id(row.series_id)
        assert series.series_instance_uid == third.series["series_instance_uid"]
        assert index.add_instance(third).outcome == "kept"
    finally:
        index.close()


# PS3.4 C.4.2.2.1: a retrieve's instance set, read with the SQL built once per shape of
# request, is the one peewee's query gives: the same records, in study, series, instance order.
def test_retrieve_sets_from_prebuilt_sql_equal_peewee_queries(database_url: str) -> None:
    index = Index(database_url)
    try:
        entries = [_entry(p, s, e, i) for p in range(2) for s in range(2) for e in range(2)
                   for i in range(3)]
        index.add_instances_bulk(entries)
        study, series = uid("st", 1, 0), uid("se", 0, 1, 1)
        shapes = [
            ((), (study,), (), ()),
            (("P0", "P1"), (), (), ()),
            ((), (study, uid("st", 0, 1)), (), ()),
            ((), (), (series,), ()),
            ((), (uid("st", 0, 1),), (series,), ()),  # both keys: the lists AND
            ((), (), (), (uid("in", 0, 0, 0, 2), uid("in", 1, 1, 1, 0))),
            (("P9",), (), (), ()),
        ]
        for _ in range(2):  # built, then taken from the cache
            for keys in shapes:
                expected = [index._record(row) for row in index._retrieve_query(
                    *(list(values) for values in keys))]
                assert index.instances_for_retrieve(*keys) == expected, keys
        assert len(index.instances_for_retrieve((), (study,), (), ())) == 6
        assert index.instances_for_retrieve(("P9",), (), (), ()) == []
    finally:
        index.close()


# Issue #12: a thread's SQLite connection (an association's) goes back to a pool when it is
# released; the next thread takes it instead of opening and configuring one of its own.
def test_sqlite_connections_are_reused_by_the_next_thread(tmp_path) -> None:  # noqa: ANN001
    import threading

    index = Index(f"sqlite:///{tmp_path}/index.sqlite")
    used: list[object] = []

    def association() -> None:
        index.stats()
        used.append(index.database.connection())
        index.release_connection()

    for _ in range(2):
        thread = threading.Thread(target=association)
        thread.start()
        thread.join()
    assert used[0] is used[1]
    assert index.stats().instances == 0  # and it still reads, from this thread
    index.close()
