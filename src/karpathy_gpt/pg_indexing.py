"""The corpus published to PostgreSQL: built once per index key, then shared by every process.

The index key is the embedded store's (corpus, settings, code versions): a database that already
holds the current key (in the current search format, ``store.postgres.SEARCH_FORMAT``) is used as
it is, so re-ingesting an unchanged corpus is a no-op, and many
API workers starting at once build it at most once (the first takes the ingest lock, the rest
wait for it and then find the key published). An embedded index of the same key on this machine
is published as it is, without embedding anything again.
"""

from __future__ import annotations

import logging
import time

from rich.console import Console

from .config import Settings
from .corpus import corpus_fingerprint, load_corpus
from .embedding import Embedder
from .embedding_cache import EmbeddingCache
from .indexing import build_store, index_key
from .store.local import IndexUnusable, LocalStore
from .store.postgres import SEARCH_FORMAT, DatabaseError, PostgresStore

log = logging.getLogger(__name__)


def connect(settings: Settings) -> PostgresStore:
    if not settings.database_url:
        raise DatabaseError("KGPT_DATABASE_URL is not set")
    return PostgresStore(
        settings.database_url,
        pool_size=settings.database_pool_size,
        timeout=settings.database_timeout,
    )


def open_postgres_index(
    settings: Settings,
    embedder: Embedder,
    *,
    force: bool = False,
    console: Console | None = None,
) -> PostgresStore:
    """The database's index of the current corpus, published first if it is not there yet."""
    console = console or Console(stderr=True)
    corpus_dir = settings.resolved_corpus_dir()
    lectures = load_corpus(corpus_dir)
    key = index_key(corpus_fingerprint(lectures), settings, embedder.name)
    store = connect(settings)
    try:
        active = store.active_version()
        if not force and store.holds(key):
            log.info("database holds index %s (version %d, %d chunks)", key, active.id, len(store))
            return store
        with store.writer() as writer:
            if not force and writer.holds(key):
                log.info("index %s was published by another process meanwhile", key)
                return store
            started = time.perf_counter()
            index = _local_index(settings, key) or _build(settings, lectures, embedder, console)
            meta = {
                "key": key,
                "corpus_dir": str(corpus_dir),
                "lectures": [lecture.id for lecture in lectures],
                "chunk_size": settings.chunk_size,
                "chunk_overlap": settings.chunk_overlap,
                "model": embedder.name,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            version = writer.publish(key, meta, index)
            log.info(
                "built and published index %s as version %d: %d chunks from %d lectures in %.1fs",
                key,
                version,
                len(index),
                len(lectures),
                time.perf_counter() - started,
            )
        return store
    except BaseException:
        store.close()
        raise


def _build(settings: Settings, lectures, embedder: Embedder, console: Console) -> LocalStore:
    """Chunk and embed, reusing the embedding cache the embedded index keeps on this machine."""
    cache = EmbeddingCache.load(settings.index_dir, embedder.name)
    name = settings.resolved_corpus_dir().name
    store, _ = build_store(lectures, settings, embedder, cache, console=console, name=name)
    cache.save()
    return store


def _local_index(settings: Settings, key: str) -> LocalStore | None:
    """An embedded index of the same key on this machine: its vectors, not embedded again."""
    path = settings.index_dir / key
    if not path.is_dir():
        return None
    try:
        return LocalStore.load(path)
    except IndexUnusable as exc:
        log.info("not reusing %s: %s", path, exc)
        return None


def open_published(settings: Settings) -> PostgresStore:
    """Whatever index the database holds, for a replica that has no corpus of its own."""
    store = connect(settings)
    version = store.active_version()
    if version is None:
        store.close()
        raise DatabaseError(
            "the database holds no index yet: run `karpathy-gpt ingest` with KGPT_DATABASE_URL "
            "set on a machine that has the corpus"
        )
    log.warning(
        "no corpus here; serving the database's index %s (version %d, %d chunks)",
        version.index_key,
        version.id,
        version.chunks,
    )
    if version.meta.get("search_format") != SEARCH_FORMAT:
        log.warning(
            "version %d was written by an older release (full-text format %s, this one reads "
            "%d): it has no BM25 postings, so passages are ranked by their vectors alone until "
            "`karpathy-gpt ingest` runs with the corpus and KGPT_DATABASE_URL set",
            version.id,
            version.meta.get("search_format", 1),
            SEARCH_FORMAT,
        )
    return store
