"""Which store holds the index (``open_store``, the one place that decides), and ``ingest``:
the current corpus's index loaded from it, or built and published to it first.

The index key names a corpus and every setting that shapes its index (``index.build``). A store
that holds the key in use is used as it is: re-ingesting an unchanged corpus is a no-op, and
many API workers starting at once build it at most once (the first takes the store's lock, the
rest wait and then find the key published). An embedded index of the same key on this machine
is published as it is, without embedding anything again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from .. import bank
from ..adaptation import adapt
from ..chunking import chunk_lectures
from ..config import Settings
from ..corpus import CorpusError, Lecture, corpus_fingerprint, read_corpus
from ..embedding import Embedder
from ..embedding_cache import EmbeddingCache
from ..storage import StorageError
from ..store import DatabaseError, Store
from ..store.local import LocalStore
from ..text import normalise
from ..transcripts import TranscriptError
from . import embedded
from .build import BuildCounts, build_index, index_key, index_meta, progress
from .built import BuiltIndex
from .embedded import IndexUnusable

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> Store:
    """PostgreSQL when ``KGPT_DATABASE_URL`` is set, else the embedded store in
    ``KGPT_INDEX_DIR``. Nothing else looks at which backend is configured."""
    if settings.database_url:
        from ..store.postgres import PostgresStore

        return PostgresStore.from_settings(settings)
    return LocalStore.open(settings.index_dir)


def embedder_for(
    settings: Settings,
    lectures: list[Lecture],
    threads: int | None = None,
    console: Console | None = None,
) -> Embedder:
    """The model that embeds this corpus and its questions: adapted to it (``KGPT_ADAPT``,
    trained first when there is none to reuse; see adaptation.py), else the packaged one."""
    source = None
    if settings.adapt:
        chunks = chunk_lectures(lectures, settings.chunk_size, settings.chunk_overlap)
        passages = [normalise(c.text) for c in chunks]
        pairs = bank.training_pairs(lectures, chunks)
        label = "adapting the model to the corpus"
        with progress(console or Console(stderr=True), label, "steps") as report:
            source = adapt(settings.model_dir, passages, report, pairs=pairs)
    return Embedder.from_settings(settings, threads, source=source)


@dataclass
class IngestResult:
    """What opening the index did: found it, or built it and embedded how much."""

    store: Store
    embedder: Embedder  # what made its vectors, and embeds the questions
    key: str
    built: bool  # False: the store already held this index
    lectures: int
    embedded_chunks: int = 0  # texts run through the model for this build
    embedded_sentences: int = 0
    reused: int = 0  # vectors taken from the embedding cache instead
    problems: list[TranscriptError] = field(default_factory=list)  # transcripts left out

    @property
    def embedded(self) -> int:
        return self.embedded_chunks + self.embedded_sentences


def ingest(
    settings: Settings,
    embedder: Embedder | None = None,
    *,
    force: bool = False,
    console: Console | None = None,
    threads: int | None = None,
) -> IngestResult:
    """The index of the corpus and settings, from the store or built and published to it.

    ``embedder`` defaults to ``embedder_for`` the corpus (with ``threads``). ``force`` builds
    even an up-to-date index, re-embedding every text (the cache is refreshed), and publishes it
    again. CorpusError when the corpus cannot be read.
    """
    console = console or Console(stderr=True)
    corpus_dir = settings.resolved_corpus_dir()
    corpus = read_corpus(corpus_dir)
    for problem in corpus.problems:
        log.warning("left out of the index: %s", problem)
    lectures = corpus.lectures
    if embedder is None:
        embedder = embedder_for(settings, lectures, threads, console)
    key = index_key(corpus_fingerprint(lectures), settings, embedder.name)
    result = IngestResult(
        open_store(settings),
        embedder,
        key,
        built=False,
        lectures=len(lectures),
        problems=corpus.problems,
    )
    store = result.store
    try:
        started = time.perf_counter()
        if not force and _holds(store, key, console):
            log.info(
                "loaded index %s (%d chunks) from %s in %.3fs",
                key,
                len(store),
                store.path,
                time.perf_counter() - started,
            )
            return result
        with store.lock():
            if not force and _holds(store, key, console):
                log.info("index %s was published by another process meanwhile", key)
                return result
            started = time.perf_counter()
            index, counts = _saved(settings, key, force) or _build(
                settings, lectures, embedder, force, console
            )
            meta = index_meta(key, settings, lectures, embedder.name, counts)
            store.publish(key, meta, index)
    except BaseException:
        store.close()
        raise
    log.info(
        "built index %s: %d chunks from %d lectures in %.1fs (%d texts embedded, %d reused) at %s",
        key,
        len(index),
        len(lectures),
        time.perf_counter() - started,
        counts.embedded_chunks + counts.embedded_sentences,
        counts.reused,
        store.path,
    )
    result.built = True
    result.embedded_chunks = counts.embedded_chunks
    result.embedded_sentences = counts.embedded_sentences
    result.reused = counts.reused
    return result


def open_index(settings: Settings, embedder: Embedder | None = None, **options: Any) -> Store:
    """``open_serving``'s store."""
    return open_serving(settings, embedder, **options)[0]


