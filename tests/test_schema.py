"""The index schema is versioned: created on first start, migrated by `pacs db upgrade`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import peewee
import pytest

from pacs.index import schema
from pacs.index.database import Index
from pacs.index.records import IndexUnavailable
from pacs.index.schema import SchemaInfo
from tests.conftest import REPO


def _pacs(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pacs", *arguments], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def test_first_start_creates_the_schema_at_the_current_version(database_url: str) -> None:
    index = Index(database_url)
    try:
        assert index.schema_version() == schema.SCHEMA_VERSION
    finally:
        index.close()


def test_older_schema_refuses_to_start_until_upgraded(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Index(database_url).close()

    def add_column(database: peewee.Database) -> None:
        database.execute_sql("ALTER TABLE patient ADD COLUMN migrated_note TEXT DEFAULT ''")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema.MIGRATIONS, schema.SCHEMA_VERSION, add_column)
    with pytest.raises(IndexUnavailable, match="run `pacs db upgrade`"):
        Index(database_url)
    index = Index(database_url, create=False)
    try:
        assert index.upgrade() == [schema.SCHEMA_VERSION]
        assert index.schema_version() == schema.SCHEMA_VERSION
        assert index.upgrade() == []  # idempotent
        columns = {c.name for c in index.database.get_columns("patient")}
        assert "migrated_note" in columns
    finally:
        index.close()


def test_newer_schema_is_refused(database_url: str) -> None:
    index = Index(database_url)
    SchemaInfo.update(version=schema.SCHEMA_VERSION + 5).execute()
    index.close()
    with pytest.raises(IndexUnavailable, match="newer than this release"):
        Index(database_url)


def test_cli_db_version_and_upgrade(tmp_path: Path) -> None:
    common = ["--storage", str(tmp_path / "a"), "--database", f"sqlite:///{tmp_path}/i.sqlite"]
    empty = _pacs("db", "version", *common)
    assert "none (empty database)" in empty.stdout and empty.returncode == 1
    upgraded = _pacs("db", "upgrade", *common)
    assert upgraded.returncode == 0
    assert f"schema version: {schema.SCHEMA_VERSION}" in upgraded.stdout


def test_a_version_3_index_upgrades_to_the_modality_tables(database_url: str,
                                                           tmp_path: Path) -> None:
    # Schema 4 (issue #14): `pacs db upgrade` adds the worklist, MPPS and commitment tables.
    index = Index(database_url)
    database = index.database
    with database.atomic():
        database.drop_tables(schema.MODALITY_MODELS, safe=True)
        SchemaInfo.update(version=3).execute()
    index.close()
    with pytest.raises(IndexUnavailable, match="run `pacs db upgrade`"):
        Index(database_url)
    upgraded = _pacs("db", "upgrade", "--storage", str(tmp_path / "a"),
                     "--database", database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "applied migrations: 4" in upgraded.stdout  # (and any later ones)
    index = Index(database_url)
    try:
        assert index.schema_version() == schema.SCHEMA_VERSION
        tables = set(index.database.get_tables())
        assert {"worklist_item", "performed_step", "performed_step_instance",
                "commitment_request"} <= tables
    finally:
        index.close()
