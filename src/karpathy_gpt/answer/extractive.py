"""The offline default: answer with the passages' own sentences, cleaned and cited.

Every sentence of the retrieved passages is scored against the question by embedding similarity
plus the share of the question's content words it holds; a sentence's neighbours lend it a little
of their score, since a good answer in a transcript rarely fits one sentence. The best few that
do not repeat one another (a lecture says the same thing in several words) are cleaned of spoken
filler ("So", "um", "the the") and streamed in passage order, each followed by the citation of
its passage. Only deletions are made: no word is added or changed. When the best passage is not
similar enough to the question, it says so instead of quoting noise. No model counts tokens
here: an answer's usage is counted in MiniLM word pieces (see ``usage``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from ..lexical import tokenize
from ..retrieval import Retrieval
from ..text import normalise, sentence_spans
from .base import Answerer, Message
from .usage import Usage

NOT_FOUND = (
    "I could not find this in the lectures: none of the retrieved passages is close enough to "
    "the question. Try rephrasing it with the terms the lectures use."
)

_FILLER = re.compile(r"\b(?:um+|uh+|uhm|erm)\b,?\s*", re.IGNORECASE)
_REPEAT = re.compile(r"\b(\w+)(?:[ ,]+\1\b)+", re.IGNORECASE)
_LEADING = re.compile(
    r"^(?:(?:and|so|but|okay|ok|now|well|right|yeah|basically|alright|all right)\b[,.]?\s+)+",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"\s*\S+")


def clean(sentence: str) -> str:
    """Spoken filler out, first letter up; nothing added."""
    text = _FILLER.sub("", sentence)
    text = _REPEAT.sub(r"\1", text)
    text = _LEADING.sub("", text).strip()
    return text[:1].upper() + text[1:] if text else text


@dataclass
class _Sentence:
    passage: int  # 0-based index into the hits
    position: int  # order within the passage
    text: str
    vector: np.ndarray  # the sentence's embedding, stored at ingest
    span: tuple[int, int]  # where it is in the passage's text
    score: float = 0.0


MIN_SENTENCE_CHARS = 20  # shorter is a fragment: never chosen alone


class ExtractiveAnswerer(Answerer):
    name = "extractive"

    def __init__(
        self,
        min_similarity: float = 0.35,
        max_sentences: int = 3,
        max_chars: int = 700,
        lexical_weight: float = 0.3,
        context_weight: float = 0.2,
        max_redundancy: float = 0.85,
    ):
        """``max_redundancy``: a sentence whose cosine to one already chosen reaches this says
        nothing new (e.g. "Today we are (once again) continuing our implementation of
        Makemore", said in two lectures) and is passed over."""
        self.min_similarity = min_similarity
        self.max_sentences = max_sentences
        self.max_chars = max_chars
        self.lexical_weight = lexical_weight
        self.context_weight = context_weight
        self.max_redundancy = max_redundancy

    async def stream(
        self, retrieval: Retrieval, history: Sequence[Message] = (), usage: Usage | None = None
    ) -> AsyncIterator[str]:
        answer = await run_in_threadpool(self.compose, retrieval)
        if usage is not None:  # no model counts here: word pieces, off the event loop
            await run_in_threadpool(usage.settle, retrieval, answer)
        for token in _TOKEN.findall(answer):
            yield token

    def compose(self, retrieval: Retrieval) -> str:
        """The whole answer text (the stream is this, token by token)."""
        hits = retrieval.hits
        if not hits or max(h.similarity for h in hits) < self.min_similarity:
            return NOT_FOUND
        sentences = [
            _Sentence(p, n, hit.chunk.text[s:e], vector, (s, e))
            for p, hit in enumerate(hits)
            for n, ((s, e), vector) in enumerate(
                zip(sentence_spans(hit.chunk.text), hit.sentence_vectors, strict=True)
            )
        ]
        self._score(retrieval, sentences)
        chosen = self._choose(sentences)
        following = {(s.passage, s.position - 1): s for s in sentences}
        parts = []
        for passage in sorted({s.passage for s in chosen}):
            texts = [
                clean(self._completed(s, following, hits[passage].chunk.text))
                for s in chosen
                if s.passage == passage
            ]
            parts.append(" ".join(t for t in texts if t) + f" [{passage + 1}]")
        return " ".join(parts)

    @staticmethod
    def _completed(sentence: _Sentence, following: dict, passage: str) -> str:
        """The sentence with the fragment after it, if it stops mid-phrase: a caption run with
        no punctuation is cut every ~300 characters and can leave a word or two ("training")."""
        after = following.get((sentence.passage, sentence.position))
        if (
            after is None
            or sentence.text.rstrip().endswith((".", "!", "?"))
            or len(clean(after.text)) >= MIN_SENTENCE_CHARS
        ):
            return sentence.text
        return passage[sentence.span[0] : after.span[1]]

    def _score(self, retrieval: Retrieval, sentences: list[_Sentence]) -> None:
        similarity = np.vstack([s.vector for s in sentences]) @ retrieval.vector
        query_terms = set(tokenize([normalise(retrieval.question)])[0])
        for sentence, sim, terms in zip(
            sentences, similarity, tokenize([normalise(s.text) for s in sentences]), strict=True
        ):
            overlap = len(query_terms & set(terms)) / len(query_terms) if query_terms else 0.0
            sentence.score = float(sim) + self.lexical_weight * overlap
        own = np.array([s.score for s in sentences])
        for i, sentence in enumerate(sentences):
            neighbours = [
                own[j]
                for j in (i - 1, i + 1)
                if 0 <= j < len(sentences) and sentences[j].passage == sentence.passage
            ]
            if neighbours:
                sentence.score += self.context_weight * max(neighbours)
        # Passages further down the ranking were judged less relevant: a small, steady discount.
        for sentence in sentences:
            sentence.score -= 0.02 * sentence.passage

    def _choose(self, sentences: list[_Sentence]) -> list[_Sentence]:
        chosen: list[_Sentence] = []
        seen: set[str] = set()
        length = 0
        for sentence in sorted(sentences, key=lambda s: -s.score):
            key = clean(sentence.text).lower()
            if len(key) < MIN_SENTENCE_CHARS or key in seen:  # fragments, overlap duplicates
                continue
            if chosen and length + len(sentence.text) > self.max_chars:
                continue
            if any(float(sentence.vector @ c.vector) >= self.max_redundancy for c in chosen):
                continue
            chosen.append(sentence)
            seen.add(key)
            length += len(sentence.text)
            if len(chosen) >= self.max_sentences:
                break
        return sorted(chosen, key=lambda s: (s.passage, s.position))
