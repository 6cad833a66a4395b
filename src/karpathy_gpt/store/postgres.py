"""The PostgreSQL store: hybrid search in one query, versions swapped atomically.

Schema (created with ``IF NOT EXISTS``; ``kgpt_schema_version`` records which one is in place)::

    kgpt_versions   one row per ingested corpus version: its index key, metadata, chunk count
    kgpt_active     one row: the version every query reads
    kgpt_chunks     partitioned by version: text, metadata (JSONB), embedding vector(384)
                    (HNSW, cosine), search tsvector (the BM25 tokens, GIN), the sentence vectors

Each version is written into its own partition, indexed, then attached and made active in the
same transaction: a query reads ``kgpt_active`` and the partition in one statement, one snapshot,
so it sees the old index or the new one, never half of one. A partition per version also gives
each version its own HNSW graph, so a query never walks (and filters out) another version's rows.
Old versions are dropped whole, the newest ``KEEP_VERSIONS`` kept.

API processes hold only a connection pool: any number of workers and machines share one database.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ..chunking import Chunk
from ..embedding import DIMENSIONS
from ..lexical import tokenize
from ..text import normalise
from .base import DENSE_WEIGHT, LEXICAL_WEIGHT, RRF_K, DatabaseError, Hit
from .local import CANDIDATES, LocalStore

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KEEP_VERSIONS = 2
INGEST_LOCK = 0x6B677074  # pg_advisory_lock key ("kgpt"): one writer at a time
HNSW_EF_SEARCH = 100  # > CANDIDATES, so the dense top-N is (near) exact

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
        avg_length float8 NOT NULL DEFAULT 0,
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
        search tsvector NOT NULL,
        search_length integer NOT NULL,
        sentence_vectors vector({DIMENSIONS})[] NOT NULL,
        PRIMARY KEY (version_id, ordinal)) PARTITION BY LIST (version_id)""",
    """CREATE INDEX IF NOT EXISTS kgpt_chunks_embedding
        ON kgpt_chunks USING hnsw (embedding vector_cosine_ops)""",
    "CREATE INDEX IF NOT EXISTS kgpt_chunks_search ON kgpt_chunks USING gin (search)",
    """CREATE TABLE IF NOT EXISTS kgpt_lexemes (
        version_id bigint NOT NULL REFERENCES kgpt_versions (id) ON DELETE CASCADE,
        lexeme text NOT NULL,
        chunks integer NOT NULL,
        PRIMARY KEY (version_id, lexeme))""",
    "INSERT INTO kgpt_schema_version (version) VALUES (%(version)s) ON CONFLICT DO NOTHING",
]

