"""The question bank: questions a learner might ask of a corpus, each with the lecture words that
answer it (``question-bank.jsonl``, beside this file). Written from the transcripts; none is
worded like a question the evaluation asks (docs/evaluation.md), or cross-validated figures
would promise what held-out questions do not get.

MiniLM places a question nearer another wording of the same question than the sentence that
answers it: it was trained on pairs of questions. So a question near a bank question points at
that question's quote, and the ranker reads two features of each candidate sentence from the bank
(``features``): the best cosine of a bank question whose quote it holds, and that cosine times
how near the top of the whole bank the question ranks (log 100 / rank: a question's nearest bank
question counts, but only as far as it is near; the rank alone sent broad questions to whichever
quote happened to be nearest). The refusal reads the bank too: a question far from every bank
question is far from everything the lectures answer (``coverage``). Beside it, a bank of
questions the lectures do not answer (``offtopic-bank.jsonl``: ML topics they never reach,
details of what they only name, Karpathy's other work, anything else): a question nearer one of
those than any answered one is likely not covered either.

The quotes' places (lecture, start) hold for the corpus the bank was written for. The fit reads
the bank only where every quote is its lecture's words at its place (``for_corpus``), and
weights.json says whether it did; a server reads it only where the weights it serves were
fitted with it, on a corpus of as many chunks (``of``). A sentence is matched only where its
words are the quote's, so another corpus's lecture "01" never borrows them. Vectors: kept in
weights.json for the model the weights were fitted with (embedding the whole bank takes a few
seconds), else embedded once per process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .text import normalise

if TYPE_CHECKING:
    from .embedding import Embedder

log = logging.getLogger(__name__)

BANK_FILE = Path(__file__).with_name("question-bank.jsonl")
UNANSWERED_FILE = Path(__file__).with_name("offtopic-bank.jsonl")
RANK_CAP = 100  # a bank question past the nearest 100 counts as the 100th: no nearness


@dataclass(frozen=True)
class Entry:
    question: str
    lecture: str
    start: int  # of the quote in the lecture's text
    quote: str


@cache
def entries(path: Path = BANK_FILE) -> tuple[Entry, ...]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return tuple(Entry(r["question"], r["lecture"], int(r["start"]), r["quote"]) for r in rows)


@cache
def unanswered(path: Path = UNANSWERED_FILE) -> tuple[str, ...]:
    """The questions the corpus does not answer."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line)["question"] for line in lines if line)


def digest(found: tuple[Entry, ...], off: tuple[str, ...] = ()) -> str:
    """What the bank's stored vectors were computed from."""
    text = "\n".join([f"{e.question}\t{e.lecture}\t{e.start}" for e in found] + list(off))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Bank:
    entries: tuple[Entry, ...]
    vectors: np.ndarray  # one unit row per entry, as the serving model embeds its question
    # Questions the corpus does not answer (``unanswered``) and their rows: the refusal's alone.
    unanswered: tuple[str, ...] = ()
    off: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def __post_init__(self) -> None:
        lectures = sorted({e.lecture for e in self.entries})
        # Per lecture: the entries' indices, quote starts and ends, for an overlap test by arrays.
        by: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for lecture in lectures:
            rows = np.array([i for i, e in enumerate(self.entries) if e.lecture == lecture])
            starts = np.array([self.entries[i].start for i in rows])
            ends = starts + np.array([len(self.entries[i].quote) for i in rows])
            by[lecture] = (rows, starts, ends)
        object.__setattr__(self, "_by", by)

    def __len__(self) -> int:
        return len(self.entries)

    def features(self, vector: np.ndarray, sentences) -> np.ndarray:
        """Per sentence (``ranking.Sentence``): the best cosine of a bank question whose quote it
        holds, and that cosine times log(RANK_CAP / the question's rank in the bank); 0, 0 if
        none."""
        out = np.zeros((len(sentences), 2))
        if not len(self.entries):
            return out
        cosine = self.vectors @ vector
        rank = np.empty(len(cosine))
        rank[np.argsort(-cosine, kind="stable")] = np.arange(1, len(cosine) + 1)
        best = np.full(len(sentences), -1)
        lectures = np.array([s.lecture for s in sentences])
        starts = np.array([s.start for s in sentences])
        ends = np.array([s.end for s in sentences])
        for lecture in set(lectures.tolist()) & self._by.keys():
            rows, first, last = self._by[lecture]
            at = np.flatnonzero(lectures == lecture)
            overlap = (first[None, :] < ends[at, None]) & (last[None, :] > starts[at, None])
            for a, b in zip(*np.nonzero(overlap), strict=True):
                n, i = at[a], rows[b]
                if (best[n] < 0 or cosine[i] > cosine[best[n]]) and self._same_words(
                    self.entries[i], sentences[n]
                ):
                    best[n] = i
        held = best >= 0
        out[held, 0] = cosine[best[held]]
        out[held, 1] = out[held, 0] * np.log(RANK_CAP / np.minimum(rank[best[held]], RANK_CAP))
        return out

    @staticmethod
    def _same_words(entry: Entry, sentence) -> bool:
        """Whether the sentence's text is the quote's where the two overlap."""
        lo, hi = max(entry.start, sentence.start), min(entry.start + len(entry.quote), sentence.end)
        return (
            sentence.text[lo - sentence.start : hi - sentence.start]
            == entry.quote[lo - entry.start : hi - entry.start]
        )

    def as_json(self, model: str) -> dict:
        rows = np.vstack([self.vectors, self.off]) if len(self.off) else self.vectors
        return {
            "model": model,
            "digest": digest(self.entries, self.unanswered),
            "vectors": base64.b64encode(rows.astype("<f2").tobytes()).decode("ascii"),
        }


