"""Fitting the passage ranker and the coverage decision on labelled questions, and k-fold
cross-validation of both: the figures a fit is judged by.

Each question is prepared once (its candidates from the store, every candidate sentence's
features; for a labelled one, which sentences hold its evidence). The ranker is a logistic
regression over the sentence features (positive: the sentence holds the evidence, in an
accepted lecture); the coverage decision one over ``coverage.SIGNALS`` (positive: off-topic),
whose threshold keeps ``TARGET_FALSE_REFUSALS`` of the on-topic questions it was fitted on
wrongly refused. Features are standardised for the fit and the scaling folded back into the
weights, so serving is one dot product.

Cross-validation splits the labelled and the off-topic questions into k folds each; every
question is ranked, answered and decided by models fitted without its fold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .. import coverage, ranking
from ..answer import NOT_COVERED
from ..answer.extractive import ExtractiveAnswerer
from ..retrieval import Retrieval, Retriever, passage_hit
from ..store.base import Candidates
from ..text import normalise
from .labels import Labelled, OffTopic
from .metrics import Found, found, holds_evidence

C = 1.0  # the logistic regressions' inverse regularisation (0.1 and 1.0 measured the same)
K = 10  # passages ranked per question (MRR@10; the budgets read fewer)
ANSWER_K = 3  # passages an answer is written from (KGPT_DEFAULT_K's default)


@dataclass
class Prepared:
    question: str
    vector: np.ndarray
    candidates: Candidates
    sentences: list[ranking.Sentence]
    features: np.ndarray
    labelled: Labelled | None = None  # None: off-topic
    labels: np.ndarray | None = None  # per sentence: holds the evidence
    type: str = ""


def prepare(retriever: Retriever, question: Labelled | OffTopic) -> Prepared:
    text = question.question
    query = normalise(text)
    vector = retriever.embedder.embed_one(query)
    candidates = retriever.candidates(query, vector)
    sentences = ranking.gather(candidates)
    rows, _ = ranking.features(text, vector, candidates, sentences)
    labelled = question if isinstance(question, Labelled) else None
    labels = None
    if labelled is not None:
        labels = np.array([labelled.holds(s.lecture, s.text) for s in sentences], dtype=bool)
    kind = question.type
    return Prepared(text, vector, candidates, sentences, rows, labelled, labels, kind)


def _logistic(rows: np.ndarray, labels: np.ndarray, weight: str | None = None) -> ranking.Linear:
    from sklearn.linear_model import LogisticRegression

    mean, scale = rows.mean(axis=0), rows.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=C, max_iter=5000, class_weight=weight)
    model.fit((rows - mean) / scale, labels)
    w = model.coef_[0] / scale
    return ranking.Linear(tuple(map(float, w)), float(model.intercept_[0] - w @ mean))


def fit_ranker(prepared: list[Prepared], bank: bool = True) -> ranking.Linear:
    """``bank`` false: fitted without the bank's features (their weights 0), for a corpus
    without a question bank."""
    usable = [p for p in prepared if p.labels is not None and len(p.sentences)]
    rows = np.vstack([p.features for p in usable])
    width = rows.shape[1] if bank else rows.shape[1] - len(ranking.BANK_FEATURES)
    fitted = _logistic(rows[:, :width], np.concatenate([p.labels for p in usable]))
    padding = (0.0,) * (rows.shape[1] - width)
    return ranking.Linear(fitted.weights + padding, fitted.bias)


def signals(p: Prepared, ranker: ranking.Linear, asked: coverage.Asked) -> np.ndarray:
    scores = ranker(p.features) if len(p.sentences) else np.zeros(0)
    ranked = ranking.Ranked([], p.sentences, scores, p.features, p.question)
    return coverage.signals(ranked, p.candidates, p.vector, asked)


def bank(on: list[Prepared], off: list[Prepared], without: Prepared | None = None, questions=True):
    """The questions a coverage model is fitted on, as its ``asked`` signal reads them (with
    the corpus's question bank, its answered questions on-topic and its unanswered ones
    off-topic, as ``coverage.asked`` reads it); a question it is fitted on is read without
    itself (it would be its own nearest).
    ``questions`` false: without the bank (the fitted questions alone, as weights.json keeps
    them)."""

    def rows(questions: list[Prepared]) -> np.ndarray:
        kept = [p.vector for p in questions if p is not without]
        return np.vstack(kept) if kept else np.zeros((0, len(on[0].vector) if on else 0))

    asked = coverage.Asked(rows(on), rows(off))
    candidates = on[0].candidates if on and questions else None  # None: prepared without
    return asked.with_bank(candidates.bank) if candidates is not None else asked


def fitted_signals(ranker, on: list[Prepared], off: list[Prepared]):
    """Each fitted question's signals: on-topic rows, off-topic rows."""
    return (
        np.array([signals(p, ranker, bank(on, off, p)) for p in on]),
        np.array([signals(p, ranker, bank(on, off, p)) for p in off]),
    )


