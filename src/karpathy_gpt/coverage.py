"""Whether the lectures cover a question: a decision from the retrieval's own evidence.

One cosine threshold refuses too little or too much: an off-topic question can share words
with the lectures ("CLIP's contrastive loss" and gradient clipping), and a casual on-topic one
can match nothing well. The decision weighs a few signals in a logistic model: how close the
best chunk and the best sentence come, how sure the passage ranker is of its best sentence, how
much of the question (by IDF weight) uses words the lectures never say (code identifiers read as
their words, function words aside), and how many names it
uses that the lectures never write ("CLIP", "RoPE", "Bengio et al." are names the lectures
would have to write as such to cover them). Its weights and
threshold are fitted on labelled on-topic questions against off-topic ones
(``karpathy-gpt eval --fit``); the threshold keeps on-topic questions wrongly refused near
``TARGET_FALSE_REFUSALS`` on the questions it was fitted on. ``karpathy-gpt eval`` draws the
whole curve, with this point marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from .lexical import function_words, identifier_words, tokenize
from .ranking import FEATURES, Ranked, fitted
from .store.base import Candidates
from .text import names_in, normalise

SIGNALS = (
    "chunk",  # the best candidate chunk's cosine
    "sentence",  # the best sentence's cosine
    "ranker",  # the ranker's best score
    "unknown_share",  # share of the question's IDF weight on words no chunk holds
    "unknown_words",  # how many such words
    "unknown_names",  # how many of its names (text.names_in) the corpus never writes
)
# Chosen by cross-validation so that held-out on-topic questions are refused at most ~5%
# of the time (the fit refuses this share of the questions it is fitted on).
TARGET_FALSE_REFUSALS = 0.03


@dataclass(frozen=True)
class Decision:
    offtopic: float  # the model's probability that the lectures do not cover the question
    covered: bool


def signals(ranked: Ranked, candidates: Candidates) -> np.ndarray:
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
    if not ranked.sentences:
        return np.array([0.0, 0.0, -10.0, 1.0, float(len(unknown)), float(len(names))])
    return np.array(
        [
            max(c.similarity for c in candidates.items),
            float(ranked.features[:, FEATURES.index("sentence")].max()),
            float(ranked.scores.max()),
            sum(candidates.idf(t) for t in unknown) / weight,
            float(len(unknown)),
            float(len(names)),
        ]
    )


@cache  # checked and built once per model, not on every search
def _model(adapted: bool) -> tuple[np.ndarray, float, float]:
    model = fitted(adapted)["coverage"]
    if tuple(model["signals"]) != SIGNALS:
        raise ValueError("weights.json was fitted on other coverage signals; run eval --fit")
    return np.asarray(model["weights"]), float(model["bias"]), float(model["threshold"])


def decide(row: np.ndarray, adapted: bool = True) -> Decision:
    weights, bias, threshold = _model(adapted)
    z = float(row @ weights + bias)
    p = 1 / (1 + math.exp(-max(min(z, 50.0), -50.0)))
    return Decision(p, p < threshold)
