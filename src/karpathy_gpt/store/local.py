"""The embedded store: the index in memory-mapped files under ``KGPT_INDEX_DIR``, searched in
numpy and bm25s. Saving and loading the folders is ``index.embedded``.

A search's candidates: the dense top 25 (cosine) and the BM25 top 25, with every candidate's
cosine and BM25 score (``ranking`` makes the passages).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from ..chunking import Chunk
from ..index import embedded
from ..index.built import BuiltIndex
from ..index.embedded import IndexUnusable
from ..lexical import tokenize
from .base import CANDIDATES, Candidate, Candidates

__all__ = ["CANDIDATES", "IndexUnusable", "LocalStore"]

log = logging.getLogger(__name__)


class LocalStore:
    """The index in use (``index``) and the folder its versions are saved in (``folder``)."""

    fixed = True  # only this process's ingest changes it

    def __init__(self, index: BuiltIndex | None = None, folder: Path | None = None):
        self.folder = folder
        self.key: str | None = None
        self.path: Path | None = None  # the folder of the version in use
        self.index = index  # None until a version is loaded or published
        self._vocab = index.bm25.vocab_dict if index is not None else {}

    @classmethod
    def open(cls, folder: Path) -> LocalStore:
        """The store of ``folder``, no version in use yet (``holds`` loads one)."""
        return cls(folder=folder)

    @classmethod
    def load(cls, path: Path) -> LocalStore:
        """The index saved in ``path`` (IndexUnusable if it cannot be read)."""
        store = cls(embedded.load(path), folder=path.parent)
        store.key, store.path = path.name, path
        return store

    @classmethod
    def build(
        cls,
        chunks: list[Chunk],
        searchable: list[str],
        embeddings: np.ndarray,
        sentence_vectors: list[np.ndarray],
    ) -> LocalStore:
        """An index in memory only (never saved): ``BuiltIndex.from_parts``, searchable."""
        return cls(BuiltIndex.from_parts(chunks, searchable, embeddings, sentence_vectors))

    def _use(self, index: BuiltIndex, key: str, path: Path) -> None:
        self.index, self.key, self.path = index, key, path
        self._vocab = index.bm25.vocab_dict

    # The built index's parts, read by evaluation and the benchmarks.
    chunks = property(lambda self: self.index.chunks)
    embeddings = property(lambda self: self.index.embeddings)
    sentence_vectors = property(lambda self: self.index.sentence_vectors)
    sentence_offsets = property(lambda self: self.index.sentence_offsets)
    bm25 = property(lambda self: self.index.bm25)

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else 0

    # -- writing ------------------------------------------------------------------------------

    def holds(self, key: str) -> bool:
        if self.key == key:
            return True
        if self.folder is None or not (self.folder / key).exists():
            return False
        path = self.folder / key
        try:
            index = embedded.load(path)
        except IndexUnusable:
            embedded.set_aside(path)  # to be written anew; pruned after the next save
            raise
        self._use(index, key, path)
        return True

    def lock(self) -> contextlib.AbstractContextManager[object]:
        # Builders of one key write the same content, each to its own temporary folder, and the
        # rename is atomic: they need not wait for each other.
        return contextlib.nullcontext()

    def publish(self, key: str, meta: dict, index: BuiltIndex) -> None:
        if self.folder is None:
            raise ValueError("this store has no folder to publish to")
        self._use(index, key, embedded.save(index, self.folder, key, meta, replace=True))

    def use_latest(self) -> bool:
        if self.index is not None:
            return True
        for path in embedded.complete(self.folder) if self.folder else []:
            try:
                self._use(embedded.load(path), path.name, path)
            except IndexUnusable:
                continue
            return True
        return False

    def close(self) -> None:
        """Nothing to release: the files are closed with the last reference to the index."""

    # -- search -------------------------------------------------------------------------------

    def dense_ranking(self, vector: np.ndarray, n: int) -> tuple[list[int], np.ndarray]:
        similarities = self.embeddings @ vector
        return _top(similarities, n), similarities

    def lexical_scores(self, query: str) -> np.ndarray:
        """Every chunk's BM25 score for ``query`` (zeros when none of its words is indexed)."""
        tokens = [t for t in tokenize([query])[0] if t in self._vocab]
        if not tokens:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return self.bm25.get_scores(tokens)

    def lexical_ranking(self, query: str, n: int, scores: np.ndarray | None = None) -> list[int]:
        scores = self.lexical_scores(query) if scores is None else scores
        return [i for i in _top(scores, n) if scores[i] > 0]

    def candidates(self, query: str, vector: np.ndarray, depth: int = CANDIDATES) -> Candidates:
        dense, similarities = self.dense_ranking(vector, depth)
        scores = self.lexical_scores(query)
        lexical = self.lexical_ranking(query, depth, scores)
        dense_rank = {chunk: n for n, chunk in enumerate(dense, start=1)}
        lexical_rank = {chunk: n for n, chunk in enumerate(lexical, start=1)}
        chunks, index = self.chunks, self.index
        items = []
        for i in dict.fromkeys(dense + lexical):
            following = i + 1 if i + 1 < len(chunks) and _same_lecture(chunks, i) else None
            after = index.sentences_of(following) if following is not None else None
            items.append(
                Candidate(
                    chunk=chunks[i],
                    similarity=float(similarities[i]),
                    lexical=float(scores[i]),
                    dense_rank=dense_rank.get(i, depth + 1),
                    lexical_rank=lexical_rank.get(i, depth + 1),
                    sentence_vectors=index.sentences_of(i),
                    following=chunks[following] if following is not None else None,
                    following_vectors=after,
                )
            )
        return Candidates(items, len(chunks), index.document_frequency(), index.names)


def _top(scores: np.ndarray, n: int) -> list[int]:
    """The ``n`` best, ties in chunk order (as PostgreSQL orders them): every chunk scoring at
    least the n-th best score is sorted, so a tie at the cut is decided the same way."""
    n = min(n, len(scores))
    if n == 0:
        return []
    bar = np.partition(scores, len(scores) - n)[len(scores) - n]
    contenders = np.flatnonzero(scores >= bar)
    order = np.lexsort((contenders, -scores[contenders]))
    return [int(i) for i in contenders[order][:n]]


def _same_lecture(chunks: list[Chunk], i: int) -> bool:
    return chunks[i + 1].metadata["id"] == chunks[i].metadata["id"]
