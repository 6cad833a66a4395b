"""Retrieval quality on labelled questions (hit@1, hit@3, MRR@10) and answer checks.

A labelled question lists the lectures that answer it and an evidence regex; a retrieved passage
is a hit when it comes from one of those lectures and its text matches the regex. Answers are
checked for holding that evidence, and scored against reference answers by ROUGE-L recall.
Labels are checked too: an accepted lecture none of whose passages matches the evidence (or
that the corpus lacks) can never count as a hit, whatever the ranking.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .chunking import Chunk
from .config import REPO_ROOT
from .retrieval import Retriever
from .store import Hit
from .store.local import LocalStore
from .text import normalise

DEFAULT_QUESTIONS = REPO_ROOT.parent / "shared" / "eval" / "questions.jsonl"
DEFAULT_TEST_SET = REPO_ROOT.parent / "shared" / "eval" / "test-set.csv"
MODES = ("dense", "bm25", "hybrid")


@dataclass
class Labelled:
    question: str
    lectures: list[str]
    evidence: re.Pattern[str]
    reference_answer: str = ""

    def is_hit(self, hit: Hit | Chunk) -> bool:
        chunk = hit.chunk if isinstance(hit, Hit) else hit
        return chunk.metadata["id"] in self.lectures and bool(self.evidence.search(chunk.text))


@dataclass
class Scores:
    total: int
    hit_at_1: int
    hit_at_3: int
    mrr_at_10: float
    ranks: list[int | None]  # first hit's 1-based rank per question, None if not in the top 10


def load_questions(path: Path) -> list[Labelled]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(
                Labelled(
                    question=row["question"],
                    lectures=[str(x) for x in row["lectures"]],
                    evidence=re.compile(row["evidence"], re.IGNORECASE),
                    reference_answer=row.get("reference_answer", ""),
                )
            )
    return out


@dataclass
class LabelProblem:
    question: str
    lecture: str
    reason: str


def label_problems(questions: list[Labelled], chunks: list[Chunk]) -> list[LabelProblem]:
    """Accepted lectures that no passage can satisfy: missing from the corpus, or none of their
    passages matches the question's evidence regex."""
    by_lecture: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_lecture.setdefault(chunk.metadata["id"], []).append(chunk)
    problems = []
    for q in questions:
        for lecture in q.lectures:
            if lecture not in by_lecture:
                problems.append(LabelProblem(q.question, lecture, "not in the corpus"))
            elif not any(q.evidence.search(c.text) for c in by_lecture[lecture]):
                problems.append(
                    LabelProblem(
                        q.question,
                        lecture,
                        f"no passage of it matches the evidence /{q.evidence.pattern}/",
                    )
                )
    return problems


def first_hit_rank(question: Labelled, hits: list[Hit] | list[Chunk]) -> int | None:
    return next((n for n, hit in enumerate(hits, start=1) if question.is_hit(hit)), None)


def evaluate(retriever: Retriever, questions: list[Labelled]) -> Scores:
    ranks = [first_hit_rank(q, retriever.search(q.question, k=10).hits) for q in questions]
    return score_ranks(ranks)


def ranked_chunks(
    store: LocalStore, embed: Callable[[str], object], question: str, mode: str, n: int = 10
) -> list[Chunk]:
    """The top ``n`` chunks for ``question`` by one ranking: dense, bm25, or hybrid (served)."""
    query = normalise(question)
    if mode == "bm25":
        return [store.chunks[i] for i in store.lexical_ranking(query, n)]
    vector = embed(query)
    if mode == "dense":
        return [store.chunks[i] for i in store.dense_ranking(vector, n)[0]]
    if mode == "hybrid":
        return [hit.chunk for hit in store.search(query, vector, n)]
    raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")


def score_ranks(ranks: list[int | None]) -> Scores:
    return Scores(
        total=len(ranks),
        hit_at_1=sum(r is not None and r <= 1 for r in ranks),
        hit_at_3=sum(r is not None and r <= 3 for r in ranks),
        mrr_at_10=sum(1.0 / r for r in ranks if r) / max(len(ranks), 1),
        ranks=ranks,
    )


def load_test_set(path: Path) -> list[tuple[str, str]]:
    """(question, reference answer) pairs from a CSV with ``question`` and ``answer`` columns."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    pairs = [(r["question"].strip(), (r.get("answer") or "").strip()) for r in rows]
    return [(q, a) for q, a in pairs if q]


_WORDS = re.compile(r"[a-z0-9]+")
_CITATION = re.compile(r"\[\d+\]")


def words(text: str) -> list[str]:
    return _WORDS.findall(_CITATION.sub(" ", text.lower()))


def rouge_l_recall(answer: str, reference: str) -> float:
    """Share of the reference's words that the answer holds in the same order (LCS / |ref|)."""
    a, r = words(answer), words(reference)
    if not r:
        return 0.0
    previous = [0] * (len(a) + 1)
    for word in r:
        current = [0]
        for j, other in enumerate(a, start=1):
            current.append(previous[j - 1] + 1 if word == other else max(previous[j], current[-1]))
        previous = current
    return previous[-1] / len(r)
