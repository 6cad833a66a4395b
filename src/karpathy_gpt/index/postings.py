"""BM25 postings: every (term, chunk) weight of an embedded index, to be stored elsewhere.

bm25s scores eagerly: when it indexes, it computes for every term t and chunk d holding it the
query-independent weight ``idf(t) * tf / (tf + k1 * (1 - b + b * len(d) / average length))``
("lucene": k1 1.5, b 0.75, idf ln(1 + (N - df + 0.5) / (df + 0.5))) and keeps the weights as a
sparse term x chunk matrix. A query's BM25 score of a chunk is the sum of its terms' weights (a
term asked twice counts twice). Copying that matrix instead of recomputing it gives another store
the embedded store's scores, to the bit.

Per term, two bounds let a search skip most postings of common words (MaxScore, see
``store.postgres.queries``): its largest weight, and its ``depth``-th largest (0 when fewer
chunks hold it). ``depth`` chunks score at least the latter on the term alone, so a query with
the term has a ``depth``-th best score at least that high.
"""

from __future__ import annotations

from dataclasses import dataclass

import bm25s
import numpy as np


@dataclass(frozen=True)
class Postings:
    lexemes: list[str]  # term id -> lexeme (the tokenizer's token)
    offsets: np.ndarray  # term t's postings are rows offsets[t]:offsets[t + 1], by chunk
    chunks: np.ndarray  # int32: the chunk (ordinal) of each posting
    weights: np.ndarray  # float32: its BM25 weight

    @classmethod
    def from_bm25(cls, bm25: bm25s.BM25) -> Postings:
        scores = bm25.scores  # bm25s's CSC matrix: column t holds term t's chunks and weights
        offsets = np.asarray(scores["indptr"], dtype=np.int64)
        terms = len(offsets) - 1
        lexemes = [""] * terms
        for lexeme, term in bm25.vocab_dict.items():
            if term < terms:  # bm25s's vocabulary also holds "", which no chunk contains
                lexemes[term] = lexeme
        return cls(
            lexemes=lexemes,
            offsets=offsets,
            chunks=np.asarray(scores["indices"], dtype=np.int32),
            weights=np.asarray(scores["data"], dtype=np.float32),
        )

    def __len__(self) -> int:
        return len(self.weights)

    def chunk_counts(self) -> np.ndarray:
        """How many chunks hold each term (its document frequency)."""
        return np.diff(self.offsets)

    def document_frequency(self) -> dict[str, int]:
        """``chunk_counts`` by lexeme (terms no chunk holds left out)."""
        counts = self.chunk_counts()
        return {lexeme: int(counts[t]) for t, lexeme in enumerate(self.lexemes) if lexeme}

    def terms(self) -> np.ndarray:
        """The term id of each posting."""
        return np.repeat(np.arange(len(self.lexemes), dtype=np.int32), self.chunk_counts())

    def max_weights(self) -> np.ndarray:
        return np.array(
            [self._weights_of(t).max(initial=0.0) for t in range(len(self.lexemes))],
            dtype=np.float32,
        )

    def floor_weights(self, depth: int) -> np.ndarray:
        """Each term's ``depth``-th largest weight, 0 if fewer than ``depth`` chunks hold it."""
        floors = np.zeros(len(self.lexemes), dtype=np.float32)
        for term in np.flatnonzero(self.chunk_counts() >= depth):
            weights = self._weights_of(term)
            floors[term] = np.partition(weights, len(weights) - depth)[len(weights) - depth]
        return floors

    def _weights_of(self, term: int) -> np.ndarray:
        return self.weights[self.offsets[term] : self.offsets[term + 1]]
