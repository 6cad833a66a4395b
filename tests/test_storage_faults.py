"""Faults an operator meets on disk, made for real: a full tmpfs, a read-only bind mount.

Each writer (the index folder and its swap, the embedding cache, the one-off ONNX export,
`eval --report`) turns them into one line naming the folder and what to do, exits non-zero,
leaves the previous files as they were and no temporary file behind; a server that cannot write
a new index serves the previous one and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.corpus import SENTENCES, write_corpus
from support.mounts import fill, read_only, tiny_disk
from support.servers import Server, base_env, run_cli
from support.streams import passages, post_sse

pytestmark = pytest.mark.slow

QUESTION = {"question": "What does a bigram model predict?", "k": 2}


def lectures(folder: Path) -> Path:
    return write_corpus(
        folder, {"grad": " ".join(SENTENCES[:3] * 6), "attn": " ".join(SENTENCES[2:] * 6)}
    )


def change(corpus: Path) -> None:
    (corpus / "attn.txt").write_text(" ".join(SENTENCES[:2] * 7))


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (the disk filler aside)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith("filler")
    }


def one_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def serves_the_previous_index(env: dict[str, str], log_path: Path, reason: str) -> None:
    """A server started now answers from the old index and says why, in one line."""
    server = Server(env, log_path)
    try:
        server.wait_ready()
        _, events = post_sse(server.url + "/karpathy-docs", data=QUESTION)
        assert len(passages(events)) == 2
    finally:
        server.stop()
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    told = [line for line in log.splitlines() if reason in line]
    assert len(told) == 1 and "serving the previous index meanwhile" in told[0], log[-3000:]


def test_ingest_on_a_full_disk_is_one_line_and_the_old_index_stays(tmp_path, output_dir):
    corpus = lectures(tmp_path / "corpus")
    with tiny_disk(tmp_path / "disk", "4m") as disk:
        index = disk / "index"
        env = base_env(KGPT_CORPUS_DIR=str(corpus), KGPT_INDEX_DIR=str(index), COLUMNS="300")
        assert run_cli("ingest", env=env).returncode == 0
        before = files(index)
        fill(disk)
        change(corpus)
        failed = run_cli("ingest", env=env)
        assert failed.returncode != 0
        line = one_error(failed.stderr)
        assert "no space left on the device" in line and str(index) in line
        assert "free" in line and "KGPT_INDEX_DIR" in line
        assert files(index) == before, "the previous files as they were, no temporary left"
        serves_the_previous_index(
            env, output_dir / "server-full-disk.log", "no space left on the device"
        )


def test_ingest_into_a_read_only_folder_is_one_line_and_the_old_index_stays(tmp_path, output_dir):
    corpus = lectures(tmp_path / "corpus")
    index = tmp_path / "index"
    env = base_env(KGPT_CORPUS_DIR=str(corpus), KGPT_INDEX_DIR=str(index), COLUMNS="300")
    assert run_cli("ingest", env=env).returncode == 0
    change(corpus)
    with read_only(index):
        before = files(index)
        failed = run_cli("ingest", env=env)
        assert failed.returncode != 0
        line = one_error(failed.stderr)
        assert "read-only" in line and str(index) in line and "KGPT_INDEX_DIR" in line
        assert files(index) == before
        serves_the_previous_index(env, output_dir / "server-read-only.log", "read-only")


def test_an_export_that_cannot_be_written_stops_with_one_line(tmp_path, output_dir):
    corpus = lectures(tmp_path / "corpus")
    models = tmp_path / "models"
    with read_only(models):
        env = base_env(
            KGPT_CORPUS_DIR=str(corpus),
            KGPT_INDEX_DIR=str(tmp_path / "index"),
            KGPT_MODEL_DIR=str(models),
            COLUMNS="300",
        )
        failed = run_cli("ingest", env=env, timeout=120)
        assert failed.returncode != 0
        line = one_error(failed.stderr)
        assert "ONNX export" in line and "read-only" in line and "KGPT_MODEL_DIR" in line
        assert not any(models.iterdir())
        server = Server(env, output_dir / "server-read-only-models.log")
        try:
            with pytest.raises(RuntimeError, match="server exited"):
                server.wait_ready(timeout=120)
        finally:
            server.stop()
        log = server.log_path.read_text()
        assert "Traceback" not in log, log[-3000:]
        assert len([row for row in log.splitlines() if "KGPT_MODEL_DIR" in row]) == 1, log


def test_a_report_into_a_read_only_folder_is_one_line(tmp_path):
    corpus = lectures(tmp_path / "corpus")
    questions = tmp_path / "questions.jsonl"
    labelled = {"question": QUESTION["question"], "lectures": ["01", "02"], "evidence": "bigram"}
    questions.write_text(json.dumps(labelled) + "\n")
    offtopic = tmp_path / "offtopic.jsonl"
    offtopic.write_text(json.dumps({"question": "How do I bake sourdough bread?"}) + "\n")
    env = base_env(
        KGPT_INDEX_DIR=str(tmp_path / "index"),
        KGPT_ANSWERER="extractive",
        KGPT_CHUNK_SIZE="200",
        KGPT_CHUNK_OVERLAP="50",
        COLUMNS="300",
    )
    out = tmp_path / "report"
    with read_only(out):
        failed = run_cli(
            *("eval", "--corpus", str(corpus), "--questions", str(questions)),
            *("--offtopic", str(offtopic), "--report", str(out)),
            env=env,
        )
    assert failed.returncode != 0
    line = one_error(failed.stderr)
    assert "read-only" in line and str(out) in line
