"""Hybrid retrieval: the question, normalised and embedded, searched in the store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .embedding import Embedder
from .store import Hit, Store
from .text import normalise


@dataclass
class Retrieval:
    question: str
    vector: np.ndarray  # the normalised question's embedding, reused by the extractive answerer
    hits: list[Hit]


class Retriever:
    def __init__(self, store: Store, embedder: Embedder):
        self.store = store
        self.embedder = embedder

    def search(self, question: str, k: int = 3) -> Retrieval:
        query = normalise(question)
        vector = self.embedder.embed_one(query)
        return Retrieval(question=question, vector=vector, hits=self.store.search(query, vector, k))
