"""``karpathy-gpt eval --report``: report.md with retrieval per ranking and chunk size, answers
beside their references, provenance, and the PNG plots."""

from __future__ import annotations

import csv
import json
import re
import subprocess

import pytest
from support.paths import REPO
from support.servers import free_port
from support.timed_corpus import write_timed_corpus

from karpathy_gpt.chunking import Chunk
from karpathy_gpt.evaluation import Labelled, label_problems, rouge_l_recall

pytestmark = pytest.mark.slow

QUESTIONS = [
    {
        "question": "Why do we zero the gradients before the backward pass?",
        "reference_answer": "Backward adds into the grad, so gradients would accumulate.",
        "lectures": ["01"],
        "evidence": "zero|accumulate",
    },
    {
        "question": "What does a bigram model predict?",
        "reference_answer": "The next character from the previous character only.",
        "lectures": ["02"],
        "evidence": "bigram",
    },
    {
        "question": "What do queries and keys do in self attention?",
        "reference_answer": "The dot product of a query with the keys says how much attention.",
        "lectures": ["03", "09"],  # the corpus has no lecture 09: a label problem
        "evidence": "quer",
    },
]


def test_rouge_l_recall_counts_reference_words_in_order():
    assert rouge_l_recall("the cat sat on the mat [1]", "the cat sat") == 1.0
    assert rouge_l_recall("sat the cat", "the cat sat") == pytest.approx(2 / 3)
    assert rouge_l_recall("nothing alike", "the cat sat") == 0.0
    assert rouge_l_recall("anything", "") == 0.0


def test_label_problems_name_lectures_no_passage_can_satisfy():
    chunks = [
        Chunk("the bigram model looks at one character", {"id": "02"}),
        Chunk("cross entropy is the negative log likelihood", {"id": "03"}),
    ]
    satisfiable = Labelled("q1", ["02", "03"], re.compile("bigram|cross.entropy", re.I))
    evidence_missing = Labelled("q2", ["02", "03"], re.compile("cross.entropy", re.I))
    lecture_missing = Labelled("q3", ["03", "09"], re.compile("entropy", re.I))
    problems = label_problems([satisfiable, evidence_missing, lecture_missing], chunks)
    assert [(p.question, p.lecture) for p in problems] == [("q2", "02"), ("q3", "09")]
    assert "/cross.entropy/" in problems[0].reason and problems[1].reason == "not in the corpus"


def report_run(env: dict[str, str], *args: str):
    """``karpathy-gpt eval --report ...`` in this process, with ``env`` as its environment."""
    from typer.testing import CliRunner

    from karpathy_gpt.cli import app
    from karpathy_gpt.config import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["eval", *args], env=env)
    finally:
        get_settings.cache_clear()


def test_eval_report_writes_markdown_and_plots(tmp_path):
    corpus = write_timed_corpus(tmp_path / "lectures")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in QUESTIONS))
    test_set = tmp_path / "test-set.csv"
    with test_set.open("w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL)
        writer.writerow(["question", "answer", ""])
        for q in QUESTIONS[:2]:
            writer.writerow([q["question"], q["reference_answer"], ""])
    out = tmp_path / "report"
    env = {
        "KGPT_INDEX_DIR": str(tmp_path / "index"),
        "KGPT_CHUNK_SIZE": "200",
        "KGPT_CHUNK_OVERLAP": "50",
        "KGPT_ANSWERER": "extractive",
        "COLUMNS": "200",
    }
    inputs = ["--corpus", str(corpus), "--questions", str(questions), "--test-set", str(test_set)]
    result = report_run(env, *inputs, "--chunk-sizes", "200,400", "--report", str(out))
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()

    for plot in ("retrieval.png", "answers.png"):
        data = (out / plot).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000
        assert f"]({plot})" in report

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert f"| commit | {commit}" in report
    assert "| chunk size / overlap (served) | 200 / 50 |" in report
    assert "| answerer | extractive |" in report

    rows = re.findall(r"^\| (\d+) \| (dense|bm25|hybrid) \| (\d+)/3 \| (\d+)/3 \| ([\d.]+) \|$",
                      report, re.MULTILINE)  # fmt: skip
    assert {(size, mode) for size, mode, *_ in rows} == {
        (s, m) for s in ("200", "400") for m in ("dense", "bm25", "hybrid")
    }
    assert all(int(h1) <= int(h3) for *_, h1, h3, _ in rows)
    # Three lectures, three clearly worded questions: hybrid finds each one's lecture first.
    assert ("200", "hybrid", "3", "3", "1.000") in rows

    labels = report.split("### Labels")[1].split("## Answers")[0]
    assert "| What do queries and keys do in self attention? | 09 | not in the corpus |" in labels
    assert labels.count("| not in the corpus |") == 1

    assert re.search(r"\*\*\d/3\*\* answers to the labelled questions", report)
    side_by_side = report.split("### Test set")[1]
    for q in QUESTIONS[:2]:
        assert q["question"] in side_by_side and q["reference_answer"] in side_by_side
    recalls = re.findall(r"^\| (\d\.\d\d) \| What|^\| (\d\.\d\d) \| Why", side_by_side, re.M)
    assert len(recalls) == 2

    # The same report with an answer provider that cannot be reached: a message, no traceback.
    closed = free_port()
    env.update(KGPT_ANSWERER="openai", OPENAI_BASE_URL=f"http://127.0.0.1:{closed}/v1")
    failed = report_run(env, *inputs, "--chunk-sizes", "200", "--report", str(tmp_path / "failed"))
    assert failed.exit_code == 1, failed.output
    assert "the answerer failed" in failed.output and f"127.0.0.1:{closed}" in failed.output
    assert not (tmp_path / "failed" / "report.md").exists()
