"""The index cache: warm loads, re-index on change, atomic writes, recovery from damage."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
from support.corpus import SENTENCES, write_corpus
from support.paths import CORPUS, VENV_BIN
from support.servers import base_env
from support.streams import passages, post_sse

from karpathy_gpt.config import Settings
from karpathy_gpt.index.backend import ingest, open_index
from karpathy_gpt.index.build import index_path
from karpathy_gpt.store.local import LocalStore


@pytest.fixture
def small(tmp_path) -> Settings:
    corpus = write_corpus(
        tmp_path / "corpus",
        {"grad": " ".join(SENTENCES[:3] * 4), "attn": " ".join(SENTENCES[2:] * 4)},
    )
    return Settings(corpus_dir=corpus, index_dir=tmp_path / "index")


def refusing_to_embed(embedder, monkeypatch):
    """``embedder``, made to fail the test if anything is embedded: a load, not a rebuild.
    (A wall-clock bound said the same, but a busy machine can break it.)"""

    def embed(*args, **kwargs):
        raise AssertionError("the index was rebuilt: something was embedded")

    monkeypatch.setattr(embedder, "embed", embed)
    return embedder


def test_second_open_loads_without_rebuilding(small, embedder, monkeypatch):
    first = open_index(small, embedder)
    built = index_path(small)
    mtime = (built / "meta.json").stat().st_mtime_ns
    second = ingest(small, refusing_to_embed(embedder, monkeypatch))
    assert not second.built
    second = second.store
    assert (built / "meta.json").stat().st_mtime_ns == mtime
    assert [c.text for c in second.chunks] == [c.text for c in first.chunks]
    assert second.embeddings.shape == (len(first.chunks), 384)


def test_changed_corpus_is_reindexed(small, embedder):
    open_index(small, embedder)
    before = index_path(small)
    (small.corpus_dir / "grad.txt").write_text(" ".join(SENTENCES[3:] * 3))
    store = open_index(small, embedder)
    after = index_path(small)
    assert after != before and (after / "meta.json").is_file()
    assert all("Backpropagation" not in c.text for c in store.chunks if c.metadata["id"] == "01")


def test_changed_settings_are_reindexed(small, embedder):
    open_index(small, embedder)
    smaller = small.model_copy(update={"chunk_size": 200, "chunk_overlap": 50})
    assert index_path(smaller) != index_path(small)
    store = open_index(smaller, embedder)
    assert max(len(c.text) for c in store.chunks) <= 200


def test_a_crash_while_saving_leaves_the_old_index(small, embedder, monkeypatch):
    open_index(small, embedder)
    old = index_path(small)
    (small.corpus_dir / "attn.txt").write_text(" ".join(SENTENCES[:2] * 5))
    new = index_path(small)

    def crash(*args, **kwargs):
        raise OSError("disk pulled out mid-write")

    monkeypatch.setattr("bm25s.BM25.save", crash)
    with pytest.raises(OSError):
        open_index(small, embedder)
    assert not new.exists(), "a half-written index must never sit under its final name"
    assert LocalStore.load(old).chunks


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_index_is_rebuilt_not_a_crash(small, embedder, damage, caplog):
    store = open_index(small, embedder)
    path = index_path(small)
    if damage == "truncate":
        (path / "embeddings.npy").write_bytes(b"\x93NUMPY")
    else:
        shutil.rmtree(path / "bm25")
    rebuilt = open_index(small, embedder)
    assert len(rebuilt) == len(store)
    assert LocalStore.load(path).embeddings.shape == store.embeddings.shape
    assert "rebuilding" in caplog.text


def test_kill_9_during_ingest_leaves_the_previous_index_in_use(server, index_dir, monkeypatch):
    """A forced re-ingest of the real corpus killed mid-way; the server's index is untouched."""
    settings = Settings(corpus_dir=CORPUS, index_dir=index_dir)
    served = ingest(settings)  # the server's index (and the adapted model it was embedded by)
    served.store.close()
    assert not served.built
    path = index_dir / served.key
    meta_before = (path / "meta.json").read_bytes()
    proc = subprocess.Popen(
        [str(VENV_BIN / "karpathy-gpt"), "ingest", "--force"],
        env=base_env(KGPT_INDEX_DIR=str(index_dir), COLUMNS="200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = b""
    deadline = time.monotonic() + 120
    while b"texts embedded" not in output and time.monotonic() < deadline:
        output += os.read(proc.stdout.fileno(), 4096)
    assert b"texts embedded" in output, output[-2000:]
    proc.send_signal(signal.SIGKILL)  # a tenth of the way through embedding
    assert b"index ready" not in output
    proc.wait(10)
    assert (path / "meta.json").read_bytes() == meta_before
    _, events = post_sse(server.url + "/karpathy-docs", data={"question": "What is makemore"})
    assert len(passages(events)) == 3, "the running server keeps serving the previous index"
    opened = ingest(settings, refusing_to_embed(served.embedder, monkeypatch))
    assert not opened.built, "the old index should load, not be rebuilt"
    store = opened.store
    assert len(store) > 500


def test_sentence_vectors_line_up_with_each_chunks_sentences(small, embedder):
    """The ranker and the answerer read these rows instead of embedding on every question; a
    passage's rows are its own sentences', in order."""
    from karpathy_gpt.retrieval import Retriever
    from karpathy_gpt.text import normalise, sentence_spans

    store = open_index(small, embedder)
    query = "self-attention between tokens"
    for candidate in store.candidates(query, embedder.embed_one(query)).items:
        text = candidate.chunk.text
        texts = [normalise(text[s:e]) for s, e in sentence_spans(text)]
        assert candidate.sentence_vectors.shape == (len(texts), 384)
        product = candidate.sentence_vectors @ embedder.embed(texts).T
        assert abs(product - 1).diagonal().max() < 1e-4
    for hit in Retriever(store, embedder).search(query, k=len(store)).hits:
        texts = [normalise(hit.chunk.text[s:e]) for s, e in hit.sentence_spans]
        product = hit.sentence_vectors @ embedder.embed(texts).T
        assert abs(product - 1).diagonal().max() < 1e-4
