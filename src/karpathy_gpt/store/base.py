"""The store interface every index implements: versions written whole, and the candidate chunks
of a question (the dense top N and the BM25 top N, with their scores), which ``ranking`` turns
into passages. Reciprocal-rank fusion, the ranking this replaced, is kept for the baselines the
evaluation compares against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..bank import EMPTY, Bank
from ..chunking import Chunk
from ..errors import KgptError
from ..index.built import BuiltIndex

RRF_K = 60
# Chunks per ranking (dense, BM25) a search starts from: 15, 25 and 50 measured the same under
# cross-validation (BENCHMARKS.md), and fewer candidates are quicker to rank.
CANDIDATES = 25


@dataclass
class Hit:
    """One retrieved passage with the evidence for its rank."""

    chunk: Chunk
    score: float  # the ranker's score of the sentence it was cut around
    similarity: float  # cosine between the question and that sentence
    # One row per sentence of the passage, embedded once at ingest: what the extractive
    # answerer scores.
    sentence_vectors: np.ndarray
    # Where those sentences are in chunk.text (default: text.sentence_spans(chunk.text)).
    sentence_spans: list[tuple[int, int]] | None = None
    # The ranker's score of each of them (None: not ranked; the answerer scores them itself).
    sentence_scores: np.ndarray | None = None


@dataclass
class Candidate:
    """A chunk a store found for a question, with the evidence for it."""

    chunk: Chunk
    similarity: float  # cosine to the question
    lexical: float  # BM25 score (0: none of the question's words)
    dense_rank: int  # 1-based; depth + 1 when outside the dense top ``depth``
    lexical_rank: int  # likewise for BM25
    sentence_vectors: np.ndarray  # one row per text.sentence_spans(chunk.text)
    following: Chunk | None = None  # the next chunk of the same lecture, for a passage's end
    following_vectors: np.ndarray | None = None


@dataclass
class Candidates:
    items: list[Candidate]
    documents: int  # chunks in the index
    document_frequency: Mapping[str, int]  # chunks holding each (stemmed) term
    names: frozenset[str] = frozenset()  # the corpus's words with a capital or digit, as written
    bank: Bank = EMPTY  # the corpus's question bank, as the retriever's model reads it

    def idf(self, term: str) -> float:
        return math.log(1 + self.documents / max(self.document_frequency.get(term, 0), 0.5))


class DatabaseError(KgptError):
    """The database behind a store cannot be reached or used; the message says what to do."""

    status = 503
    code = "index_unavailable"

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message, retry_after=retry_after)


class Store(Protocol):
    """Where a corpus's index lives: searched by the server, written by ingest.

    A store holds versions of the index, each named by its index key (``index.build``), and
    searches the one in use. Writing is ``publish`` under ``lock``: a new version written whole
    and then put in use, so a search sees the old one or the new one, never half of either.
    """

    #: Whether the version in use can only change in this process (a query cache may be kept).
    fixed: bool

    @property
    def path(self) -> Path | str:
        """Where the version in use lives, for messages (never with a password)."""
        ...

    def __len__(self) -> int:
        """Chunks of the version in use (0 before there is one)."""
        ...

    def candidates(self, query: str, vector: np.ndarray, depth: int = CANDIDATES) -> Candidates:
        """The dense top ``depth`` and BM25 top ``depth`` chunks for ``query`` (already
        normalised) and its embedding, each once, with the chunk that follows it."""
        ...

    def holds(self, key: str) -> bool:
        """Whether the version in use is ``key`` (the embedded store loads it if it has it;
        one it has but cannot read raises ``index.embedded.IndexUnusable``)."""
        ...

    def lock(self) -> AbstractContextManager[object]:
        """Held around checking and publishing: one writer at a time where that matters."""
        ...

    def publish(self, key: str, meta: dict, index: BuiltIndex) -> None:
        """Write ``index`` as version ``key`` (whether or not one is stored) and put it in use."""
        ...

    def use_latest(self) -> bool:
        """Put the newest usable version in use, whatever its key (a server that cannot write
        the current index serves it meanwhile); False if there is none."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used again."""
        ...


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]],
    k: int = RRF_K,
    weights: Sequence[float] | None = None,
) -> dict[int, float]:
    """Fuse ranked lists of ids: each id scores the sum of weight / (k + rank) over the lists.

    ``weights`` has one entry per ranking (default: all 1).
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(rankings)} rankings but {len(weights)} weights")
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores
