"""peewee models of the index, Patient -> Study -> Series -> Instance, and opening the database.

Room: index/. Imports peewee, model/dictionary, model/value_matching and model/worklist.
Columns come from the attribute tables in `model/dictionary.py` (and `model/worklist.py` for
worklist items), so adding a key there adds its column here. Schema 4 adds the modality
services' tables: worklist items, performed procedure steps (MPPS) and storage commitment
requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peewee
from playhouse import db_url

from pacs.model.dictionary import IMAGE, PATIENT, SERIES, STUDY, StoredAttribute, stored_attributes
from pacs.model.value_matching import any_value_matches
from pacs.model.worklist import WORKLIST_ATTRIBUTES

SCHEMA_VERSION = 4
database_proxy = peewee.DatabaseProxy()

# Columns filtered by most queries get a B-tree index; text search on the rest is rare.
_INDEXED = {
    "patient_id", "patient_name", "patient_name_folded", "patient_birth_date", "patient_sex",
    "study_date", "study_time_norm", "accession_number", "study_id", "referring_physician_name",
    "referring_physician_name_folded", "study_description",
    "modality", "series_number", "sop_class_uid", "instance_number",
    # worklist items: a modality asks for its day's steps
    "scheduled_procedure_step_start_date",
}


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


def _attribute_fields(level: str, skip: set[str],
                      attributes: tuple[StoredAttribute, ...] | None = None) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for attribute in attributes if attributes is not None else stored_attributes(level):
        if attribute.column in skip:
            continue
        for name in filter(None, (attribute.column, attribute.folded_column,
                                  attribute.normalized_column)):
            columns[name] = peewee.TextField(default="", index=name in _INDEXED)
    return columns


def _model(name: str, fields: dict[str, Any], meta: dict[str, Any]) -> type[BaseModel]:
    namespace: dict[str, Any] = dict(fields)
    namespace["__module__"] = __name__
    namespace["Meta"] = type("Meta", (), meta)
    return type(name, (BaseModel,), namespace)


class SchemaInfo(BaseModel):
    """One row: the schema version this database is at."""

    version = peewee.IntegerField()


Patient = _model(
    "Patient",
    _attribute_fields(PATIENT, set()),
    # A patient is Patient ID within its issuer (PS3.3 C.7.1.1).
    {"indexes": ((("patient_id", "issuer_of_patient_id"), True),)},
)

Study = _model(
    "Study",
    {
        "patient": peewee.ForeignKeyField(Patient, backref="studies", on_delete="CASCADE"),
        **_attribute_fields(STUDY, {"study_instance_uid"}),
        "study_instance_uid": peewee.TextField(unique=True),
    },
    {"indexes": ((("study_date", "study_time_norm"), False),)},
)

Series = _model(
    "Series",
    {
        "study": peewee.ForeignKeyField(Study, backref="series", on_delete="CASCADE"),
        **_attribute_fields(SERIES, {"series_instance_uid"}),
        "series_instance_uid": peewee.TextField(unique=True),
    },
    {"table_name": "series"},
)

Instance = _model(
    "Instance",
    {
        "series": peewee.ForeignKeyField(Series, backref="instances", on_delete="CASCADE"),
        **_attribute_fields(IMAGE, {"sop_instance_uid"}),
        "sop_instance_uid": peewee.TextField(unique=True),
        "transfer_syntax_uid": peewee.TextField(),
        "file_path": peewee.TextField(),
        "file_size": peewee.BigIntegerField(),
        "file_sha256": peewee.TextField(),
        "received_at": peewee.DateTimeField(),
        "source_ae": peewee.TextField(default=""),
    },
    {},
)

# --- the modality services (schema 4). Times are UNIX seconds: the same on both backends. ---

WorklistItem = _model(
    "WorklistItem",
    {
        # Study Instance UID / Requested Procedure ID / Scheduled Procedure Step ID.
        "step_key": peewee.TextField(unique=True),
        # "" for `pacs worklist add`; the file name for an item of the worklist folder.
        "source": peewee.TextField(default="", index=True),
        "source_stamp": peewee.TextField(default=""),  # mtime_ns:size of that file, when read
        # SCHEDULED until an MPPS performs it: IN PROGRESS, COMPLETED or DISCONTINUED.
        "state": peewee.TextField(default="SCHEDULED", index=True),
        "added_at": peewee.DoubleField(),
        "updated_at": peewee.DoubleField(),
        "dataset": peewee.TextField(),  # the whole item as DICOM JSON
        **_attribute_fields("WORKLIST", set(), WORKLIST_ATTRIBUTES),
    },
    {},
)


class PerformedStep(BaseModel):
    """One Modality Performed Procedure Step (PS3.4 F.7), as created and last set."""

    sop_instance_uid = peewee.TextField(unique=True)
    state = peewee.TextField(index=True)  # IN PROGRESS, COMPLETED, DISCONTINUED
    calling_ae = peewee.TextField(default="")
    created_at = peewee.DoubleField()
    updated_at = peewee.DoubleField()
    version = peewee.IntegerField(default=1)  # bumped by every N-SET: no lost update
    dataset = peewee.TextField()  # the step's attributes as DICOM JSON


class PerformedStepInstance(BaseModel):
    """An instance a performed step lists (its Performed Series Sequence)."""

    step = peewee.ForeignKeyField(PerformedStep, backref="instances", on_delete="CASCADE")
    series_instance_uid = peewee.TextField(default="")
    sop_class_uid = peewee.TextField(default="")
    sop_instance_uid = peewee.TextField(index=True)


class CommitmentRequest(BaseModel):
    """A Storage Commitment request (PS3.4 J.3), kept until its report is delivered."""

    transaction_uid = peewee.TextField(index=True)
    calling_ae = peewee.TextField()
    received_at = peewee.DoubleField()
    state = peewee.TextField(index=True)  # pending, reported, expired
    references = peewee.TextField()  # JSON [[SOP Class UID, SOP Instance UID], ...]
    result = peewee.TextField(default="")  # JSON [[class, instance, failure reason], ...]
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DoubleField(index=True)  # due then, or claimed until then
    owner = peewee.TextField(default="")  # host:pid:start of the process holding the claim
    reported_at = peewee.DoubleField(null=True)
    last_error = peewee.TextField(default="")


MODALITY_MODELS: tuple[type[BaseModel], ...] = (WorklistItem, PerformedStep,
                                                 PerformedStepInstance, CommitmentRequest)
MODELS: tuple[type[BaseModel], ...] = (SchemaInfo, Patient, Study, Series, Instance,
                                       *MODALITY_MODELS)


def open_database(url: str) -> peewee.Database:
    """Connect to `sqlite:///path` or `postgresql://...` and bind the models to it."""
    if url.startswith("sqlite"):
        # A pool: a thread's connection (an association's) is kept for the next thread instead
        # of closed, so an association does not open, configure and close its own (~0.3 ms of
        # each findscu run). Handed between threads, one at a time: check_same_thread off; no
        # limit, as before (one per thread at most); a transaction left open is rolled back.
        database = db_url.connect(
            url.replace("sqlite://", "sqlite+pool://", 1),
            max_connections=None,
            check_same_thread=False,
            timeout=60,  # waiting for a pooled connection (never, without a limit)
            pragmas={
                "busy_timeout": 60000,  # first: writers wait rather than fail, 60 s
                "journal_mode": "wal",
                # FULL: a commit is on disk before we answer Success, power loss included.
                "synchronous": "full",
                "foreign_keys": 1,
                "cache_size": -64000,
                # LIKE must honour case, as DICOM matching does for every VR but PN.
                "case_sensitive_like": 1,
            },
        )
        # Any-value LIKE on multi-valued columns (index/query.py), in every connection opened.
        database.register_function(any_value_matches, "dicom_any_value_like", 2,
                                   deterministic=True)
    else:
        url = url.replace("postgresql://", "postgresql+pool://", 1).replace(
            "postgres://", "postgresql+pool://", 1
        )
        # Connections return to the pool after each operation; a burst beyond the pool waits
        # (timeout, seconds) instead of failing, and the PostgreSQL server's own limit holds.
        database = db_url.connect(url, max_connections=16, stale_timeout=300, timeout=60)
    database_proxy.initialize(database)
    return database


# Version N's migration takes a database at version N-1 to N; each runs in one transaction.
# A release that changes the models bumps SCHEMA_VERSION and adds its step here.
def _add_text_columns(table: str, columns: tuple[str, ...]) -> Callable[[peewee.Database], None]:
    """A migration step adding text columns ('' in existing rows: unknown, until reindexed)."""
    def step(database: peewee.Database) -> None:
        for column in columns:
            database.execute_sql(
                f'ALTER TABLE "{table}" ADD COLUMN "{column}" TEXT NOT NULL DEFAULT \'\'')
    return step


# Columns people search by prefix ("DOE*", "A123*"). On PostgreSQL a plain B-tree serves
# LIKE 'x%' only under the C collation, so these get a text_pattern_ops index as well.
# (SQLite's plain index serves a prefix LIKE because case_sensitive_like is on.)
PATTERN_INDEXED = {
    "patient": ("patient_id", "patient_name", "patient_name_folded"),
    "study": ("accession_number", "study_id", "referring_physician_name_folded"),
}


def create_pattern_indexes(database: peewee.Database) -> None:
    """The text_pattern_ops indexes of PATTERN_INDEXED, on PostgreSQL; nothing on SQLite."""
    if is_sqlite(database):
        return
    for table, columns in PATTERN_INDEXED.items():
        for column in columns:
            database.execute_sql(
                f'CREATE INDEX IF NOT EXISTS "{table}_{column}_pattern" '
                f'ON "{table}" ("{column}" text_pattern_ops)'
            )


MIGRATIONS: dict[int, Callable[[peewee.Database], None]] = {
    # C-FIND keys of PS3.4 Table C.6-4 and the source of Anatomic Regions in Study.
    2: _add_text_columns("instance", ("related_general_sop_class_uid",
                                      "specimen_description_sequence",
                                      "anatomic_region_sequence")),
    # Prefix wildcards on names, IDs and accession numbers use an index on PostgreSQL.
    3: create_pattern_indexes,
    # Modality worklist, MPPS and storage commitment.
    4: lambda database: database.create_tables(MODALITY_MODELS, safe=True),
}


class SchemaMismatch(RuntimeError):
    """The database's schema version is not the one this release works with."""


