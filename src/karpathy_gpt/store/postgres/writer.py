"""Publishing a built index as a new version, and dropping old versions.

A version is written into its own partitions of ``kgpt_chunks`` and ``kgpt_postings`` (binary
``COPY ... FREEZE``), indexed and attached in one transaction, then made active by a one-row
update in the next. One writer at a time, across processes and machines: a session advisory
lock, held by ``PostgresStore.writer``.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ...index.built import BuiltIndex
from ...index.postings import Postings
from ..base import CANDIDATES, DatabaseError
from .queries import SEARCH_FORMAT

log = logging.getLogger(__name__)

# Below PostgreSQL's deadlock_timeout (1 s by default): a prune that would close a cycle with
# a query gives up before the deadlock detector would make either of them fail.
PRUNE_LOCK_TIMEOUT = "500ms"
KEEP_VERSIONS = 2


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


# What to do when the database refuses a publish, by SQLSTATE class or code.
REFUSALS = {
    "25006": "the database is read-only (a standby, or default_transaction_read_only): run "
    "`karpathy-gpt ingest` against the primary",
    "53": "the database server is out of a resource (disk, memory or connections): free space "
    "on its disk (or its tablespace), then run `karpathy-gpt ingest` again",
    "57014": "a statement ran past the server's statement_timeout: raise it for the ingest's "
    "role (ALTER ROLE ... SET statement_timeout), then run `karpathy-gpt ingest` again",
    "42501": "the database role may not create tables there: grant it CREATE, or publish as "
    "the owner of the kgpt_* tables",
}


def refusal(exc: psycopg.Error) -> str:
    """One line for a publish the database refused: what it said, and what to do."""
    state = exc.sqlstate or ""
    advice = REFUSALS.get(state) or REFUSALS.get(state[:2]) or "see the database server's log"
    said = (exc.diag.message_primary if exc.diag else None) or str(exc).splitlines()[0]
    return (
        f"publishing the index failed: the database refused it ({said}); the previous version "
        f"stays active; {advice}"
    )


class Writer:
    """Publishes corpus versions; only exists while the ingest lock is held."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn  # autocommit, holding the ingest lock

    def publish(self, key: str, meta: dict, index: BuiltIndex) -> int:
        """Write ``index`` as a new version in one transaction, then make it the active one.

        A database that refuses the writes (full, read-only, a statement timeout) is a
        DatabaseError saying so; the transaction is rolled back, so the previous version stays
        the active one."""
        try:
            return self._publish(key, meta, index)
        except psycopg.Error as exc:
            raise DatabaseError(refusal(exc)) from exc

    def _publish(self, key: str, meta: dict, index: BuiltIndex) -> int:
        started = time.perf_counter()
        steps: dict[str, float] = {}

        @contextmanager
        def step(name: str) -> Iterator[None]:
            begun = time.perf_counter()
            yield
            steps[name] = time.perf_counter() - begun

        postings = index.postings()
        meta = {**meta, "search_format": SEARCH_FORMAT, "floor_depth": CANDIDATES}
        meta["names"] = sorted(index.names)  # for the coverage decision (text.names_in)
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

    def _copy_chunks(self, table: sql.Identifier, version_id: int, index: BuiltIndex) -> None:
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
