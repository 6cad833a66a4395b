"""The PostgreSQL store: hybrid search in one query, versions swapped atomically.

Schema (created with ``IF NOT EXISTS``; ``kgpt_schema_version`` records which one is in place,
``MIGRATIONS`` brings an older one up to date)::

    kgpt_versions   one row per ingested corpus version: its index key, metadata, chunk count
    kgpt_active     one row: the version every query reads
    kgpt_chunks     partitioned by version: text, metadata (JSONB), embedding vector(384)
                    (HNSW, cosine), the sentence vectors
    kgpt_postings   partitioned by version: BM25's inverted index, one row per (term, chunk)
                    with the chunk's BM25 weight for the term, keyed (version, term, chunk)
    kgpt_lexemes    per version and term: its id in kgpt_postings, how many chunks hold it, and
                    the two weight bounds MaxScore needs (see store.postings)

Each version is written into its own partitions, indexed and attached in one transaction, then
made active by a one-row update in the next: a query reads ``kgpt_active`` and the partitions in
one statement, one snapshot, so it sees the old index or the new one, never half of one. A
partition per version also gives each version its own HNSW graph, so a query never walks (and
filters out) another version's rows.
Old versions are dropped whole, the newest ``KEEP_VERSIONS`` kept.

API processes hold only a connection pool: any number of workers and machines share one database.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
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
from psycopg_pool import ConnectionPool, PoolTimeout

from ..chunking import Chunk
from ..embedding import DIMENSIONS
from ..lexical import tokenize
from .base import DENSE_WEIGHT, LEXICAL_WEIGHT, RRF_K, DatabaseError, Hit
from .local import CANDIDATES, LocalStore
from .postings import Postings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
# Below PostgreSQL's deadlock_timeout (1 s by default): a prune that would close a cycle with
# a query gives up before the deadlock detector would make either of them fail.
PRUNE_LOCK_TIMEOUT = "500ms"
KEEP_VERSIONS = 2
INGEST_LOCK = 0x6B677074  # pg_advisory_lock key ("kgpt"): one writer at a time
HNSW_EF_SEARCH = 100  # > CANDIDATES, so the dense top-N is (near) exact
# How a version's full text is stored, recorded in its meta: 3 = kgpt_postings, the embedded
# store's own BM25 weights (2 was a tsvector of its tokens, scored in SQL at query time; 1 a
# tsvector from PostgreSQL's own parser and stemmer). An older version is published again by the
# next ingest; until then it is searched by its vectors alone (it has no postings).
SEARCH_FORMAT = 3
# The best partial scores scored exactly first, to raise the bar the other chunks must clear.
LEADERS = 2 * CANDIDATES
# Each term's floor weight is its CANDIDATES-th largest (Postings.floor_weights): a version whose
# floors were taken at another depth would prune wrongly, so it is published again. Versions
# written before the depth was recorded took it at 50.
UNRECORDED_FLOOR_DEPTH = 50
# Memory a search may hash its partial scores in (~100 bytes a chunk holding an essential term,
# so ~300k chunks) before it spills them to disk; taken only when a query needs it.
SEARCH_WORK_MEM = "32MB"

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

# Dense top-N and BM25 top-N of the active version, fused by weighted reciprocal rank (as
# store.base.reciprocal_rank_fusion: weight / (60 + rank), ranks from 1, the dense ranking
# weighing DENSE_WEIGHT, the BM25 one LEXICAL_WEIGHT), ties broken by similarity.
#
# BM25 is the embedded store's, exactly: kgpt_postings holds the weights bm25s computed at ingest
# (store.postings), the question arrives as lexical.tokenize's tokens with their counts, and a
# chunk's score is the sum of its postings' weights for those terms. The top N is found without
# summing every posting of common words ("we", "what": most chunks hold them), by MaxScore:
#   1. A term's floor (its N-th largest weight) is a score N chunks reach, so the N-th best score
#      is at least the largest floor. The weakest terms whose largest weights together stay below
#      it are "optional": a chunk holding only those cannot make the top N.
#   2. The other ("essential") terms' postings are summed: every chunk that can make the top N,
#      with a partial score.
#   3. The LEADERS best partial scores are completed with the optional terms' weights (looked up
#      by (term, chunk)); their N-th best exact score is again a score N chunks reach.
#   4. The other chunks whose partial score plus all optional terms' largest weights reaches that
#      bar are completed too; the rest cannot make the top N. The top N of the exact scores is
#      BM25's top N.
RANKINGS = """
WITH active AS MATERIALIZED (
    SELECT version_id AS id FROM kgpt_active
),
terms AS MATERIALIZED (
    SELECT l.term, q.repeats, q.repeats * l.max_weight::float8 AS bound,
           q.repeats * l.floor_weight::float8 AS floor
    FROM unnest(%(lexemes)s::text[], %(repeats)s::int[]) AS q (lexeme, repeats)
    JOIN kgpt_lexemes l ON l.version_id = (SELECT id FROM active) AND l.lexeme = q.lexeme
),
split AS MATERIALIZED (
    SELECT term, repeats, bound,
           sum(bound) OVER (ORDER BY bound, term) < (SELECT max(floor) FROM terms) AS optional
    FROM terms
),
partial AS MATERIALIZED (
    SELECT p.ordinal, sum(s.repeats * p.weight::float8) AS score
    FROM split s
    JOIN kgpt_postings p ON p.version_id = (SELECT id FROM active) AND p.term = s.term
    WHERE NOT s.optional
    GROUP BY p.ordinal
),
leaders AS MATERIALIZED (
    SELECT l.ordinal, l.score + o.score AS score
    FROM (SELECT ordinal, score FROM partial ORDER BY score DESC, ordinal LIMIT %(leaders)s) l,
         LATERAL (
             SELECT coalesce(sum(s.repeats * p.weight::float8), 0) AS score
             FROM split s
             JOIN kgpt_postings p ON p.version_id = (SELECT id FROM active) AND p.term = s.term
                                 AND p.ordinal = l.ordinal
             WHERE s.optional
         ) o
),
contenders AS (
    SELECT c.ordinal, c.score + o.score AS score
    FROM partial c,
         LATERAL (
             SELECT coalesce(sum(s.repeats * p.weight::float8), 0) AS score
             FROM split s
             JOIN kgpt_postings p ON p.version_id = (SELECT id FROM active) AND p.term = s.term
                                 AND p.ordinal = c.ordinal
             WHERE s.optional
         ) o
    WHERE c.score + (SELECT coalesce(sum(bound), 0) FROM split WHERE optional) >= (
              SELECT score FROM leaders ORDER BY score DESC OFFSET %(candidates)s - 1 LIMIT 1
          )
      AND c.ordinal NOT IN (SELECT ordinal FROM leaders)
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
    SELECT ordinal, score, row_number() OVER (ORDER BY score DESC, ordinal) AS rank,
           %(lexical_weight)s::float8 AS weight
    FROM (
        SELECT ordinal, score FROM leaders
        UNION ALL
        SELECT ordinal, score FROM contenders
        ORDER BY score DESC, ordinal
        LIMIT %(candidates)s
    ) best
)
"""
SEARCH = (
    RANKINGS
    + """,