# Dense top-N and full-text top-N of the active version, fused by weighted reciprocal rank (as
# store.base.reciprocal_rank_fusion: weight / (60 + rank), ranks from 1, the dense ranking
# weighing DENSE_WEIGHT, the full-text one LEXICAL_WEIGHT), ties broken by similarity.
# Full text is ranked by BM25 exactly as the embedded store ranks it (bm25s "lucene": k1 1.5,
# b 0.75, idf ln(1 + (N - df + 0.5) / (df + 0.5))), over the embedded store's own tokens: each
# chunk's tsvector is built from lexical.tokenize's output (see search_vector), and the question
# arrives tokenized the same way, so both stores score the same terms. The GIN index finds the
# chunks sharing any term with the question (an OR query, as BM25 scores any shared term);
# ts_filter(setweight(...)) keeps just those lexemes of a chunk to count them (tf); document
# frequencies and the average length were written at ingest.
SEARCH = """
WITH active AS MATERIALIZED (
    SELECT v.id, v.chunks, v.avg_length
    FROM kgpt_active a JOIN kgpt_versions v ON v.id = a.version_id
),
terms AS MATERIALIZED (
    SELECT q.lexeme, q.repeats,
           ln(1 + (active.chunks - l.chunks + 0.5) / (l.chunks + 0.5)) AS idf
    FROM active, unnest(%(lexemes)s::text[], %(repeats)s::int[]) AS q (lexeme, repeats)
    JOIN kgpt_lexemes l ON l.lexeme = q.lexeme
    WHERE l.version_id = active.id
),
words AS MATERIALIZED (
    SELECT array_agg(lexeme) AS lexemes, string_agg(
        '''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || '''', ' | '
    )::tsquery AS query
    FROM terms
),
dense AS (
    SELECT ordinal, row_number() OVER (ORDER BY distance) AS rank,
           %(dense_weight)s::float8 AS weight
    FROM (
        SELECT ordinal, embedding <=> %(vector)s AS distance
        FROM kgpt_chunks
        WHERE version_id = (SELECT id FROM active)
        ORDER BY embedding <=> %(vector)s
        LIMIT %(candidates)s
    ) nearest
),
lexical AS (
    SELECT ordinal, row_number() OVER (ORDER BY score DESC) AS rank,
           %(lexical_weight)s::float8 AS weight
    FROM (
        SELECT c.ordinal, sum(
            t.repeats * t.idf * m.tf
            / (m.tf + %(k1)s * (1 - %(b)s + %(b)s * c.search_length / active.avg_length))
        ) AS score
        FROM active, words, kgpt_chunks c,
             LATERAL (
                 SELECT lexeme, array_length(positions, 1) AS tf
                 FROM unnest(ts_filter(setweight(c.search, 'A', words.lexemes), '{a}'))
             ) m
        JOIN terms t ON t.lexeme = m.lexeme
        WHERE c.version_id = (SELECT id FROM active) AND c.search @@ words.query
        GROUP BY c.ordinal
        ORDER BY score DESC
        LIMIT %(candidates)s
    ) best
),
fused AS (
    SELECT ordinal, sum(weight / (%(rrf_k)s + rank)) AS score
    FROM (SELECT * FROM dense UNION ALL SELECT * FROM lexical) ranks
    GROUP BY ordinal
)
SELECT c.version_id, c.text, c.metadata, c.sentence_vectors, f.score::float8,
       1 - (c.embedding <=> %(vector)s) AS similarity
FROM fused f
JOIN kgpt_chunks c ON c.version_id = (SELECT id FROM active) AND c.ordinal = f.ordinal
ORDER BY f.score DESC, similarity DESC
LIMIT %(k)s
"""
BM25_K1 = 1.5
BM25_B = 0.75
# How kgpt_chunks.search is made, recorded in each version's meta: 2 = from the embedded store's
# tokens (1 was PostgreSQL's own English parser and stemmer, which stemmed and split differently).
SEARCH_FORMAT = 2


def search_vector(tokens: list[str]) -> str:
    """A tsvector literal holding exactly ``tokens`` (term -> positions), no parser involved."""
    positions: dict[str, list[int]] = {}
    for n, token in enumerate(tokens, start=1):
        positions.setdefault(token, []).append(min(n, 16383))  # tsvector's largest position
    return " ".join(
        "'{}':{}".format(token.replace("\\", "\\\\").replace("'", "''"), ",".join(map(str, at)))
        for token, at in positions.items()
    )


@dataclass(frozen=True)
class Version:
    id: int
    index_key: str
    chunks: int
    meta: dict


