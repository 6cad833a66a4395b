"""The tables, created once, and the numbered migrations that bring an older schema up to date.

``kgpt_schema_version`` records the schema in place. A read-only server (a standby) is only
checked: it cannot be created or migrated there, and says so.
"""

from __future__ import annotations

import logging

import psycopg

from ...embedding import DIMENSIONS
from ..base import DatabaseError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
INGEST_LOCK = 0x6B677074  # pg_advisory_lock key ("kgpt"): one writer at a time
SCHEMA_LOCK = INGEST_LOCK + 1  # one process creating or migrating the schema at a time

# Sentence vectors (~14 kB a chunk) are stored out of line uncompressed: float bits do not
# compress, and trying costs ingest time and every read.
SENTENCE_STORAGE = "ALTER TABLE kgpt_chunks ALTER COLUMN sentence_vectors SET STORAGE EXTERNAL"
POSTINGS = """CREATE TABLE IF NOT EXISTS kgpt_postings (
    version_id bigint NOT NULL,
    term integer NOT NULL,
    ordinal integer NOT NULL,
    weight real NOT NULL,
    PRIMARY KEY (version_id, term, ordinal) INCLUDE (weight)) PARTITION BY LIST (version_id)"""
SCHEMA = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    """CREATE TABLE IF NOT EXISTS kgpt_schema_version (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS kgpt_versions (
        id bigserial PRIMARY KEY,
        index_key text NOT NULL,
        meta jsonb NOT NULL,
        chunks integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS kgpt_active (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version_id bigint NOT NULL REFERENCES kgpt_versions (id))""",
    f"""CREATE TABLE IF NOT EXISTS kgpt_chunks (
        version_id bigint NOT NULL,
        ordinal integer NOT NULL,
        text text NOT NULL,
        metadata jsonb NOT NULL,
        embedding vector({DIMENSIONS}) NOT NULL,
        sentence_vectors vector({DIMENSIONS})[] NOT NULL,
        PRIMARY KEY (version_id, ordinal)) PARTITION BY LIST (version_id)""",
    SENTENCE_STORAGE,
    """CREATE INDEX IF NOT EXISTS kgpt_chunks_embedding
        ON kgpt_chunks USING hnsw (embedding vector_cosine_ops)""",
    """CREATE TABLE IF NOT EXISTS kgpt_lexemes (
        version_id bigint NOT NULL REFERENCES kgpt_versions (id) ON DELETE CASCADE,
        lexeme text NOT NULL,
        term integer NOT NULL,
        chunks integer NOT NULL,
        max_weight real NOT NULL,
        floor_weight real NOT NULL,
        PRIMARY KEY (version_id, lexeme))""",
    POSTINGS,
    "INSERT INTO kgpt_schema_version (version) VALUES (%(version)s) ON CONFLICT DO NOTHING",
]

# Statements that bring a database from the schema before each version to it. Additive only:
# processes of the older release keep serving the versions they wrote until they are replaced.
# The columns schema 1 searched (kgpt_chunks.search, search_length, kgpt_versions.avg_length)
# stay, unused and nullable; a new version is written in the new format at the next ingest.
MIGRATIONS = {
    2: [
        "ALTER TABLE kgpt_chunks ALTER COLUMN search DROP NOT NULL, "
        "ALTER COLUMN search_length DROP NOT NULL",
        "ALTER TABLE kgpt_lexemes ADD COLUMN IF NOT EXISTS term integer, "
        "ADD COLUMN IF NOT EXISTS max_weight real, ADD COLUMN IF NOT EXISTS floor_weight real",
        POSTINGS,
        SENTENCE_STORAGE,
        "INSERT INTO kgpt_schema_version (version) VALUES (2) ON CONFLICT DO NOTHING",
    ],
}


def create_schema(conn: psycopg.Connection) -> None:
    """Create the schema, or bring an older one up to date; a read replica only checks it."""
    newest = schema_version(conn)
    if newest is None or newest < SCHEMA_VERSION:
        if conn.execute("SHOW transaction_read_only").fetchone()[0] == "on":  # a standby
            found = "no schema" if newest is None else f"schema version {newest}"
            raise DatabaseError(
                f"the database has {found} and this code needs version {SCHEMA_VERSION}, but the "
                "server is read-only (a standby?): run `karpathy-gpt ingest` with this release "
                "against the primary once, which creates or upgrades it"
            )
        # Concurrent first starts would race on CREATE ... IF NOT EXISTS, and on migrations;
        # the lock serialises them, and the version is read again under it.
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            newest = schema_version(conn)
            if newest is None:
                params = {"version": SCHEMA_VERSION}
                for statement in SCHEMA:
                    conn.execute(statement, params if "%(" in statement else None)
            else:
                for version in range(newest + 1, SCHEMA_VERSION + 1):
                    log.warning("upgrading the database schema to version %d", version)
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
        newest = schema_version(conn)
    if newest != SCHEMA_VERSION:
        raise DatabaseError(
            f"the database has schema version {newest}, this code expects {SCHEMA_VERSION}; "
            "run the matching release or a fresh database"
        )


def schema_version(conn: psycopg.Connection) -> int | None:
    """The schema in place, read without writing (a read replica accepts no DDL at all)."""
    if conn.execute("SELECT to_regclass('kgpt_schema_version')").fetchone()[0] is None:
        return None
    return conn.execute("SELECT max(version) FROM kgpt_schema_version").fetchone()[0]