fused AS (
    SELECT ordinal, sum(weight / (%(rrf_k)s + rank)) AS score
    FROM (
        SELECT ordinal, rank, weight FROM dense
        UNION ALL
        SELECT ordinal, rank, weight FROM lexical
    ) ranks
    GROUP BY ordinal
)
SELECT c.text, c.metadata, c.sentence_vectors, f.score::float8,
       1 - (c.embedding <=> %(vector)s) AS similarity
FROM fused f
JOIN kgpt_chunks c ON c.version_id = (SELECT id FROM active) AND c.ordinal = f.ordinal
ORDER BY f.score DESC, similarity DESC
LIMIT %(k)s
"""
)
# Each ranking alone (a WITH query nobody reads is not run).
LEXICAL = RANKINGS + "SELECT ordinal, score FROM lexical ORDER BY rank"
DENSE = RANKINGS + "SELECT ordinal FROM dense ORDER BY rank"


def search_params(query: str, vector: np.ndarray, k: int) -> dict:
    """SEARCH's parameters for ``query`` (already normalised) and its embedding."""
    terms = Counter(tokenize([query])[0])
    return {
        "lexemes": list(terms),
        "repeats": list(terms.values()),
        "vector": np.asarray(vector, dtype=np.float32),
        "candidates": CANDIDATES,
        "leaders": LEADERS,
        "rrf_k": RRF_K,
        "dense_weight": DENSE_WEIGHT,
        "lexical_weight": LEXICAL_WEIGHT,
        "k": k,
    }


