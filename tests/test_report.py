"""``karpathy-gpt eval --report``: report.md with the retrieval table (served, cross-validated,
the baselines), the answers and the ones that missed beside their references, the off-topic
questions answered anyway, provenance, and the two PNG plots."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from support.paths import REPO
from support.servers import free_port
from support.timed_corpus import write_timed_corpus

from karpathy_gpt.chunking import Chunk
from karpathy_gpt.evaluation import Labelled, label_problems

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
    {
        # No lecture says it: never a hit, and an answer that misses its evidence for sure.
        "question": "What is the capital of France?",
        "reference_answer": "Paris is the capital of France.",
        "lectures": ["04"],
        "evidence": "Paris",
    },
]
OFFTOPIC = [
    {"question": "How do I bake sourdough bread?", "type": "unrelated"},
    {"question": "Who won the football world cup in 2018?", "type": "unrelated"},
    {"question": "How does LoRA fine-tune a big model with low-rank updates?", "type": "ml-absent"},
]
PERCENT = r"\s*\d+\.\d% \[\d+\.\d-\d+\.\d\]"


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


def section(report: str, title: str) -> str:
    """The text under the heading that starts with ``title``, up to the next heading."""
    heading = re.search(rf"^{re.escape(title)}.*$", report, re.MULTILINE)
    assert heading, f"no {title!r} in {report}"
    return re.split(r"^#", report[heading.end() :], maxsplit=1, flags=re.MULTILINE)[0]


def table_rows(text: str) -> list[list[str]]:
    """The cells of a markdown table's body rows (header and rule left out)."""
    rows = [line for line in text.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


@pytest.fixture
def inputs(tmp_path):
    corpus = write_timed_corpus(tmp_path / "lectures")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in QUESTIONS))
    offtopic = tmp_path / "offtopic.jsonl"
    offtopic.write_text("\n".join(json.dumps(q) for q in OFFTOPIC))
    env = {
        "KGPT_INDEX_DIR": str(tmp_path / "index"),
        "KGPT_CHUNK_SIZE": "200",
        "KGPT_CHUNK_OVERLAP": "50",
        "KGPT_ANSWERER": "extractive",
        "COLUMNS": "200",
    }
    args = ["--corpus", str(corpus), "--questions", str(questions), "--offtopic", str(offtopic)]
    return env, args


def test_eval_report_writes_markdown_and_plots(tmp_path, inputs):
    env, args = inputs
    out = tmp_path / "report"
    result = report_run(env, *args, "--report", str(out))
    assert result.exit_code == 0, result.output
    assert f"report written: {out / 'report.md'}" in result.output
    report = (out / "report.md").read_text()

    for plot in ("retrieval.png", "refusal.png"):
        data = (out / plot).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000
        assert f"]({plot})" in report

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert f"| commit | {commit}" in report
    assert "| questions | 4 labelled, 3 off-topic |" in report
    assert "| answerer | extractive |" in report
    assert "| passages per answer | 3 |" in report

    # Retrieval: the served row only (no --cv, no --compare). Three clearly worded questions,
    # each one's lecture first; the Paris question is never a hit.
    rows = table_rows(section(report, "## Retrieval"))
    assert [row[0] for row in rows] == ["served"]
    assert all(re.fullmatch(PERCENT, cell) for cell in rows[0][1:]), rows
    assert rows[0][3].startswith("75.0% "), rows  # hit@1: 3 of 4

    answers = section(report, "## Answers (served, extractive)")
    for line in ("evidence in the first 800 characters", "on-topic questions refused"):
        assert re.search(rf"^- {line}:{PERCENT}$", answers, re.MULTILINE), answers
    refused = re.search(r"^- off-topic questions refused:\s*(\d+\.\d)%", answers, re.MULTILINE)
    assert refused, answers

    missed = section(report, "### Answers that miss their evidence")
    missed_rows = table_rows(missed)
    count = re.search(r"^### Answers that miss their evidence \((\d+)\)$", report, re.MULTILINE)
    assert count and int(count.group(1)) == len(missed_rows) >= 1
    paris = [row for row in missed_rows if row[1] == QUESTIONS[3]["question"]]
    assert len(paris) == 1, missed  # beside its reference answer
    paris = paris[0]
    assert paris[3] == QUESTIONS[3]["reference_answer"] and "Paris" not in paris[2]

    # The off-topic questions answered anyway: as many rows as the share not refused says.
    anyway = table_rows(section(report, "### Off-topic questions answered anyway"))
    assert len(anyway) == round(len(OFFTOPIC) * (1 - float(refused.group(1)) / 100))
    offtopic = {q["question"]: q["type"] for q in OFFTOPIC}
    assert all(offtopic[question] == kind for kind, question, _ in anyway), anyway

    # eval itself still names the labels no passage can satisfy.
    assert "accepts lecture 09, but not in the corpus" in result.output
    assert "accepts lecture 04, but no passage of it matches the evidence /Paris/" in result.output


def test_report_with_cross_validation_and_the_baselines(tmp_path, inputs):
    env, args = inputs
    out = tmp_path / "report"
    result = report_run(env, *args, "--cv", "--compare", "--report", str(out))
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    rows = table_rows(section(report, "## Retrieval"))
    assert [row[0] for row in rows] == ["served", "cross-validated", "seed design", "plain RRF"]
    assert all(re.fullmatch(PERCENT, cell) for row in rows for cell in row[1:]), rows
    # The answers judged are the cross-validated ones, and the plots are there.
    assert "## Answers (cross-validated, extractive)" in report
    assert (out / "retrieval.png").is_file() and (out / "refusal.png").is_file()


def test_an_answerer_that_cannot_be_reached_fails_the_report_with_a_message(tmp_path, inputs):
    env, args = inputs
    closed = free_port()
    env.update(KGPT_ANSWERER="openai", OPENAI_BASE_URL=f"http://127.0.0.1:{closed}/v1")
    failed = report_run(env, *args, "--report", str(tmp_path / "failed"))
    assert failed.exit_code == 1, failed.output
    assert "the answerer failed" in failed.output and f"127.0.0.1:{closed}" in failed.output
    assert "Traceback" not in failed.output
    assert not (tmp_path / "failed" / "report.md").exists()
