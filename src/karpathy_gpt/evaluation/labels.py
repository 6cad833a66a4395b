"""Labelled questions: on-topic ones (the lectures that answer them and an evidence regex of the
answer's own words) and off-topic ones (the lectures do not answer them); and the label check.

A retrieved passage is a hit when it comes from an accepted lecture and its text matches the
evidence. An accepted lecture none of whose passages matches the evidence (or that the corpus
lacks) can never count as a hit, whatever the ranking: ``label_problems`` finds those.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..chunking import Chunk
from ..config import REPO_ROOT

SHARED_EVAL = REPO_ROOT.parent / "shared" / "eval"
DEFAULT_QUESTIONS = SHARED_EVAL / "questions.jsonl"
#: Every labelled set ``karpathy-gpt eval`` reads by default (those that exist).
DEFAULT_LABELLED = (
    DEFAULT_QUESTIONS,
    SHARED_EVAL / "dev.jsonl",
    REPO_ROOT / "benchmarks" / "data" / "dev-questions.jsonl",
    REPO_ROOT / "benchmarks" / "data" / "learner-questions.jsonl",
)
DEFAULT_OFFTOPIC = (
    SHARED_EVAL / "offtopic-dev.jsonl",
    REPO_ROOT / "benchmarks" / "data" / "offtopic-own.jsonl",
)


@dataclass
class Labelled:
    question: str
    lectures: list[str]
    evidence: re.Pattern[str]
    reference_answer: str = ""
    type: str = ""  # fact, why, how, code, ...; the file's name when it gives none
    quote: str = ""  # the transcript's words that answer it, when labelled
    source: str = ""  # the name of the file it came from

    def holds(self, lecture: str, text: str) -> bool:
        """Whether ``text`` of ``lecture`` holds the answer."""
        return lecture in self.lectures and bool(self.evidence.search(text))


@dataclass
class OffTopic:
    question: str
    type: str = ""


def _rows(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_questions(path: Path) -> list[Labelled]:
    """The labelled (on-topic) questions of a JSON-lines file."""
    return [
        Labelled(
            question=row["question"],
            lectures=[str(x) for x in row["lectures"]],
            evidence=re.compile(row["evidence"], re.IGNORECASE),
            reference_answer=row.get("reference_answer", ""),
            type=row.get("type") or path.stem,
            quote=row.get("quote", ""),
            source=path.name,
        )
        for row in _rows(path)
    ]


def load_offtopic(path: Path) -> list[OffTopic]:
    """Questions the lectures do not answer (``question``, optional ``type``)."""
    return [OffTopic(row["question"], row.get("type") or path.stem) for row in _rows(path)]


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
