"""Whether the lectures cover a question: a decision from the retrieval's own evidence.

One cosine threshold refuses too little or too much: an off-topic question can share words
with the lectures ("CLIP's contrastive loss" and gradient clipping), and a casual on-topic one
can match nothing well. The decision weighs a few signals in a logistic model: how close the
best chunk and the best sentence come, how sure the passage ranker is of its best sentence, how
much of the question (by IDF weight) uses words the lectures never say (code identifiers read as
their words, function words aside), how many names it uses that the lectures never write
("CLIP", "RoPE", "Bengio et al." are names the lectures would have to write as such to cover
them), and whether it is nearer the off-topic questions the decision was fitted on than the
on-topic ones (``Asked``: a question about Adam's bias correction is nearer one about fp16 loss
scaling than any the lectures answer). Its weights and threshold are fitted on labelled
on-topic questions against off-topic ones (``karpathy-gpt eval --fit``); the threshold keeps
on-topic questions wrongly refused near ``TARGET_FALSE_REFUSALS`` on the questions it was
fitted on. ``karpathy-gpt eval`` draws the whole curve, with this point marked.
"""

from __future__ import annotations

import base64
import math
import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from . import bank
from .lexical import function_words, identifier_words, tokenize
from .ranking import FEATURES, Ranked, fitted
from .store.base import Candidates
from .text import names_in, normalise

if TYPE_CHECKING:
    from .embedding import Embedder

SIGNALS = (
    "chunk",  # the best candidate chunk's cosine
    "sentence",  # the best sentence's cosine
    "ranker",  # the ranker's best score
    "unknown_share",  # share of the question's IDF weight on words no chunk holds
    "unknown_words",  # how many such words
    "unknown_names",  # how many of its names (text.names_in) the corpus never writes
    # Last: where the fitted questions say nothing (another corpus), decide() goes without it.
    "asked",  # cosine to the nearest off-topic question fitted on, less the nearest on-topic
)
# Chosen by cross-validation: the largest that keeps held-out on-topic questions, dev's and
# all of them, refused at most ~5% of the time (the fit refuses this share of the questions it
# is fitted on; BENCHMARKS.md has the targets measured).
TARGET_FALSE_REFUSALS = 0.035


@dataclass(frozen=True)
class Decision:
    offtopic: float  # the model's probability that the lectures do not cover the question
    covered: bool


@dataclass(frozen=True)
class Asked:
    """The questions the decision was fitted on, as the serving model embeds them: rows of
    unit vectors, on-topic and off-topic."""

    on: np.ndarray
    off: np.ndarray

    def gap(self, vector: np.ndarray) -> float:
        if not len(self.on) or not len(self.off):
            return 0.0
        return float((self.off @ vector).max() - (self.on @ vector).max())

    def with_bank(self, held: bank.Bank) -> Asked:
        """These questions and the bank's: its answered ones on-topic, the others off-topic."""
        if not len(held):
            return self
        off = np.vstack([self.off, held.off]) if len(held.off) else self.off
        return Asked(np.vstack([self.on, held.vectors]), off)

    def as_json(self, on: list[str], off: list[str], model: str, documents: int) -> dict:
        """The texts (to embed them again with another model of the same corpus) and, for
        ``model``, the vectors (float16: a cosine moves by ~1e-3); ``documents``: the corpus's
        chunks, which the labels hold for."""
        vectors = np.vstack([self.on, self.off]).astype("<f2")
        return {
            "on": on,
            "off": off,
            "model": model,
            "documents": documents,
            "vectors": base64.b64encode(vectors.tobytes()).decode("ascii"),
        }


NOWHERE = Asked(np.zeros((0, 0)), np.zeros((0, 0)))  # no fitted questions: the signal is 0