class PostgresStore:
    """Chunks and vectors in PostgreSQL + pgvector; search reads whichever version is active."""

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 30.0):
        self.url = url
        self.last_version: int | None = None  # the version the last search read
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=int(timeout)) as conn:
                _create_schema(conn)
        except psycopg.OperationalError as exc:
            raise DatabaseError(
                f"cannot connect to {redact(url)} ({exc}); check KGPT_DATABASE_URL and that the "
                "server is up"
            ) from exc
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            configure=_configure,
            # A connection the server dropped (restart, failover, idle kill) is replaced
            # before it is handed out, not discovered by the query that gets it.
            check=ConnectionPool.check_connection,
            name="kgpt",
            # Which process holds a connection, in pg_stat_activity.
            kwargs={"application_name": f"karpathy-gpt {socket.gethostname()} {os.getpid()}"},
            open=True,
        )

    # -- reading ------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Where the index lives, for messages (the URL without its password)."""
        version = self.active_version()
        return f"{redact(self.url)} (version {version.id if version else 'none'})"

    def __len__(self) -> int:
        version = self.active_version()
        return version.chunks if version else 0

    def holds(self, key: str) -> bool:
        """Whether the active version is ``key``, stored in the current search format."""
        version = self.active_version()
        return (
            version is not None
            and version.index_key == key
            and version.meta.get("search_format") == SEARCH_FORMAT
        )

    def active_version(self) -> Version | None:
        row = self._read(
            "SELECT v.id, v.index_key, v.chunks, v.meta FROM kgpt_active a "
            "JOIN kgpt_versions v ON v.id = a.version_id"
        )
        return Version(*row[0]) if row else None

    def search(self, query: str, vector: np.ndarray, k: int) -> list[Hit]:
        terms = Counter(tokenize([query])[0])
        rows = self._read(
            SEARCH,
            {
                "lexemes": list(terms),
                "repeats": list(terms.values()),
                "vector": np.asarray(vector, dtype=np.float32),
                "candidates": CANDIDATES,
                "rrf_k": RRF_K,
                "dense_weight": DENSE_WEIGHT,
                "lexical_weight": LEXICAL_WEIGHT,
                "k1": BM25_K1,
                "b": BM25_B,
                "k": k,
            },
        )
        if rows:
            self.last_version = rows[0][0]
        return [
            Hit(
                chunk=Chunk(text=text, metadata=metadata),
                score=score,
                similarity=float(similarity),
                sentence_vectors=_matrix(sentence_vectors),
            )
            for _, text, metadata, sentence_vectors, score, similarity in rows
        ]

    def _read(self, query: str, params: dict | None = None) -> list[tuple]:
        """Run a read-only statement; a connection lost mid-query is retried once on a new one."""
        for attempt in (1, 2):
            try:
                # One snapshot from parse to execution: the partitions planned for always
                # include the version the statement reads (see _configure).
                with self.pool.connection() as conn, conn.cursor(binary=True) as cur:
                    cur.execute(query, params)
                    return cur.fetchall()
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise DatabaseError(
                        f"query failed on {redact(self.url)}: {exc}; is the database up?"
                    ) from exc
                log.warning("database connection lost (%s); retrying once", exc)
        raise AssertionError("unreachable")

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[Writer]:
        """One ingest at a time across every process and machine (a session advisory lock)."""
        with self.pool.connection() as conn:
            conn.autocommit = True
            conn.execute("SELECT pg_advisory_lock(%s)", (INGEST_LOCK,))
            try:
                yield Writer(self, conn)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (INGEST_LOCK,))
                conn.autocommit = False

    def close(self) -> None:
        self.pool.close()


