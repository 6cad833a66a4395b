"""Corpus -> chunks -> embedded index, built once, reused while corpus and settings stay."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .chunking import chunk_lecture
from .config import Settings
from .corpus import Lecture, corpus_fingerprint, load_corpus
from .embedding import MODEL_NAME, Embedder
from .store import Store
from .store.local import FORMAT_VERSION, IndexUnusable, LocalStore, set_aside
from .text import GLOSSARY_VERSION, SPLITTER_VERSION, normalise, sentence_spans

log = logging.getLogger(__name__)


def index_key(fingerprint: str, settings: Settings) -> str:
    shape = {
        "corpus": fingerprint,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "model": MODEL_NAME,
        "glossary": GLOSSARY_VERSION,
        "splitter": SPLITTER_VERSION,
        "format": FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


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
    console = console or Console(stderr=True)
    corpus_dir = settings.resolved_corpus_dir()
    lectures = load_corpus(corpus_dir)
    key = index_key(corpus_fingerprint(lectures), settings)
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
            return store

    started = time.perf_counter()
    store = build_store(lectures, settings, embedder, console=console, name=corpus_dir.name)
    meta = {
        "key": key,
        "corpus_dir": str(corpus_dir),
        "lectures": [lecture.id for lecture in lectures],
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "model": MODEL_NAME,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    store.save(settings.index_dir, key, meta, replace=force)
    log.info(
        "built index %s: %d chunks from %d lectures in %.1fs",
        key,
        len(store),
        len(lectures),
        time.perf_counter() - started,
    )
    return store


def build_store(
    lectures: list[Lecture],
    settings: Settings,
    embedder: Embedder,
    *,
    console: Console | None = None,
    name: str = "corpus",
) -> LocalStore:
    """An in-memory index of ``lectures``: chunked, embedded, BM25-indexed, not yet saved."""
    chunks = [
        c
        for lecture in lectures
        for c in chunk_lecture(lecture, settings.chunk_size, settings.chunk_overlap)
    ]
    searchable = [normalise(c.text) for c in chunks]
    # The extractive answerer scores sentences; overlapping chunks share some, embedded once.
    chunk_sentences = [[normalise(c.text[s:e]) for s, e in sentence_spans(c.text)] for c in chunks]
    unique = list(dict.fromkeys(s for sentences in chunk_sentences for s in sentences))
    with (
        _progress(console or Console(stderr=True), len(chunks) + len(unique), name) as advance,
        embedder.threads(os.cpu_count() or 1),
    ):
        embeddings = embedder.embed(searchable, progress=advance)
        row = dict(zip(unique, embedder.embed(unique, progress=advance), strict=True))
    sentence_vectors = [
        np.array([row[s] for s in sentences], dtype=np.float32).reshape(-1, embeddings.shape[1])
        for sentences in chunk_sentences
    ]
    return LocalStore.build(chunks, searchable, embeddings, sentence_vectors)


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