EMPTY = Bank((), np.zeros((0, 0), dtype=np.float32))

_BANKS: dict[str, Bank] = {}
_LOCK = threading.Lock()


def of(embedder: Embedder, documents: int, fit: dict) -> Bank:
    """The bank as ``embedder`` reads it, for a corpus of ``documents`` chunks: ``EMPTY`` unless
    ``fit`` (the embedder's part of weights.json) was fitted with it, on this corpus (as
    ``coverage.asked``, by its number of chunks)."""
    if "bank" not in fit or fit["coverage"]["asked"]["documents"] != documents:
        return EMPTY
    key = embedder.name
    found = _BANKS.get(key)
    if found is None:  # embedded outside the lock: searches meanwhile do not wait for it
        found = read(fit.get("bank"), embedder)
        with _LOCK:
            found = _BANKS.setdefault(key, found)
    return found


def written_for(lectures) -> bool:
    """Whether every quote is its lecture's words at its place in ``lectures``
    (``corpus.Lecture``): the corpus the bank was written for."""
    texts = {lecture.id: lecture.text for lecture in lectures}
    found = entries()
    return bool(found) and all(
        texts.get(e.lecture, "")[e.start : e.start + len(e.quote)] == e.quote for e in found
    )


def for_corpus(lectures, embedder: Embedder, stored: dict | None) -> Bank:
    """The bank for a fit on ``lectures``: ``EMPTY`` unless it was written for them."""
    return read(stored, embedder) if written_for(lectures) else EMPTY


def training_pairs(lectures, chunks) -> list[tuple[str, str]]:
    """(question, normalised text of a chunk holding its quote) for adapting the model to
    ``lectures`` cut into ``chunks``; none unless the bank was written for them."""
    if not written_for(lectures):
        return []
    by_lecture: dict[str, list] = {}
    for chunk in chunks:
        by_lecture.setdefault(chunk.metadata["id"], []).append(chunk)
    pairs = []
    for e in entries():
        end = e.start + len(e.quote)
        held = [c for c in by_lecture[e.lecture] if c.metadata["start_char"] <= e.start]
        whole = [c for c in held if end <= c.metadata["end_char"]]
        start = [c for c in held if e.start < c.metadata["end_char"]]
        if whole or start:
            pairs.append((e.question, normalise((whole or start)[0].text)))
    return pairs


def read(stored: dict | None, embedder: Embedder) -> Bank:
    """The bank, its vectors ``stored`` ones (weights.json's) if they are this model's."""
    found, off = entries(), unanswered()
    if stored and stored["model"] == embedder.name and stored["digest"] == digest(found, off):
        flat = np.frombuffer(base64.b64decode(stored["vectors"]), dtype="<f2")
        rows = flat.astype(np.float32).reshape(len(found) + len(off), -1)
    else:
        n = len(found) + len(off)
        log.info("embedding the question bank's %d questions with %s", n, embedder.name)
        rows = embedded([e.question for e in found] + list(off), embedder)
    return Bank(found, rows[: len(found)], off, rows[len(found) :])


def embedded(questions: list[str], embedder: Embedder) -> np.ndarray:
    return np.asarray(embedder.embed([normalise(q) for q in questions]), dtype=np.float32)


def forget() -> None:
    """weights.json was written anew: read the bank's vectors again."""
    with _LOCK:
        _BANKS.clear()
