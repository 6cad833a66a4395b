"""The offline default: answer with the lectures' own words, leading with the sentence that
answers, and cite them.

The passage ranker has scored every sentence of the passages for how likely it holds the
answer (``ranking``). The answer opens with the best of them and goes on with what follows it
in the lecture (a transcript rarely says a thing in one sentence), up to ``max_chars``; if the
passage ends first, the next best sentence of another passage follows. Spoken filler ("So",
"um", "the the") is cleaned out; only deletions are made, never a word the lecture did not say.
Each piece is followed by the citation of its passage. A question the retrieval judges the
lectures do not cover is not asked here: ``refusal`` answers it plainly instead of quoting the
nearest noise. No model counts tokens here: an answer's usage is counted in MiniLM word pieces
(see ``usage``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from ..retrieval import Retrieval
from ..store import Hit
from ..text import sentence_spans
from .base import Answerer, Message
from .refusal import NOT_COVERED, TOKEN
from .usage import Usage

_FILLER = re.compile(r"\b(?:um+|uh+|uhm|erm)\b,?\s*", re.IGNORECASE)
_REPEAT = re.compile(r"\b(\w+)(?:[ ,]+\1\b)+", re.IGNORECASE)
_LEADING = re.compile(
    r"^(?:(?:and|so|but|okay|ok|now|well|right|yeah|basically|alright|all right)\b[,.]?\s+)+",
    re.IGNORECASE,
)


def clean(sentence: str) -> str:
    """Spoken filler out, first letter up; nothing added."""
    text = _LEADING.sub("", tidy(sentence)).strip()
    return text[:1].upper() + text[1:] if text else text


def tidy(sentence: str) -> str:
    """Spoken filler and stutters out ("um", "the the"), as the lecture goes on."""
    return _REPEAT.sub(r"\1", _FILLER.sub("", sentence)).strip()


@dataclass
class _Sentence:
    passage: int  # 0-based index into the hits
    position: int  # order within the passage
    text: str
    score: float  # the ranker's (or, unranked, the cosine to the question)


MIN_SENTENCE_CHARS = 20  # a piece of the answer shorter than this is a fragment


class ExtractiveAnswerer(Answerer):
    name = "extractive"

    def __init__(self, max_chars: int = 700):
        """``max_chars``: the answer's length, citations aside."""
        self.max_chars = max_chars

    async def stream(
        self, retrieval: Retrieval, history: Sequence[Message] = (), usage: Usage | None = None
    ) -> AsyncIterator[str]:
        answer = await run_in_threadpool(self.compose, retrieval)
        if usage is not None:  # no model counts here: word pieces, off the event loop
            await run_in_threadpool(usage.settle, retrieval, answer)
        for token in TOKEN.findall(answer):
            yield token

    def compose(self, retrieval: Retrieval) -> str:
        """The whole answer text (the stream is this, token by token)."""
        if not retrieval.hits:
            return NOT_COVERED
        passages = [_sentences(p, hit, retrieval.vector) for p, hit in enumerate(retrieval.hits)]
        ranked = sorted(
            (s for sentences in passages for s in sentences if _opens(s)),
            key=lambda s: -s.score,
        )
        if not ranked:
            return NOT_COVERED
        parts: list[str] = []
        used: set[tuple[int, int]] = set()
        left = self.max_chars  # the whole answer, citations and spaces included
        for opening in ranked:
            if (opening.passage, opening.position) in used:
                continue
            citation = f" [{opening.passage + 1}]"
            room = left - len(citation) - (1 if parts else 0)
            piece: list[str] = []
            taken = []
            for s in passages[opening.passage][opening.position :]:
                if (s.passage, s.position) in used:
                    break
                text = clean(s.text) if not piece else tidy(s.text)
                extra = len(text) + (1 if piece else 0)
                if extra > room:
                    break
                if text:
                    piece.append(text)
                    room -= extra
                taken.append((s.passage, s.position))
            # A short opening ("Now, what is Makemore?") leads into what follows it; a fragment
            # with nothing after it is no answer.
            if len(" ".join(piece)) >= MIN_SENTENCE_CHARS:
                used.update(taken)
                parts.append(" ".join(piece) + citation)
                left = self.max_chars - len(" ".join(parts))
            if left < MIN_SENTENCE_CHARS + 5:
                break
        if not parts:  # even the best sentence is longer than the whole answer may be
            best = clean(ranked[0].text)
            cut = best[: self.max_chars - 6].rsplit(" ", 1)[0]
            return f"{cut} [{ranked[0].passage + 1}]"
        return " ".join(parts)


def _sentences(p: int, hit: Hit, question: np.ndarray) -> list[_Sentence]:
    text = hit.chunk.text
    spans = hit.sentence_spans or sentence_spans(text)
    scores = hit.sentence_scores
    if scores is None:
        scores = hit.sentence_vectors @ question
    return [
        _Sentence(p, n, text[a:b], float(score) if np.isfinite(score) else -np.inf)
        for n, ((a, b), score) in enumerate(zip(spans, scores, strict=True))
    ]


def _opens(sentence: _Sentence) -> bool:
    return bool(np.isfinite(sentence.score) and clean(sentence.text))
