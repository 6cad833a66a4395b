"""The store interface every index implements, and the rank fusion they share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..chunking import Chunk

RRF_K = 60


@dataclass
class Hit:
    """One retrieved chunk with the evidence for its rank."""

    chunk: Chunk
    score: float  # fused reciprocal-rank score
    similarity: float  # cosine between query and chunk embeddings
    # One row per sentence of the chunk, in text.sentence_spans(chunk.text) order: what the
    # extractive answerer scores, embedded once at ingest instead of on every question.
    sentence_vectors: np.ndarray


class DatabaseError(Exception):
    """The database behind a store cannot be reached or used; the message says what to do."""


class Store(Protocol):
    """A searchable set of chunks."""

    def __len__(self) -> int: ...

    def search(self, query: str, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (already normalised) and its embedding."""
        ...


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Fuse ranked lists of ids: each id scores the sum of 1 / (k + rank) over the lists."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores
