"""Hybrid retrieval: the question, normalised and embedded, searched in the store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .embedding import Embedder
from .errors import RequestError
from .store import Hit, Store
from .text import normalise


class QuestionError(RequestError, ValueError):
    """A question that cannot be asked: empty, or over the limit (KGPT_MAX_QUESTION_CHARS)."""


def checked_question(text: str, max_chars: int) -> str:
    """``text`` stripped, or QuestionError saying why it cannot be asked (every entry point's
    rule: the legacy endpoints, /v1 and ``karpathy-gpt ask``)."""
    question = text.strip()
    if not question:
        raise QuestionError("question is empty")
    if len(question) > max_chars:
        raise QuestionError(f"question is {len(question)} characters; the limit is {max_chars}")
    return question


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
