"""The built index of a corpus, as no store in particular holds it: chunks, their vectors, the
vectors of their sentences, and the lexical postings (bm25s's term x chunk BM25 weights).

A build makes one (``index.build``); the embedded store saves and searches it, the PostgreSQL
store copies it into a new version. Nothing here knows where it will live.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bm25s
import numpy as np

from ..chunking import Chunk
from ..lexical import tokenize
from ..text import cased_words
from .postings import Postings


@dataclass
class BuiltIndex:
    chunks: list[Chunk]
    embeddings: np.ndarray  # one L2-normalised row per chunk
    # One row per sentence of each chunk, chunk after chunk, in text.sentence_spans order:
    # chunk i's sentences are rows sentence_offsets[i]:sentence_offsets[i + 1].
    sentence_vectors: np.ndarray
    sentence_offsets: np.ndarray
    bm25: bm25s.BM25  # the lexical side: every (term, chunk) weight, computed at build time
    # The corpus's words with a capital or a digit, as written (text.cased_words): what the
    # coverage decision checks a question's names against.
    names: frozenset[str] = frozenset()
    _document_frequency: dict[str, int] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_parts(
        cls,
        chunks: list[Chunk],
        searchable: list[str],
        embeddings: np.ndarray,
        sentence_vectors: list[np.ndarray],
    ) -> BuiltIndex:
        """BM25-index ``searchable`` (the normalised text of each chunk) beside its vectors."""
        bm25 = bm25s.BM25()
        bm25.index(tokenize(searchable), show_progress=False)
        offsets = np.cumsum([0] + [len(v) for v in sentence_vectors], dtype=np.int64)
        names = frozenset().union(*(cased_words(c.text) for c in chunks))
        return cls(chunks, embeddings, np.vstack(sentence_vectors), offsets, bm25, names)

    def __len__(self) -> int:
        return len(self.chunks)

    def sentences_of(self, chunk: int) -> np.ndarray:
        """The sentence vectors of chunk ``chunk`` (a copy, not a view of a memory map)."""
        offsets = self.sentence_offsets
        return np.asarray(self.sentence_vectors[offsets[chunk] : offsets[chunk + 1]])

    def document_frequency(self) -> dict[str, int]:
        """How many chunks hold each term (read once from the postings)."""
        if self._document_frequency is None:
            self._document_frequency = self.postings().document_frequency()
        return self._document_frequency

    def postings(self) -> Postings:
        return Postings.from_bm25(self.bm25)

    def is_consistent(self) -> bool:
        """Whether chunks, vectors and sentence offsets describe the same chunks."""
        return (
            self.embeddings.shape[0] == len(self.chunks)
            and len(self.sentence_offsets) == len(self.chunks) + 1
            and self.sentence_offsets[-1] == self.sentence_vectors.shape[0]
        )
