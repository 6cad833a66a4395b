"""Corpus -> chunks -> embedded index, built once, reused while corpus and settings stay.

A changed corpus gets a new index, but only texts the embedding cache has not seen are embedded:
adding, changing or removing one lecture embeds that lecture's chunks and sentences, no more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .chunking import chunk_lectures
from .config import Settings
from .corpus import Lecture, corpus_fingerprint, load_corpus, read_corpus
from .embedding import DIMENSIONS, Embedder, model_name
from .embedding_cache import EmbeddingCache
from .store import Store
from .store.local import FORMAT_VERSION, IndexUnusable, LocalStore, set_aside
from .text import GLOSSARY_VERSION, SPLITTER_VERSION, normalise, sentence_spans
from .transcripts import TranscriptError

log = logging.getLogger(__name__)


def index_key(fingerprint: str, settings: Settings, model: str | None = None) -> str:
    """``model``: the embedder's name (default: the configured backend's)."""
    shape = {
        "corpus": fingerprint,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "model": model or model_name(settings.embedding_backend),
        "glossary": GLOSSARY_VERSION,
        "splitter": SPLITTER_VERSION,
        "format": FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class IngestResult:
    """What opening the index did: loaded it, or built it and embedded how much."""

    store: LocalStore
    key: str
    built: bool  # False: an up-to-date index was loaded as it was
    lectures: int
    embedded_chunks: int = 0  # texts run through the model for this build
    embedded_sentences: int = 0
    reused: int = 0  # vectors taken from the embedding cache instead
    problems: list[TranscriptError] = field(default_factory=list)  # transcripts left out

    @property
    def embedded(self) -> int:
        return self.embedded_chunks + self.embedded_sentences


@dataclass
class BuildCounts:
    embedded_chunks: int
    embedded_sentences: int
    reused: int


def open_index(
    settings: Settings,
    embedder: Embedder,
    *,
    force: bool = False,
    console: Console | None = None,
) -> Store:
    """Load the index for the current corpus and settings, building it first if needed.

    With ``KGPT_DATABASE_URL`` set the index lives in PostgreSQL instead (see pg_indexing).
    """
    if settings.database_url:
        from .pg_indexing import open_postgres_index

        return open_postgres_index(settings, embedder, force=force, console=console)
    return ingest(settings, embedder, force=force, console=console).store


def ingest(
    settings: Settings,
    embedder: Embedder,
    *,
    force: bool = False,
    console: Console | None = None,
) -> IngestResult:
    """Load the index for the corpus and settings or build it, embedding only what is new.

    ``force`` rebuilds even an up-to-date index and re-embeds every text (the cache is refreshed).
    """
    console = console or Console(stderr=True)
    corpus_dir = settings.resolved_corpus_dir()
    corpus = read_corpus(corpus_dir)
    for problem in corpus.problems:
        log.warning("left out of the index: %s", problem)
    lectures = corpus.lectures
    key = index_key(corpus_fingerprint(lectures), settings, embedder.name)
    path = settings.index_dir / key

    if not force and path.exists():
        started = time.perf_counter()
        try:
            store = LocalStore.load(path)
        except IndexUnusable as exc:
            log.warning("%s; rebuilding it", exc)
            console.print(f"[yellow]index unusable ({exc}); rebuilding[/]")
            set_aside(path)
        else:
            log.info(
                "loaded index %s (%d chunks) in %.3fs",
                key,
                len(store),
                time.perf_counter() - started,
            )
            return IngestResult(
                store, key, built=False, lectures=len(lectures), problems=corpus.problems
            )

    started = time.perf_counter()
    cache = EmbeddingCache.load(settings.index_dir, embedder.name)
    store, counts = build_store(
        lectures, settings, embedder, cache, refresh=force, console=console, name=corpus_dir.name
    )
    cache.save()
    meta = {
        "key": key,
        "corpus_dir": str(corpus_dir),
        "lectures": [lecture.id for lecture in lectures],
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "model": embedder.name,
        "embedded_chunks": counts.embedded_chunks,
        "embedded_sentences": counts.embedded_sentences,
        "reused_vectors": counts.reused,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    store.save(settings.index_dir, key, meta, replace=force)
    log.info(
        "built index %s: %d chunks from %d lectures in %.1fs (%d texts embedded, %d reused)",
        key,
        len(store),
        len(lectures),
        time.perf_counter() - started,
        counts.embedded_chunks + counts.embedded_sentences,
        counts.reused,
    )
    return IngestResult(
        store,
        key,
        built=True,
        lectures=len(lectures),
        embedded_chunks=counts.embedded_chunks,
        embedded_sentences=counts.embedded_sentences,
        reused=counts.reused,
        problems=corpus.problems,
    )


def build_store(
    lectures: list[Lecture],
    settings: Settings,
    embedder: Embedder,
    cache: EmbeddingCache | None = None,
    *,
    refresh: bool = False,
    console: Console | None = None,
    name: str = "corpus",
) -> tuple[LocalStore, BuildCounts]:
    """An in-memory index of ``lectures``; only texts missing from ``cache`` are embedded."""
    if cache is None:  # (an empty cache is falsy: it has a length)
        cache = EmbeddingCache.empty(embedder.name)
    chunks = chunk_lectures(lectures, settings.chunk_size, settings.chunk_overlap)
    searchable = [normalise(c.text) for c in chunks]
    # The extractive answerer scores sentences; overlapping chunks share some, embedded once.
    chunk_sentences = [[normalise(c.text[s:e]) for s, e in sentence_spans(c.text)] for c in chunks]
    unique = list(dict.fromkeys(s for sentences in chunk_sentences for s in sentences))
    new_chunks = cache.missing(searchable, refresh=refresh)
    pending = set(new_chunks)  # a one-sentence chunk's text is that sentence: embedded once
    new_sentences = [s for s in cache.missing(unique, refresh=refresh) if s not in pending]
    total = len(new_chunks) + len(new_sentences)
    if total:
        with (
            _progress(console or Console(stderr=True), total, name) as advance,
            embedder.threads(os.cpu_count() or 1),
        ):
            cache.add(new_chunks, embedder.embed(new_chunks, progress=advance))
            cache.add(new_sentences, embedder.embed(new_sentences, progress=advance))
    embeddings = cache.get(searchable, DIMENSIONS)
    row = dict(zip(unique, cache.get(unique, DIMENSIONS), strict=True))
    sentence_vectors = [
        np.array([row[s] for s in sentences], dtype=np.float32).reshape(-1, DIMENSIONS)
        for sentences in chunk_sentences
    ]
    store = LocalStore.build(chunks, searchable, embeddings, sentence_vectors)
    reused = len(set(searchable) | set(unique)) - total
    return store, BuildCounts(len(new_chunks), len(new_sentences), reused)


@contextmanager
def _progress(console: Console, total: int, name: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; elsewhere (logs, CI) a plain line every tenth of the way."""
    if console.is_terminal:
        with Progress(
            TextColumn(f"[bold]indexing {name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("texts"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("embed", total=total)
            yield lambda n: progress.advance(task, n)
        return
    done = 0
    shown = -1
    console.print(f"indexing {name}: embedding {total} chunks and sentences")

    def advance(n: int) -> None:
        nonlocal done, shown
        done += n
        tenth = done * 10 // max(total, 1)
        if tenth > shown:
            shown = tenth
            console.print(f"indexing {name}: {done}/{total} texts embedded")

    yield advance


def index_path(settings: Settings) -> Path:
    lectures = load_corpus(settings.resolved_corpus_dir())
    return settings.index_dir / index_key(corpus_fingerprint(lectures), settings)
