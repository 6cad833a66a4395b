"""``PostgresStore``: the connection pool, the reads, and the way in for a writer.

API processes hold only a connection pool: any number of workers and machines share one
database. Every read runs at REPEATABLE READ (see ``_configure``), and a connection lost
mid-query is retried once on a new one.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from ...chunking import Chunk
from ...config import Settings
from ...embedding import DIMENSIONS
from ...index.built import BuiltIndex
from ..base import CANDIDATES, Candidate, Candidates, DatabaseError
from .queries import (
    CANDIDATES_OF,
    DENSE,
    DOCUMENT_FREQUENCY,
    HNSW_EF_SEARCH,
    LEXICAL,
    NAMES,
    SEARCH_FORMAT,
    SEARCH_WORK_MEM,
    UNRECORDED_FLOOR_DEPTH,
    search_params,
)
from .schema import INGEST_LOCK, create_schema
from .writer import Writer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Version:
    id: int
    index_key: str
    chunks: int
    meta: dict


class PostgresStore:
    """Chunks and vectors in PostgreSQL + pgvector; search reads whichever version is active."""

    fixed = False  # another process may publish a new version under a running server

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 30.0):
        self.url = url
        self._writer: Writer | None = None  # while this process holds the ingest lock
        # The active version's document frequencies and cased words, read once per version; one
        # tuple replaced whole, so a search in another thread never pairs two versions.
        self._lexicon: tuple[int, dict[str, int], frozenset[str]] | None = None
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=int(timeout)) as conn:
                create_schema(conn)
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

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresStore:
        if not settings.database_url:
            raise DatabaseError("KGPT_DATABASE_URL is not set")
        return cls(
            settings.database_url,
            pool_size=settings.database_pool_size,
            timeout=settings.database_timeout,
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

    def candidates(self, query: str, vector: np.ndarray, depth: int = CANDIDATES) -> Candidates:
        rows = self._read(CANDIDATES_OF, search_params(query, vector, depth))
        items = []
        for row in rows:
            text, meta, vectors, similarity, lexical, dense, ranked = row[:7]
            after, after_meta, tail = row[7:10]
            following = Chunk(text=after, metadata=after_meta) if after is not None else None
            items.append(
                Candidate(
                    chunk=Chunk(text=text, metadata=meta),
                    similarity=float(similarity),
                    lexical=float(lexical),
                    dense_rank=dense or depth + 1,
                    lexical_rank=ranked or depth + 1,
                    sentence_vectors=_matrix(vectors),
                    following=following,
                    following_vectors=_matrix(tail) if following is not None else None,
                )
            )
        if not rows:
            return Candidates(items, 0, {})
        version, chunks = rows[0][10], rows[0][11]
        lexicon = self._lexicon
        if lexicon is None or lexicon[0] != version:
            params = {"version": version}
            df = dict(self._read(DOCUMENT_FREQUENCY, params))
            lexicon = (version, df, frozenset(self._read(NAMES, params)[0][0] or ()))
            self._lexicon = lexicon
        return Candidates(items, chunks, lexicon[1], lexicon[2])

    def lexical_top(self, query: str) -> list[tuple[int, float]]:
        """The active version's BM25 top-N, best first: (chunk ordinal, score) pairs."""
        params = search_params(query, np.zeros(DIMENSIONS, dtype=np.float32))
        return [(ordinal, score) for ordinal, score in self._read(LEXICAL, params)]

    def hnsw_top(self, vector: np.ndarray) -> list[int]:
        """The active version's dense top-N (HNSW), nearest first: chunk ordinals."""
        return [row[0] for row in self._read(DENSE, search_params("", vector))]

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
                yield Writer(conn)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (INGEST_LOCK,))
                conn.autocommit = False

    @contextmanager
    def lock(self) -> Iterator[Writer]:
        """``writer``, for the Store protocol: ``publish`` inside it uses its lock."""
        with self.writer() as writer:
            self._writer = writer
            try:
                yield writer
            finally:
                self._writer = None

    def publish(self, key: str, meta: dict, index: BuiltIndex) -> None:
        if self._writer is not None:
            self._writer.publish(key, meta, index)
            return
        with self.writer() as writer:
            writer.publish(key, meta, index)

    def use_latest(self) -> bool:
        """The active version is always the one in use: whether there is one."""
        return self.active_version() is not None

    def close(self) -> None:
        self.pool.close()


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