def open_serving(
    settings: Settings, embedder: Embedder | None = None, **options: Any
) -> tuple[Store, Embedder]:
    """``ingest``'s store and embedder (``options`` are its own); with PostgreSQL and no corpus
    here, whatever the database holds (an API replica needs no corpus); when the new index
    cannot be written, the newest one the store has, meanwhile. The embedder is always the one
    that made the store's vectors."""
    threads = options.get("threads")
    try:
        result = ingest(settings, embedder, **options)
        return result.store, result.embedder
    except CorpusError:
        if not settings.database_url:
            raise
        store = open_published(settings)
    except (StorageError, DatabaseError) as exc:  # the new index could not be written
        store = open_store(settings)
        if not store.use_latest():
            store.close()
            raise type(exc)(f"{exc}; there is no earlier index to serve meanwhile") from exc
        log.error(
            "%s; serving the previous index meanwhile (%s, %d chunks)", exc, store.path, len(store)
        )
    try:
        model = _model_of(store)
        if embedder is None or embedder.name != model:
            embedder = embedder_named(settings, model, threads)
    except BaseException:
        store.close()
        raise
    return store, embedder


def embedder_named(settings: Settings, name: str, threads: int | None = None) -> Embedder:
    """The embedder whose vectors are keyed ``name`` (an index's ``model``): the packaged
    model, or an adapted one, which must be in ``KGPT_MODEL_DIR``."""
    adapted = name.split("+", 1)[1].split("@", 1)[0] if "+" in name else None
    source = settings.model_dir / adapted if adapted else None
    if source is not None and not source.is_dir():
        raise StorageError(
            f"the index was embedded with the adapted model {adapted}, which is not in "
            f"{settings.model_dir}: copy that folder from the machine that ran ingest, or run "
            "`karpathy-gpt ingest` here"
        )
    embedder = Embedder.from_settings(settings, threads, source=source)
    if embedder.name != name:
        raise StorageError(
            f"the index was embedded with {name}, but KGPT_EMBEDDING_BACKEND makes {embedder.name}"
            ": set the backend it was built with, or run `karpathy-gpt ingest` again"
        )
    return embedder


def _model_of(store: Store) -> str:
    """The embedder name the version in use records (``index_meta``'s ``model``)."""
    if isinstance(store, LocalStore):
        return embedded.read_meta(store.path)["model"]
    return store.active_version().meta["model"]


def _holds(store: Store, key: str, console: Console) -> bool:
    try:
        return store.holds(key)
    except IndexUnusable as exc:  # damaged: written anew below (publish replaces it)
        log.warning("%s; rebuilding it", exc)
        console.print(f"[yellow]index unusable ({exc}); rebuilding[/]")
        return False


def _saved(settings: Settings, key: str, force: bool) -> tuple[BuiltIndex, BuildCounts] | None:
    """An embedded index of the same key on this machine: its vectors, not embedded again."""
    path = settings.index_dir / key
    if force or not path.is_dir():
        return None
    try:
        index = embedded.load(path)
    except IndexUnusable as exc:
        log.info("not reusing %s: %s", path, exc)
        return None
    return index, BuildCounts(0, 0, len(index) + len(index.sentence_vectors))


def _build(
    settings: Settings, lectures: list[Lecture], embedder: Embedder, force: bool, console: Console
) -> tuple[BuiltIndex, BuildCounts]:
    """Chunk and embed, with the embedding cache kept beside the embedded indexes."""
    cache = EmbeddingCache.load(settings.index_dir, embedder.name)
    name = settings.resolved_corpus_dir().name
    built = build_index(
        lectures, settings, embedder, cache, refresh=force, console=console, name=name
    )
    cache.save()
    return built


def open_published(settings: Settings) -> Store:
    """Whatever index the database holds, for a replica that has no corpus of its own."""
    from ..store.postgres import SEARCH_FORMAT, PostgresStore

    store = PostgresStore.from_settings(settings)
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
