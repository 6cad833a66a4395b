"""The karpathy-gpt command on the real corpus: ask in the terminal, eval on the public set."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import support.servers
from support.paths import REPO, SHARED, VENV_BIN
from support.servers import base_env, free_port


def run_cli(*args: str, index_dir) -> subprocess.CompletedProcess:
    return support.servers.run_cli(
        *args, env=base_env(KGPT_INDEX_DIR=str(index_dir), COLUMNS="200")
    )


def test_ask_prints_the_answer_and_its_sources(server, index_dir):
    result = run_cli("ask", "What is makemore?", index_dir=index_dir)
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("Sources")
    assert "[1]" in answer or "[2]" in answer or "[3]" in answer
    assert "makemore" in answer.lower()
    lines = [line for line in sources.splitlines() if line.startswith("[")]
    assert len(lines) == 3 and all("https://youtu.be/" in line for line in lines)


def eval_figures(questions, index_dir) -> dict:
    """``karpathy-gpt eval --json`` on ``questions`` (and the default off-topic sets), which
    must succeed."""
    result = run_cli("eval", "--json", "--questions", str(questions), index_dir=index_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def served(figures: dict, metric: str) -> int:
    """How many labelled questions the served retrieval is a hit on by ``metric`` (hit@2400,
    hit@4500, hit@1)."""
    return round(figures["retrieval"]["served"][metric]["mean"] * figures["questions"])


def answered(figures: dict, name: str, questions: int) -> int:
    """How many of ``questions`` the answers' ``name`` holds for (evidence_held,
    on_topic_refused, off_topic_refused)."""
    return round(figures["answers"][name]["mean"] * questions)


@pytest.mark.parametrize("question", ["", "   ", "why " * 600])
def test_ask_refuses_what_the_api_refuses(tmp_path, question):
    result = run_cli("ask", question, index_dir=tmp_path / "index")
    assert result.returncode == 2
    assert "KGPT_MAX_QUESTION_CHARS" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "index").exists()  # refused before any index is built


def test_eval_on_the_public_questions(server, index_dir):
    """At least what the served ranker and refusal (weights.json of the bank of 2,360, the
    adapted model) reach: hit@1 12/15 (13 before it: a loss BENCHMARKS.md reports, taken for
    +5 points of hit@1 on all 229 questions), hit@3 15/15, MRR@10 0.90, every answer's evidence
    within 2,400 characters, 14/15 answers holding their evidence, none refused; the off-topic
    questions refused (109/109 with the weights fitted on them all). These questions were among
    those fitted on (in_sample): a drop is a regression, not a measure of the method (the
    cross-validated figures are eval --cv's)."""
    figures = eval_figures(SHARED / "eval" / "questions.jsonl", index_dir)
    assert figures["questions"] == 15
    assert figures["hit@3"] >= 15
    assert figures["hit@1"] >= 12
    assert figures["mrr@10"] >= 0.9
    assert served(figures, "hit@2400") == 15
    assert answered(figures, "evidence_held", 15) >= 14
    assert answered(figures, "on_topic_refused", 15) == 0
    off_topic = sum(n for _, n in figures["answers"]["off_by_type"].values())
    assert off_topic == 109  # the default sets: shared offtopic-dev and benchmarks' own
    assert answered(figures, "off_topic_refused", off_topic) >= 100
    # The shared labels were corrected (cross entropy: lectures 03, 05, 07): none is unreachable.
    assert figures["label_problems"] == []


def test_eval_warns_of_labels_no_passage_can_satisfy(server, index_dir, tmp_path):
    """A label accepting a lecture that never says the evidence can never be a hit: eval says so
    (lecture 02 teaches the negative log likelihood without ever naming cross entropy)."""
    labels = tmp_path / "labels.jsonl"
    rows = [
        {
            "question": "How does cross entropy relate to negative log likelihood?",
            "lectures": ["02", "03"],
            "evidence": "cross.?entropy",
        },
        {"question": "What is makemore?", "lectures": ["02", "99"], "evidence": "makemore"},
    ]
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("eval", "--questions", str(labels), index_dir=index_dir)
    assert result.returncode == 0, result.stderr
    assert "accepts lecture 02, but no passage of it matches the evidence" in result.stderr
    assert "accepts lecture 99, but not in the corpus" in result.stderr
    assert "hit@1 " in result.stdout
    result = run_cli("eval", "--json", "--questions", str(labels), index_dir=index_dir)
    problems = [
        (p["question"][:10], p["lecture"]) for p in json.loads(result.stdout)["label_problems"]
    ]
    assert problems == [("How does c", "02"), ("What is ma", "99")]


def test_eval_on_the_development_questions(server, index_dir):
    """The project's 35 development questions, measured with the served weights (fitted on
    229 + 109 questions): hit@1 28/35, hit@3 31/35, MRR@10 0.854, hit@2400 31/35, 32/35 answers
    holding their evidence, none refused. (33/35 before windows next to a taken one were cut
    short instead of dropped: one answer's last piece now comes from another passage; over all
    229, cross-validated, answers -0.4 points [-1.8, +0.9].) (The weighted fusion this ranker
    replaced scored hit@1 29/35, hit@3 32/35, MRR@10 0.882, with its weight chosen on them.)"""
    figures = eval_figures(REPO / "benchmarks" / "data" / "dev-questions.jsonl", index_dir)
    assert figures["questions"] == 35
    assert figures["hit@1"] >= 28
    assert figures["hit@3"] >= 31
    assert figures["mrr@10"] >= 0.85
    assert served(figures, "hit@2400") >= 31
    assert answered(figures, "evidence_held", 35) >= 32
    assert answered(figures, "on_topic_refused", 35) == 0
    assert figures["label_problems"] == []


def first_lines(source, count: int, path) -> str:
    """The first ``count`` questions of ``source`` (JSON lines) in the file ``path``."""
    rows = [line for line in source.read_text().splitlines() if line.strip()][:count]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_eval_compares_with_the_baselines_question_by_question(server, index_dir, tmp_path):
    """--compare: the seed design and plain RRF measured on the same questions, and each paired
    with the served retrieval (questions won and lost, the difference and its interval)."""
    questions = first_lines(SHARED / "eval" / "questions.jsonl", 6, tmp_path / "q.jsonl")
    offtopic = first_lines(SHARED / "eval" / "offtopic-dev.jsonl", 3, tmp_path / "off.jsonl")
    result = run_cli(
        *("eval", "--compare", "--questions", questions, "--offtopic", offtopic),
        index_dir=index_dir,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "6 labelled questions, 3 off-topic; answerer extractive" in out
    percent = r"\s+\d+\.\d% \[\d+\.\d-\d+\.\d\]"
    for row in ("served", "seed design", "plain RRF"):
        assert re.search(rf"^{row}\s*(?:{percent}){{4}}$", out, re.MULTILINE), out
    paired = re.findall(
        r"^served vs (seed design|plain RRF), (hit@2400|hit@1): won (\d+), lost (\d+), "
        r"([+-]\d+\.\d) points \[([+-]\d+\.\d), ([+-]\d+\.\d)\]$",
        out,
        re.MULTILINE,
    )
    assert {(name, metric) for name, metric, *_ in paired} == {
        (name, metric) for name in ("seed design", "plain RRF") for metric in ("hit@2400", "hit@1")
    }, out
    for *_, won, lost, points, low, high in paired:
        # A hit is 0 or 1: the mean difference is (won - lost) over the questions.
        assert float(points) == pytest.approx(100 * (int(won) - int(lost)) / 6, abs=0.06)
        assert float(low) <= float(points) <= float(high)


def test_eval_cross_validates_on_a_small_question_file(server, index_dir, tmp_path):
    """--cv: every question ranked, answered and refused (or not) by models fitted without its
    fold, beside the served figures; it measures only, the served weights stay as they are."""
    weights = REPO / "src" / "karpathy_gpt" / "weights.json"
    before = weights.read_bytes()
    questions = first_lines(SHARED / "eval" / "questions.jsonl", 10, tmp_path / "q.jsonl")
    offtopic = first_lines(SHARED / "eval" / "offtopic-dev.jsonl", 8, tmp_path / "off.jsonl")
    result = run_cli(
        *("eval", "--cv", "--folds", "2", "--json", "--questions", questions),
        *("--offtopic", offtopic),
        index_dir=index_dir,
    )
    assert result.returncode == 0, result.stderr
    assert "2-fold cross-validation" in result.stderr
    figures = json.loads(result.stdout)
    assert figures["questions"] == 10 and len(figures["ranks"]) == 10
    assert list(figures["retrieval"]) == ["served", "cross-validated"]
    for row in figures["retrieval"].values():
        assert set(row) == {"hit@2400", "hit@4500", "hit@1", "mrr@10"}
        assert all(0 <= e["low"] <= e["mean"] <= e["high"] <= 1 for e in row.values()), row
    answers = figures["answers"]
    assert answers["answerer"] == "extractive" and answers["longest"] <= 700
    for name in ("evidence_held", "on_topic_refused", "off_topic_refused"):
        assert 0 <= answers[name]["low"] <= answers[name]["mean"] <= answers[name]["high"] <= 1
    curve = figures["refusal_curve"]
    assert curve and [p["threshold"] for p in curve] == sorted(p["threshold"] for p in curve)
    # A higher threshold refuses less, of either kind.
    for kind in ("on_topic_refused", "off_topic_refused"):
        shares = [p[kind] for p in curve]
        assert shares == sorted(shares, reverse=True), curve
    assert weights.read_bytes() == before


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("KGPT_CHUNK_SIZE=abc", "KGPT_CHUNK_SIZE='abc'"),
        ("KGPT_ANSWERER=bogus", "KGPT_ANSWERER"),
        ("KGPT_GGUF=/nonexistent/model.gguf", "no such file"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_not_a_traceback(tmp_path, setting, named):
    name, value = setting.split("=")
    env = base_env(KGPT_INDEX_DIR=str(tmp_path / "index"), **{name: value})
    commands = [
        [str(VENV_BIN / "uvicorn"), "karpathy_app:app", "--port", str(free_port())],
        [str(VENV_BIN / "karpathy-gpt"), "serve", "--port", str(free_port())],
        [str(VENV_BIN / "karpathy-gpt"), "ask", "What is makemore?"],
    ]
    for command in commands:
        result = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0, command
        assert named in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_ingest_reports_an_unusable_corpus_clearly(tmp_path):
    result = run_cli("ingest", str(tmp_path), index_dir=tmp_path / "index")
    assert result.returncode == 2
    assert "videos.json" in result.stderr and "Traceback" not in result.stderr
