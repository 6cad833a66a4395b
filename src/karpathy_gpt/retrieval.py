"""Retrieval: the question checked, normalised and embedded; the store's candidates ranked into
passages (``ranking``); and the decision whether the lectures cover it (``coverage``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import bank, coverage, ranking
from .embedding import Embedder
from .errors import RequestError
from .store import Hit, Store
from .store.base import Candidates
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
    vector: np.ndarray  # the normalised question's embedding
    hits: list[Hit]
    # Whether the lectures cover the question (coverage.py); answerers may refuse when not.
    covered: bool = True
    offtopic: float = 0.0  # the coverage model's probability that they do not


class Retriever:
    def __init__(self, store: Store, embedder: Embedder, questions: bank.Bank | None = None):
        """``questions``: the question bank to read (default: the one the served weights were
        fitted with, ``bank.of``)."""
        self.store = store
        self.embedder = embedder
        self.questions = questions

    def candidates(self, query: str, vector: np.ndarray) -> Candidates:
        """The store's candidates, with the corpus's question bank for the ranker to read."""
        candidates = self.store.candidates(query, vector)
        if self.questions is not None:
            candidates.bank = self.questions
        else:
            fit = ranking.fitted(self.embedder.adapted)
            candidates.bank = bank.of(self.embedder, candidates.documents, fit)
        return candidates

    def search(self, question: str, k: int = 3) -> Retrieval:
        query = normalise(question)
        vector = self.embedder.embed_one(query)
        candidates = self.candidates(query, vector)
        adapted = self.embedder.adapted
        ranked = ranking.rank(question, vector, candidates, k, adapted=adapted)
        asked = coverage.asked(self.embedder, candidates.documents)
        row = coverage.signals(ranked, candidates, vector, asked)
        decision = coverage.decide(row, adapted, asked is not coverage.NOWHERE)
        hits = [passage_hit(passage) for passage in ranked.passages]
        return Retrieval(question, vector, hits, decision.covered, decision.offtopic)


def passage_hit(passage: ranking.Passage) -> Hit:
    spans, position = [], 0
    for sentence in passage.sentences:
        spans.append((position, position + len(sentence.text)))
        position += len(sentence.text) + len(sentence.gap)
    return Hit(
        chunk=ranking.passage_chunk(passage),
        score=passage.score,
        similarity=passage.similarity,
        sentence_vectors=np.vstack([s.vector for s in passage.sentences]),
        sentence_spans=spans,
        sentence_scores=np.array([passage.scores.get(id(s), np.nan) for s in passage.sentences]),
    )