class Writer:
    """Publishes corpus versions; only exists while the ingest lock is held."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection):
        self.store = store
        self.conn = conn

    def active_key(self) -> str | None:
        version = self.store.active_version()
        return version.index_key if version else None

    def holds(self, key: str) -> bool:
        """Whether the active version is ``key``, stored in the current search format."""
        return self.store.holds(key)

    def publish(self, key: str, meta: dict, index: LocalStore) -> int:
        """Write ``index`` as a new version and make it the active one, in one transaction."""
        started = time.perf_counter()
        chunks = index.chunks
        offsets = index.sentence_offsets
        tokens = tokenize([normalise(chunk.text) for chunk in chunks])
        meta = {**meta, "search_format": SEARCH_FORMAT}
        with self.conn.transaction():
            version_id = self.conn.execute(
                "INSERT INTO kgpt_versions (index_key, meta, chunks) VALUES (%s, %s, %s) "
                "RETURNING id",
                (key, Jsonb(meta), len(chunks)),
            ).fetchone()[0]
            table = sql.Identifier(f"kgpt_chunks_v{version_id}")
            self.conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (LIKE kgpt_chunks INCLUDING DEFAULTS INCLUDING CONSTRAINTS, "
                    "CHECK (version_id = {}))"
                ).format(table, sql.Literal(version_id))
            )
            # Rows are staged with the BM25 tokens of their searchable (glossary-normalised)
            # text, as a tsvector literal, and their token count (BM25's document length); the
            # table keeps the text as transcribed.
            self.conn.execute(
                "CREATE TEMP TABLE kgpt_staging (ordinal integer, text text, metadata jsonb, "
                f"embedding vector({DIMENSIONS}), sentence_vectors vector({DIMENSIONS})[], "
                "search text, search_length integer) ON COMMIT DROP"
            )
            with self.conn.cursor().copy(
                "COPY kgpt_staging FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int4", "text", "jsonb", "vector", "vector[]", "text", "int4"])
                for n, chunk in enumerate(chunks):
                    copy.write_row(
                        [
                            n,
                            chunk.text,
                            chunk.metadata,
                            index.embeddings[n],
                            list(index.sentence_vectors[offsets[n] : offsets[n + 1]]),
                            search_vector(tokens[n]),
                            len(tokens[n]),
                        ]
                    )
            self.conn.execute(
                sql.SQL(
                    "INSERT INTO {} (version_id, ordinal, text, metadata, embedding, search, "
                    "search_length, sentence_vectors) "
                    "SELECT {}, ordinal, text, metadata, embedding, search::tsvector, "
                    "search_length, sentence_vectors FROM kgpt_staging"
                ).format(table, sql.Literal(version_id))
            )
            # What BM25 needs beside each chunk's counts: document frequencies, average length.
            self.conn.execute(
                sql.SQL(
                    "INSERT INTO kgpt_lexemes (version_id, lexeme, chunks) "
                    "SELECT {}, word, ndoc FROM ts_stat({})"
                ).format(
                    sql.Literal(version_id),
                    sql.Literal(f"SELECT search FROM kgpt_chunks_v{version_id}"),
                )
            )
            self.conn.execute(
                sql.SQL(
                    "UPDATE kgpt_versions SET avg_length = "
                    "(SELECT coalesce(avg(search_length), 0) FROM {}) WHERE id = %s"
                ).format(table),
                (version_id,),
            )
            # Indexes built after the load (faster than row by row); identical to the parent's,
            # so ATTACH adopts them instead of building new ones.
            self.conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            self.conn.execute(
                sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)").format(table)
            )
            self.conn.execute(sql.SQL("CREATE INDEX ON {} USING gin (search)").format(table))
            self.conn.execute(
                sql.SQL("ALTER TABLE kgpt_chunks ATTACH PARTITION {} FOR VALUES IN ({})").format(
                    table, sql.Literal(version_id)
                )
            )
            self.conn.execute(sql.SQL("ANALYZE {}").format(table))
            self.conn.execute(
                "INSERT INTO kgpt_active (singleton, version_id) VALUES (true, %s) "
                "ON CONFLICT (singleton) DO UPDATE SET version_id = excluded.version_id",
                (version_id,),
            )
        log.info(
            "published version %d (%s, %d chunks) in %.1fs",
            version_id,
            key,
            len(chunks),
            time.perf_counter() - started,
        )
        self.prune()
        return version_id

    def prune(self, keep: int = KEEP_VERSIONS) -> list[int]:
        """Drop all but the newest ``keep`` versions (the active one always stays)."""
        with self.conn.transaction():
            old = [
                row[0]
                for row in self.conn.execute(
                    "SELECT id FROM kgpt_versions WHERE id <> (SELECT version_id FROM kgpt_active) "
                    "ORDER BY id DESC OFFSET %s",
                    (keep - 1,),
                )
            ]
            for version_id in old:
                self.conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}").format(
                        sql.Identifier(f"kgpt_chunks_v{version_id}")
                    )
                )
                self.conn.execute("DELETE FROM kgpt_versions WHERE id = %s", (version_id,))
        if old:
            log.info("pruned versions %s", old)
        return old


def _create_schema(conn: psycopg.Connection) -> None:
    newest = _schema_version(conn)
    if newest is None:
        # Concurrent first starts would race on CREATE ... IF NOT EXISTS; the lock serialises them.
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK + 1,))
            params = {"version": SCHEMA_VERSION}
            for statement in SCHEMA:
                conn.execute(statement, params if "%(" in statement else None)
        newest = _schema_version(conn)
    if newest != SCHEMA_VERSION:
        raise DatabaseError(
            f"the database has schema version {newest}, this code expects {SCHEMA_VERSION}; "
            "run the matching release or a fresh database"
        )


def _schema_version(conn: psycopg.Connection) -> int | None:
    """The schema in place, read without writing (a read replica accepts no DDL at all)."""
    if conn.execute("SELECT to_regclass('kgpt_schema_version')").fetchone()[0] is None:
        return None
    return conn.execute("SELECT max(version) FROM kgpt_schema_version").fetchone()[0]


def _configure(conn: psycopg.Connection) -> None:
    register_vector(conn)
    # Under READ COMMITTED a statement may be planned before a version's partition is attached
    # and executed with a newer snapshot that already reads that version: no rows. Under
    # REPEATABLE READ the snapshot is taken before planning, so every version it can see was
    # attached before the plan was made.
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
    conn.commit()


def _matrix(vectors: list) -> np.ndarray:
    if not vectors:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.vstack([v.to_numpy() for v in vectors]).astype(np.float32, copy=False)


def redact(url: str) -> str:
    """``url`` without its password, fit for logs and error messages."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable KGPT_DATABASE_URL>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)