def signals(ranked: Ranked, candidates: Candidates, vector: np.ndarray, asked: Asked) -> np.ndarray:
    # The question's words as a lecture would say them ("counts_sum_inv": counts, sum, inv), and
    # not its function words: a lecture given in the first person never says "his", which is
    # no sign that it does not cover a question about "his Value class".
    words = tokenize([identifier_words(normalise(ranked.question))])[0]
    terms = [t for t in words if t not in function_words()]
    unknown = [t for t in terms if not candidates.document_frequency.get(t)]
    weight = sum(candidates.idf(t) for t in terms) or 1.0
    names = [
        n
        for n in names_in(ranked.question)
        if n not in candidates.names and n.removesuffix("s") not in candidates.names
    ]
    gap = asked.gap(vector)
    if not ranked.sentences:
        return np.array([0.0, 0.0, -10.0, 1.0, float(len(unknown)), float(len(names)), gap])
    return np.array(
        [
            max(c.similarity for c in candidates.items),
            float(ranked.features[:, FEATURES.index("sentence")].max()),
            float(ranked.scores.max()),
            sum(candidates.idf(t) for t in unknown) / weight,
            float(len(unknown)),
            float(len(names)),
            gap,
        ]
    )


_ASKED: dict[str, Asked] = {}
_ASKED_LOCK = threading.Lock()


def asked(embedder: Embedder, documents: int) -> Asked:
    """The fitted questions as ``embedder`` embeds them, for a corpus of ``documents`` chunks:
    the vectors kept in weights.json when it is the model they were fitted with, else their
    texts embedded once by it. Their labels hold for the corpus they were written for: on
    another one, ``NOWHERE`` (and ``decide`` weighs the other signals alone)."""
    _model(embedder.adapted, True)  # fitted on these signals, or say what to run
    key = f"{embedder.name} {documents}"
    found = _ASKED.get(key)
    if found is None:  # embedded outside the lock: searches meanwhile do not wait for it
        found = asked_in(fitted(embedder.adapted), embedder, documents)
        found = with_bank(found, embedder, documents)
        with _ASKED_LOCK:
            found = _ASKED.setdefault(key, found)
    return found


def with_bank(found: Asked, embedder: Embedder, documents: int) -> Asked:
    """The question bank's questions (``bank.py``) are on-topic questions too, and its
    unanswered ones off-topic: a question far from all the answered ones is far from
    everything the lectures answer."""
    if found is NOWHERE:
        return found
    return found.with_bank(bank.of(embedder, documents, fitted(embedder.adapted)))


def asked_in(fit: dict, embedder: Embedder, documents: int) -> Asked:
    """The questions ``fit`` (a kind's part of weights.json) was fitted on, for ``embedder``
    serving a corpus of ``documents`` chunks."""
    bank = fit["coverage"]["asked"]
    if bank["documents"] != documents:
        return NOWHERE
    n = len(bank["on"])
    if bank["model"] == embedder.name:
        flat = np.frombuffer(base64.b64decode(bank["vectors"]), dtype="<f2")
        vectors = flat.astype(np.float32).reshape(-1, flat.size // max(n + len(bank["off"]), 1))
    else:
        vectors = embedder.embed([normalise(q) for q in bank["on"] + bank["off"]])
    return Asked(vectors[:n], vectors[n:])


@cache  # checked and built once per model, not on every search
def _model(adapted: bool, asked: bool) -> tuple[np.ndarray, float, float]:
    """The decision over every signal, or (``asked`` false) the one fitted without ``asked``."""
    model = fitted(adapted)["coverage"]
    if tuple(model["signals"]) != SIGNALS:
        raise ValueError("weights.json was fitted on other coverage signals; run eval --fit")
    if not asked:
        model = model["without_asked"]
    return np.asarray(model["weights"]), float(model["bias"]), float(model["threshold"])


def refitted() -> None:
    """weights.json was written anew: read it again at the next search."""
    _model.cache_clear()
    bank.forget()
    with _ASKED_LOCK:
        _ASKED.clear()


def decide(row: np.ndarray, adapted: bool = True, asked: bool = True) -> Decision:
    """``asked``: whether the row's last signal read the fitted questions (not ``NOWHERE``)."""
    weights, bias, threshold = _model(adapted, asked)
    z = float(row[: len(weights)] @ weights + bias)
    p = 1 / (1 + math.exp(-max(min(z, 50.0), -50.0)))
    return Decision(p, p < threshold)