@dataclass(frozen=True)
class CoverageModel:
    model: ranking.Linear
    threshold: float

    def offtopic(self, row: np.ndarray) -> float:
        return float(1 / (1 + np.exp(-np.clip(self.model(row[None, :])[0], -50, 50))))

    def as_json(self) -> dict:
        return {
            "signals": list(coverage.SIGNALS),
            "weights": list(self.model.weights),
            "bias": self.model.bias,
            "threshold": self.threshold,
        }


def fit_coverage(on: np.ndarray, off: np.ndarray) -> CoverageModel:
    rows = np.vstack([on, off])
    labels = np.r_[np.zeros(len(on), bool), np.ones(len(off), bool)]
    model = _logistic(rows, labels, weight="balanced")
    probability = 1 / (1 + np.exp(-np.clip(model(on), -50, 50)))
    # Refuse above the on-topic questions' (1 - target) quantile: that share is refused.
    threshold = float(np.quantile(probability, 1 - coverage.TARGET_FALSE_REFUSALS))
    return CoverageModel(model, threshold)


@dataclass
class Judged:
    """One question's cross-validated outcome."""

    question: str
    type: str
    found: Found | None  # labelled questions only
    answer: str
    holds: bool | None  # the answer holds the evidence (labelled only)
    offtopic: float
    refused: bool


def judge(
    p: Prepared,
    ranker,
    cover: CoverageModel,
    asked: coverage.Asked,
    answerer: ExtractiveAnswerer,
    k=K,
) -> Judged:
    ranked = ranking.rank(p.question, p.vector, p.candidates, k, score=ranker)
    probability = cover.offtopic(coverage.signals(ranked, p.candidates, p.vector, asked))
    refused = probability >= cover.threshold
    hits = [passage_hit(passage) for passage in ranked.passages]
    retrieval = Retrieval(p.question, p.vector, hits[:ANSWER_K], not refused, probability)
    answer = NOT_COVERED if refused else answerer.compose(retrieval)
    passages = [(h.chunk.metadata["id"], h.chunk.text) for h in hits]
    if p.labelled is None:
        return Judged(p.question, p.type, None, answer, None, probability, refused)
    return Judged(
        p.question,
        p.labelled.type,
        found(p.labelled, passages),
        answer,
        holds_evidence(p.labelled, answer),
        probability,
        refused,
    )


def folds(n: int, k: int, seed: int) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(n)
    fold = np.empty(n, dtype=int)
    fold[order] = np.arange(n) % k
    return fold


def cross_validate(
    on: list[Prepared], off: list[Prepared], k: int = 5, seed: int = 0
) -> tuple[list[Judged], list[Judged]]:
    """Every question judged by a ranker and a coverage model fitted without its fold."""
    on_fold, off_fold = folds(len(on), k, seed), folds(len(off), k, seed + 1)
    answerer = ExtractiveAnswerer()
    judged_on: list[Judged | None] = [None] * len(on)
    judged_off: list[Judged | None] = [None] * len(off)
    for f in range(k):
        train = [p for p, g in zip(on, on_fold, strict=True) if g != f]
        train_off = [p for p, g in zip(off, off_fold, strict=True) if g != f]
        ranker = fit_ranker(train)
        cover = fit_coverage(*fitted_signals(ranker, train, train_off))
        asked = bank(train, train_off)
        for i in np.flatnonzero(on_fold == f):
            judged_on[i] = judge(on[i], ranker, cover, asked, answerer)
        for i in np.flatnonzero(off_fold == f):
            judged_off[i] = judge(off[i], ranker, cover, asked, answerer)
    return judged_on, judged_off  # type: ignore[return-value]


def fit_all(on: list[Prepared], off: list[Prepared], model: str) -> dict:
    """The ranker and coverage model fitted on every question, as weights.json holds them
    (``model``: the embedder's name, whose vectors of the questions are kept)."""
    ranker = fit_ranker(on)
    on_rows, off_rows = fitted_signals(ranker, on, off)
    cover = fit_coverage(on_rows, off_rows)
    # For a corpus the questions were not written for, whose labels and bank say nothing of it.
    elsewhere = fit_ranker(on, bank=False)
    on_rows, off_rows = fitted_signals(elsewhere, on, off)
    alone = fit_coverage(on_rows[:, :-1], off_rows[:, :-1]).as_json()
    documents = on[0].candidates.documents
    texts = [p.question for p in on], [p.question for p in off]
    asked = bank(on, off, questions=False).as_json(*texts, model, documents)
    return {
        "ranker": {
            "features": list(ranking.FEATURES),
            "weights": list(ranker.weights),
            "bias": ranker.bias,
            "without_bank": {"weights": list(elsewhere.weights), "bias": elsewhere.bias},
        },
        "coverage": {
            **cover.as_json(),
            "without_asked": {k: alone[k] for k in ("weights", "bias", "threshold")},
            "asked": asked,
        },
        **({"bank": held.as_json(model)} if len(held := on[0].candidates.bank) else {}),
        "fitted_on": {
            "labelled": len(on),
            "offtopic": len(off),
            "questions": sorted(fingerprint(p.question) for p in on + off),
        },
    }


def fingerprint(question: str) -> str:
    return hashlib.sha256(question.strip().lower().encode()).hexdigest()[:12]
