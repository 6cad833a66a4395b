"""How a retrieval and an answer are scored, and the intervals around the scores."""

from __future__ import annotations

import re

from support.paths import CORPUS

from karpathy_gpt.evaluation.labels import DEFAULT_LABELLED, Labelled, load_questions
from karpathy_gpt.evaluation.metrics import found, holds_evidence, interval, paired, within_budget

QUESTION = Labelled("how many params?", ["01"], re.compile("41 parameters", re.I))


def test_the_evidence_counts_only_inside_the_budget_and_an_accepted_lecture():
    filler = "x" * 2390
    passages = [("01", filler), ("02", "it has 41 parameters"), ("01", "so 41 parameters here")]
    assert not within_budget(QUESTION, passages, 2400)  # lecture 02 is not accepted
    assert within_budget(QUESTION, passages, 4500)
    assert not within_budget(QUESTION, [("01", filler + "... 41 parameters")], 2400)
    result = found(QUESTION, passages)
    assert result.rank == 3 and result.within == {2400: False, 4500: True}
    assert result.metrics()["mrr@10"] == 1 / 3 and result.metrics()["hit@1"] == 0.0


def test_an_answer_holds_its_evidence_in_its_first_800_characters():
    assert holds_evidence(QUESTION, "In total this MLP has 41 parameters [1]")
    assert not holds_evidence(QUESTION, "y" * 800 + " 41 parameters")


def test_intervals_and_paired_differences():
    ones = interval([1.0] * 20)
    assert (ones.mean, ones.low, ones.high) == (1.0, 1.0, 1.0)
    half = interval([0.0, 1.0] * 50)
    assert half.low < 0.5 < half.high
    better = paired([1, 1, 1, 0, 1], [0, 1, 0, 0, 1])
    assert (better.won, better.lost) == (2, 0) and better.difference.mean == 0.4


def test_every_default_label_quotes_its_lecture_and_its_evidence_is_in_the_quote():
    """The labelled sets eval reads by default: each ``quote`` is the words of a lecture it
    accepts, and its evidence regex matches that quote (a label that cannot be a hit, or that
    counts the wrong place, would skew every figure fitted or measured on it)."""

    def words(text: str) -> str:
        return " ".join(text.split())

    transcripts = {p.name[:2]: words(p.read_text(encoding="utf-8")) for p in CORPUS.glob("*.txt")}
    checked = 0
    for path in DEFAULT_LABELLED:
        for q in load_questions(path):
            if not q.quote:
                continue
            assert any(words(q.quote) in transcripts[lecture] for lecture in q.lectures), q.question
            assert q.evidence.search(q.quote), q.question
            checked += 1
    assert checked >= 106 + 73
