"""A real server started on a damaged index: one clear log line, a rebuild, and no crash loop.

The damage is what a full disk or a copy cut short leaves: a truncated file, a garbled header.
The corpus is small (two short lectures) so that every start takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.corpus import SENTENCES, write_corpus
from support.servers import Server, base_env
from support.streams import passages, post_sse

from karpathy_gpt.config import Settings
from karpathy_gpt.index.build import index_path

pytestmark = pytest.mark.slow


def damage_chunks(path: Path) -> None:
    data = (path / "chunks.json").read_bytes()
    (path / "chunks.json").write_bytes(data[: len(data) // 2])


def damage_embeddings(path: Path) -> None:
    with open(path / "embeddings.npy", "r+b") as f:
        f.write(b"\x00" * 64)


def damage_meta(path: Path) -> None:
    (path / "meta.json").write_text('{"key": "trunc')


def test_a_server_on_a_damaged_index_logs_it_rebuilds_and_then_loads_it(output_dir, tmp_path):
    corpus = write_corpus(
        tmp_path / "corpus",
        {"grad": " ".join(SENTENCES[:3] * 6), "attn": " ".join(SENTENCES[2:] * 6)},
    )
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    env = base_env(KGPT_CORPUS_DIR=str(corpus), KGPT_INDEX_DIR=str(settings.index_dir))

    def start(step: str) -> str:
        srv = Server(env, output_dir / f"server-damaged-index-{step}.log")
        try:
            srv.wait_ready()
            question = {"question": "What does a bigram model predict?", "k": 2}
            _, events = post_sse(srv.url + "/karpathy-docs", data=question)
            assert len(passages(events)) == 2
            assert "bigram" in passages(events)[0]["pageContent"]
        finally:
            srv.stop()
        return srv.log_path.read_text()

    assert "built index" in start("first")
    path = index_path(settings)
    for damage in (damage_chunks, damage_embeddings, damage_meta):
        damage(path)
        log = start(damage.__name__)
        complaint = [line for line in log.splitlines() if "; rebuilding it" in line]
        assert len(complaint) == 1, log[-3000:]
        assert str(path) in complaint[0] and "index" in complaint[0]
        assert "built index" in log and "Traceback" not in log
        assert "0 texts embedded" in log, "the embedding cache makes the rebuild cheap"

    again = start("again")
    assert "loaded index" in again and "rebuilding" not in again and "built index" not in again
