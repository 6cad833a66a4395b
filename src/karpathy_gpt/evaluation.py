"""Retrieval quality on labelled questions: hit@1, hit@3 and MRR@10.

A labelled question lists the lectures that answer it and an evidence regex; a retrieved passage
is a hit when it comes from one of those lectures and its text matches the regex.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .config import REPO_ROOT
from .retrieval import Retriever
from .store import Hit

DEFAULT_QUESTIONS = REPO_ROOT.parent / "shared" / "eval" / "questions.jsonl"


@dataclass
class Labelled:
    question: str
    lectures: list[str]
    evidence: re.Pattern[str]
    reference_answer: str = ""

    def is_hit(self, hit: Hit) -> bool:
        return hit.chunk.metadata["id"] in self.lectures and bool(
            self.evidence.search(hit.chunk.text)
        )


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


def first_hit_rank(question: Labelled, hits: list[Hit]) -> int | None:
    return next((n for n, hit in enumerate(hits, start=1) if question.is_hit(hit)), None)


def evaluate(retriever: Retriever, questions: list[Labelled]) -> Scores:
    ranks = [first_hit_rank(q, retriever.search(q.question, k=10).hits) for q in questions]
    return Scores(
        total=len(questions),
        hit_at_1=sum(r is not None and r <= 1 for r in ranks),
        hit_at_3=sum(r is not None and r <= 3 for r in ranks),
        mrr_at_10=sum(1.0 / r for r in ranks if r) / max(len(questions), 1),
        ranks=ranks,
    )
