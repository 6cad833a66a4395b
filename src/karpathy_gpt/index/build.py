"""Corpus -> chunks -> vectors and BM25 postings: a ``BuiltIndex``, and the key that names it.

The key hashes the corpus and every setting and code version that shapes the index, so an
unchanged corpus is never built again and a changed one always is. Only texts the embedding
cache has not seen are embedded: adding, changing or removing one lecture embeds that lecture's
chunks and sentences, no more.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..chunking import chunk_lectures
from ..config import Settings
from ..corpus import Lecture, corpus_fingerprint, load_corpus
from ..embedding import DIMENSIONS, Embedder, model_name
from ..embedding_cache import EmbeddingCache
from ..store.local import LocalStore
from ..text import GLOSSARY_VERSION, SPLITTER_VERSION, normalise, sentence_spans
from .built import BuiltIndex
from .embedded import FORMAT_VERSION


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


def index_path(settings: Settings) -> Path:
    """Where the embedded index of the current corpus and settings is (or would be) saved."""
    lectures = load_corpus(settings.resolved_corpus_dir())
    return settings.index_dir / index_key(corpus_fingerprint(lectures), settings)


@dataclass
class BuildCounts:
    embedded_chunks: int  # texts run through the model for this build
    embedded_sentences: int
    reused: int  # vectors taken from the embedding cache (or a saved index) instead


def index_meta(
    key: str, settings: Settings, lectures: list[Lecture], model: str, counts: BuildCounts
) -> dict:
    """What a version records of how it was made (``meta.json``, ``kgpt_versions.meta``)."""
    return {
        "key": key,
        "corpus_dir": str(settings.resolved_corpus_dir()),
        "lectures": [lecture.id for lecture in lectures],
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "model": model,
        "embedded_chunks": counts.embedded_chunks,
        "embedded_sentences": counts.embedded_sentences,
        "reused_vectors": counts.reused,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def build_index(
    lectures: list[Lecture],
    settings: Settings,
    embedder: Embedder,
    cache: EmbeddingCache | None = None,
    *,
    refresh: bool = False,
    console: Console | None = None,
    name: str = "corpus",
) -> tuple[BuiltIndex, BuildCounts]:
    """The index of ``lectures``; only texts missing from ``cache`` (all with ``refresh``) are
    embedded, and added to it."""
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
        console = console or Console(stderr=True)
        if not console.is_terminal:
            console.print(f"indexing {name}: embedding {total} chunks and sentences")
        done = 0
        with (
            progress(console, f"indexing {name}", "texts embedded") as report,
            embedder.threads(os.cpu_count() or 1),
        ):

            def advance(n: int) -> None:
                nonlocal done
                done += n
                report(done, total)

            cache.add(new_chunks, embedder.embed(new_chunks, progress=advance))
            cache.add(new_sentences, embedder.embed(new_sentences, progress=advance))
    embeddings = cache.get(searchable, DIMENSIONS)
    row = dict(zip(unique, cache.get(unique, DIMENSIONS), strict=True))
    sentence_vectors = [
        np.array([row[s] for s in sentences], dtype=np.float32).reshape(-1, DIMENSIONS)
        for sentences in chunk_sentences
    ]
    index = BuiltIndex.from_parts(chunks, searchable, embeddings, sentence_vectors)
    reused = len(set(searchable) | set(unique)) - total
    return index, BuildCounts(len(new_chunks), len(new_sentences), reused)


def build_store(*args, **kwargs) -> tuple[LocalStore, BuildCounts]:
    """``build_index``'s index, searchable in memory (never saved): for comparing settings."""
    index, counts = build_index(*args, **kwargs)
    return LocalStore(index), counts


@contextmanager
def progress(console: Console, label: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """``report(done, total)``: a bar on a terminal; elsewhere (logs, CI) a plain line every
    tenth of the way ("indexing karpathy: 884/8840 texts embedded")."""
    if console.is_terminal:
        with Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(label, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return
    shown = -1

    def report(done: int, total: int) -> None:
        nonlocal shown
        tenth = done * 10 // max(total, 1)
        if tenth > shown:
            shown = tenth
            console.print(f"{label}: {done}/{total} {unit}")

    yield report