def schema_version(database: peewee.Database) -> int | None:
    """The version recorded in the database, or None for an empty database."""
    if not database.table_exists(SchemaInfo._meta.table_name):
        return None
    row = SchemaInfo.select(SchemaInfo.version).order_by(SchemaInfo.version.desc()).first()
    return int(row.version) if row else None


def create_schema(database: peewee.Database) -> None:
    """Create the schema in an empty database; refuse a database at another version."""
    with database.atomic():
        version = schema_version(database)
        if version is None:
            database.create_tables(MODELS, safe=True)
            create_pattern_indexes(database)
            SchemaInfo.create(version=SCHEMA_VERSION)
            return
    if version < SCHEMA_VERSION:
        raise SchemaMismatch(
            f"index schema is version {version}, this release needs {SCHEMA_VERSION}: "
            "run `pacs db upgrade` (with every server stopped)"
        )
    if version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"index schema is version {version}, newer than this release ({SCHEMA_VERSION})"
        )


def upgrade_schema(database: peewee.Database) -> list[int]:
    """Apply every pending migration in order; the versions applied."""
    applied = []
    current = schema_version(database)
    if current is None:
        create_schema(database)
        return applied
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with database.atomic():
            MIGRATIONS[version](database)
            SchemaInfo.update(version=version).execute()
        applied.append(version)
    return applied


def is_sqlite(database: peewee.Database) -> bool:
    """Whether the database is SQLite (whose write transactions need BEGIN IMMEDIATE)."""
    return isinstance(database, peewee.SqliteDatabase)