def binary_copy(columns: list[np.ndarray], rows_per_block: int = 65536) -> Iterator[bytes]:
    """Fixed-width numpy columns as PostgreSQL's binary COPY stream, a block at a time.

    Signature and header, then per row a field count and each field as its length and its
    big-endian value, then the trailer: int64 columns load into bigint, int32 into integer,
    float32 into real. Millions of postings load in a second this way, not one Python call each.
    """
    fields = [("count", ">i2")]
    for n, column in enumerate(columns):
        fields += [(f"length{n}", ">i4"), (f"value{n}", column.dtype.newbyteorder(">"))]
    rows = len(columns[0]) if columns else 0
    yield b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    for start in range(0, rows, rows_per_block):
        block = np.empty(min(rows_per_block, rows - start), dtype=fields)
        block["count"] = len(columns)
        for n, column in enumerate(columns):
            block[f"length{n}"] = column.dtype.itemsize
            block[f"value{n}"] = column[start : start + len(block)]
        yield block.tobytes()
    yield struct.pack(">h", -1)


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
            and version.meta.get("floor_depth", UNRECORDED_FLOOR_DEPTH) == CANDIDATES
        )

    def active_version(self) -> Version | None:
        row = self._read(
            "SELECT v.id, v.index_key, v.chunks, v.meta FROM kgpt_active a "
            "JOIN kgpt_versions v ON v.id = a.version_id"
        )
        return Version(*row[0]) if row else None

    def search(self, query: str, vector: np.ndarray, k: int) -> list[Hit]:
        rows = self._read(SEARCH, search_params(query, vector, k))
        return [
            Hit(
                chunk=Chunk(text=text, metadata=metadata),
                score=score,
                similarity=float(similarity),
                sentence_vectors=_matrix(sentence_vectors),
            )
            for text, metadata, sentence_vectors, score, similarity in rows
        ]

    def lexical_top(self, query: str) -> list[tuple[int, float]]:
        """The active version's BM25 top-N, best first: (chunk ordinal, score) pairs."""
        params = search_params(query, np.zeros(DIMENSIONS, dtype=np.float32), 1)
        return [(ordinal, score) for ordinal, score in self._read(LEXICAL, params)]

    def hnsw_top(self, vector: np.ndarray) -> list[int]:
        """The active version's dense top-N (HNSW), nearest first: chunk ordinals."""
        return [row[0] for row in self._read(DENSE, search_params("", vector, 1))]

    def _read(self, query: str, params: dict | None = None) -> list[tuple]:
        """Run a read-only statement; a connection lost mid-query is retried once on a new one
        (not a wait for a connection that timed out)."""
        for attempt in (1, 2):
            try:
                # One snapshot from parse to execution: the partitions planned for always
                # include the version the statement reads (see _configure).
                with self.pool.connection() as conn, conn.cursor(binary=True) as cur:
                    cur.execute(query, params)
                    return cur.fetchall()
            except psycopg.OperationalError as exc:
                # PoolTimeout: no connection within KGPT_DATABASE_TIMEOUT; waiting again doubles it.
                if attempt == 2 or isinstance(exc, PoolTimeout):
                    raise DatabaseError(
                        f"query failed on {redact(self.url)}: {exc}; is the database up?"
                    ) from exc
                log.warning("query failed (%s); retrying once on a new connection", exc)
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
        """Write ``index`` as a new version in one transaction, then make it the active one."""
        started = time.perf_counter()
        steps: dict[str, float] = {}

        @contextmanager
        def step(name: str) -> Iterator[None]:
            begun = time.perf_counter()
            yield
            steps[name] = time.perf_counter() - begun

        postings = Postings.from_bm25(index.bm25)
        meta = {**meta, "search_format": SEARCH_FORMAT, "floor_depth": CANDIDATES}
        with self.conn.transaction():
            version_id = self.conn.execute(
                "INSERT INTO kgpt_versions (index_key, meta, chunks) VALUES (%s, %s, %s) "
                "RETURNING id",
                (key, Jsonb(meta), len(index)),
            ).fetchone()[0]
            partitions = {
                parent: sql.Identifier(f"{parent}_v{version_id}")
                for parent in ("kgpt_chunks", "kgpt_postings")
            }
            for parent, table in partitions.items():
                self.conn.execute(
                    sql.SQL(
                        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                        "INCLUDING STORAGE, CHECK (version_id = {}))"
                    ).format(table, sql.Identifier(parent), sql.Literal(version_id))
                )
            with step("chunks"):
                self._copy_chunks(partitions["kgpt_chunks"], version_id, index)
            with step("postings"):
                self._copy_postings(partitions["kgpt_postings"], version_id, postings)
            # Indexes built after the load (faster than row by row); identical to the parents',
            # so ATTACH adopts them instead of building new ones.
            self.conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            with step("hnsw"):
                self.conn.execute(
                    sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)").format(
                        partitions["kgpt_chunks"]
                    )
                )
            with step("keys"):
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (version_id, ordinal)").format(
                        partitions["kgpt_chunks"]
                    )
                )
                self.conn.execute(
                    sql.SQL(
                        "ALTER TABLE {} ADD PRIMARY KEY (version_id, term, ordinal) "
                        "INCLUDE (weight)"
                    ).format(partitions["kgpt_postings"])
                )
            with step("attach"):
                for parent, table in partitions.items():
                    self.conn.execute(
                        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
                            sql.Identifier(parent), table, sql.Literal(version_id)
                        )
                    )
            with step("analyze"):
                for table in [*partitions.values(), sql.Identifier("kgpt_lexemes")]:
                    self.conn.execute(sql.SQL("ANALYZE {}").format(table))
        # Made active in a second transaction. A commit becomes visible to new snapshots a moment
        # before its catalog invalidations reach other sessions: had the attach and the switch
        # shared a commit, a query in that moment could read the new version id with a plan
        # that has no partition for it, and find nothing (seen in the atomic re-ingest test).
        # Committed first, the attach is known everywhere before any snapshot can see the switch.
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO kgpt_active (singleton, version_id) VALUES (true, %s) "
                "ON CONFLICT (singleton) DO UPDATE SET version_id = excluded.version_id",
                (version_id,),
            )
        log.info(
            "published version %d (%s, %d chunks, %d postings) in %.1fs (%s)",
            version_id,
            key,
            len(index),
            len(postings),
            time.perf_counter() - started,
            ", ".join(f"{name} {seconds:.1f}s" for name, seconds in steps.items()),
        )
        self.prune()
        return version_id

    def _copy_chunks(self, table: sql.Identifier, version_id: int, index: LocalStore) -> None:
        """The version's chunks, loaded FREEZE like its postings.

        FREEZE (allowed into a table made in the same transaction) writes rows frozen and pages
        all-visible, so the first queries neither set hint bits nor visit the heap in an
        index-only scan. No older snapshot sees the rows early: it reads the version id it saw
        in kgpt_active, and the new partitions hold only the new id.
        """
        with self.conn.cursor().copy(
            sql.SQL(
                "COPY {} (version_id, ordinal, text, metadata, embedding, sentence_vectors) "
                "FROM STDIN WITH (FORMAT BINARY, FREEZE)"
            ).format(table)
        ) as copy:
            copy.set_types(["int8", "int4", "text", "jsonb", "vector", "vector[]"])
            offsets = index.sentence_offsets
            for n, chunk in enumerate(index.chunks):
                copy.write_row(
                    [
                        version_id,
                        n,
                        chunk.text,
                        chunk.metadata,
                        index.embeddings[n],
                        list(index.sentence_vectors[offsets[n] : offsets[n + 1]]),
                    ]
                )

    def _copy_postings(self, table: sql.Identifier, version_id: int, postings: Postings) -> None:
        """The version's postings, and per term its id, chunk count and MaxScore bounds."""
        with self.conn.cursor().copy(
            sql.SQL(
                "COPY {} (version_id, term, ordinal, weight) "
                "FROM STDIN WITH (FORMAT BINARY, FREEZE)"
            ).format(table)
        ) as copy:
            columns = [
                np.full(len(postings), version_id, dtype=np.int64),
                postings.terms(),
                postings.chunks,
                postings.weights,
            ]
            for block in binary_copy(columns):
                copy.write(block)
        with self.conn.cursor().copy(
            "COPY kgpt_lexemes (version_id, lexeme, term, chunks, max_weight, floor_weight) "
            "FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "int4", "int4", "float4", "float4"])
            counts = postings.chunk_counts()
            maxima = postings.max_weights()
            floors = postings.floor_weights(CANDIDATES)
            for term, lexeme in enumerate(postings.lexemes):
                copy.write_row(
                    [
                        version_id,
                        lexeme,
                        term,
                        int(counts[term]),
                        float(maxima[term]),
                        float(floors[term]),
                    ]
                )

    def prune(self, keep: int = KEEP_VERSIONS, lock_timeout: str = PRUNE_LOCK_TIMEOUT) -> list[int]:
        """Drop all but the newest ``keep`` versions (the active one always stays).

        Dropping a partition takes its parent's exclusive lock. Queries usually lock
        kgpt_postings before kgpt_chunks (the order they name them; a cached plan can lock its
        relations in another order), so the locks are taken in that order up front, and waited
        for less than PostgreSQL's deadlock_timeout: dropping one table and then waiting for
        the other deadlocked with a query holding the second and waiting for the first.
        Pruning is housekeeping: if the locks don't come within ``lock_timeout``, it is left to
        the next publish.
        """
        try:
            with self.conn.transaction():
                old = [
                    row[0]
                    for row in self.conn.execute(
                        "SELECT id FROM kgpt_versions "
                        "WHERE id <> (SELECT version_id FROM kgpt_active) "
                        "ORDER BY id DESC OFFSET %s",
                        (keep - 1,),
                    )
                ]
                if not old:
                    return []
                self.conn.execute(
                    sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout))
                )
                self.conn.execute("LOCK TABLE kgpt_postings, kgpt_chunks IN ACCESS EXCLUSIVE MODE")
                for version_id in old:
                    for table in (f"kgpt_postings_v{version_id}", f"kgpt_chunks_v{version_id}"):
                        self.conn.execute(
                            sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table))
                        )
                    self.conn.execute("DELETE FROM kgpt_versions WHERE id = %s", (version_id,))
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
            log.warning("old versions not pruned yet (%s); the next publish tries again", exc)
            return []
        log.info("pruned versions %s", old)
        return old


def _create_schema(conn: psycopg.Connection) -> None:
    """Create the schema, or bring an older one up to date; a read replica only checks it."""
    newest = _schema_version(conn)
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
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK + 1,))
            newest = _schema_version(conn)
            if newest is None:
                params = {"version": SCHEMA_VERSION}
                for statement in SCHEMA:
                    conn.execute(statement, params if "%(" in statement else None)
            else:
                for version in range(newest + 1, SCHEMA_VERSION + 1):
                    log.warning("upgrading the database schema to version %d", version)
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
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
    conn.execute(f"SET work_mem = '{SEARCH_WORK_MEM}'")
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
