"""The store interface every index implements, and the rank fusion they share.

Hybrid search fuses two rankings of the chunks by weighted reciprocal rank: a chunk scores
``weight / (RRF_K + rank)`` summed over the rankings it appears in. The dense (embedding)
ranking weighs ``DENSE_WEIGHT`` times the lexical (BM25) one. On spoken transcripts BM25 is the
noisier signal: question words, and lecture terms mentioned in passing ("context window", "bigram
model" in a recap), lift chunks that do not explain anything, while the embedding reads the
passage as a whole. So BM25 re-orders the embedding's candidates and adds the exact-term matches
the embedding misses, rather than outvoting it. The weight was chosen by leave-one-out
cross-validation over 50 labelled questions (the 15 public ones and the 35 of
``benchmarks/data/dev-questions.jsonl``); every weight from 2.5 to 4 gives the same hit counts
(see README, *Retrieval quality*, and ``benchmarks/retrieval_variants.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..chunking import Chunk
from ..errors import KgptError
from ..index.built import BuiltIndex

RRF_K = 60
DENSE_WEIGHT = 3.0
LEXICAL_WEIGHT = 1.0
CANDIDATES = 50  # per ranking, before fusion


@dataclass
class Hit:
    """One retrieved chunk with the evidence for its rank."""

    chunk: Chunk
    score: float  # fused reciprocal-rank score
    similarity: float  # cosine between query and chunk embeddings
    # One row per sentence of the chunk, in text.sentence_spans(chunk.text) order: what the
    # extractive answerer scores, embedded once at ingest instead of on every question.
    sentence_vectors: np.ndarray


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

    def search(self, query: str, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (already normalised) and its embedding."""
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
