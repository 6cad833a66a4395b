"""What a retrieval or an answer scores on one labelled question, and intervals over many.

Retrieval is judged the way a reader meets it: the ranked passages are read in order up to a
character budget (2,400: the default three passages of 800; 4,500: the original design's three
of 1,500), and it is a hit when the evidence lies inside what was read, in a passage of an
accepted lecture. hit@1 and MRR@10 judge the passages whole. An answer holds its evidence when
the regex matches within its first ``ANSWER_CHARS`` characters.

Intervals are percentile bootstraps over the questions (2,000 resamples, a fixed seed): a
difference whose paired interval spans 0 is within the noise of that many questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .labels import Labelled

BUDGETS = (2400, 4500)
ANSWER_CHARS = 800
DEPTH = 10  # passages read for MRR
RESAMPLES = 2000

Passages = Sequence[tuple[str, str]]  # (lecture id, text), best first


@dataclass
class Found:
    """One question's retrieval: the first hit's rank (None past DEPTH) and, per budget,
    whether the evidence was read within it."""

    rank: int | None
    within: dict[int, bool]

    def metrics(self) -> dict[str, float]:
        out = {f"hit@{b}": float(hit) for b, hit in self.within.items()}
        out["hit@1"] = float(self.rank == 1)
        out["mrr@10"] = 1.0 / self.rank if self.rank else 0.0
        return out


def found(question: Labelled, passages: Passages, budgets: Sequence[int] = BUDGETS) -> Found:
    hits = (n for n, (lec, text) in enumerate(passages[:DEPTH], 1) if question.holds(lec, text))
    rank = next(hits, None)
    return Found(rank, {b: within_budget(question, passages, b) for b in budgets})


def within_budget(question: Labelled, passages: Passages, budget: int) -> bool:
    left = budget
    for lecture, text in passages:
        if left <= 0:
            break
        if question.holds(lecture, text[:left]):
            return True
        left -= len(text)
    return False


def holds_evidence(question: Labelled, answer: str) -> bool:
    return bool(question.evidence.search(answer[:ANSWER_CHARS]))


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float

    def percent(self) -> str:
        return f"{100 * self.mean:5.1f}% [{100 * self.low:.1f}-{100 * self.high:.1f}]"


def interval(values: Sequence[float], seed: int = 0) -> Estimate:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return Estimate(float("nan"), float("nan"), float("nan"))
    rows = np.random.default_rng(seed).integers(0, len(v), (RESAMPLES, len(v)))
    means = v[rows].mean(axis=1)
    return Estimate(float(v.mean()), *map(float, np.percentile(means, [2.5, 97.5])))


@dataclass(frozen=True)
class Paired:
    """``a`` against ``b`` on the same questions: questions won and lost, and the mean
    difference with its paired bootstrap interval."""

    won: int
    lost: int
    difference: Estimate


def paired(a: Sequence[float], b: Sequence[float], seed: int = 0) -> Paired:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return Paired(int((x > y).sum()), int((x < y).sum()), interval(x - y, seed))


def summary(rows: Sequence[Found]) -> dict[str, Estimate]:
    """Every metric's mean and interval over the questions."""
    if not rows:
        return {}
    names = rows[0].metrics().keys()
    table = [r.metrics() for r in rows]
    return {name: interval([t[name] for t in table]) for name in names}


def by_type(types: Sequence[str], values: Sequence[float]) -> dict[str, tuple[int, int]]:
    """(hits, questions) per question type, in first-seen order."""
    out: dict[str, list[int]] = {}
    for t, v in zip(types, values, strict=True):
        out.setdefault(t, [0, 0])
        out[t][0] += int(v)
        out[t][1] += 1
    return {t: (h, n) for t, (h, n) in out.items()}
