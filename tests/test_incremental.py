"""Incremental ingest: adding, changing or removing one lecture embeds only that lecture's texts,
and the result is the index a full rebuild would make."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from support.timed_corpus import SRT_CUES, srt, write_timed_corpus

from karpathy_gpt.config import Settings
from karpathy_gpt.embedding_cache import EmbeddingCache, file_name
from karpathy_gpt.index.backend import ingest
from karpathy_gpt.store.local import LocalStore
from karpathy_gpt.text import normalise, sentence_spans

NEW_CUES = [
    "An MLP embeds each character into a small vector.",
    "The embeddings of the last three characters are concatenated,",
    "passed through a tanh hidden layer,",
    "and a softmax gives the next character's probabilities.",
    "The embedding table is trained with the rest of the network.",
]


@pytest.fixture
def settings(tmp_path) -> Settings:
    corpus = write_timed_corpus(tmp_path / "lectures", broken=False)
    return Settings(
        corpus_dir=corpus, index_dir=tmp_path / "index", chunk_size=200, chunk_overlap=50
    )


def chunks_of(store: LocalStore, lecture_id: str) -> list[str]:
    return [c.text for c in store.chunks if c.metadata["id"] == lecture_id]


def embedded_texts(store: LocalStore, lecture_id: str | None = None) -> set[str]:
    """What an index embeds: the searchable text of each chunk and of each of its sentences."""
    out = set()
    for chunk in store.chunks:
        if lecture_id is None or chunk.metadata["id"] == lecture_id:
            out.add(normalise(chunk.text))
            out.update(normalise(chunk.text[s:e]) for s, e in sentence_spans(chunk.text))
    return out


def add_lecture(settings: Settings) -> None:
    corpus = settings.corpus_dir
    (corpus / "06-mlp.srt").write_text(srt(NEW_CUES))
    entries = json.loads((corpus / "videos.json").read_text())
    entries.append(
        {"id": "06", "title": "MLP", "transcript": "06-mlp.srt", "video_id": "Mlp_Lecture"}
    )
    (corpus / "videos.json").write_text(json.dumps(entries))


def test_only_the_changed_lecture_is_embedded(settings, embedder):
    first = ingest(settings, embedder)
    assert first.built and first.embedded_chunks == len(first.store)
    assert first.reused == 0 and (settings.index_dir / file_name(embedder.name)).is_file()

    again = ingest(settings, embedder)
    assert not again.built and again.embedded == 0

    add_lecture(settings)
    added = ingest(settings, embedder)
    assert added.built and len(added.store) > len(first.store)
    assert added.embedded_chunks == len(chunks_of(added.store, "06")) > 0
    assert added.embedded == len(embedded_texts(added.store, "06") - embedded_texts(first.store))
    assert added.reused == len(embedded_texts(first.store))

    # Change one lecture: the bigram SubRip gets new words in two cues.
    changed_cues = [*SRT_CUES[:-2], "Its context is one character,", "which is far too short."]
    (settings.corpus_dir / "02-bigram.srt").write_text(srt(changed_cues))
    changed = ingest(settings, embedder)
    new_texts = set(chunks_of(changed.store, "02")) - set(chunks_of(added.store, "02"))
    assert changed.embedded_chunks == len(new_texts) > 0
    assert changed.embedded_chunks < len(chunks_of(changed.store, "02"))
    assert changed.embedded == len(embedded_texts(changed.store) - embedded_texts(added.store))

    # Remove a lecture: nothing to embed at all.
    entries = json.loads((settings.corpus_dir / "videos.json").read_text())
    (settings.corpus_dir / "videos.json").write_text(
        json.dumps([e for e in entries if e["id"] != "03"])
    )
    removed = ingest(settings, embedder)
    assert removed.built and removed.embedded == 0
    assert not chunks_of(removed.store, "03") and chunks_of(removed.store, "06")

    # The incremental index is the one a forced rebuild (everything re-embedded) makes.
    full = ingest(settings, embedder, force=True)
    assert full.embedded_chunks == len(full.store) and full.reused == 0
    assert [c.text for c in full.store.chunks] == [c.text for c in removed.store.chunks]
    assert [c.metadata for c in full.store.chunks] == [c.metadata for c in removed.store.chunks]
    assert np.allclose(full.store.embeddings, removed.store.embeddings, atol=1e-5)
    assert np.allclose(full.store.sentence_vectors, removed.store.sentence_vectors, atol=1e-5)


def test_a_damaged_cache_only_costs_time(settings, embedder):
    first = ingest(settings, embedder)
    (settings.index_dir / file_name(embedder.name)).write_bytes(b"PK\x03\x04 not really a zip")
    add_lecture(settings)
    rebuilt = ingest(settings, embedder)
    assert rebuilt.built and rebuilt.embedded_chunks == len(rebuilt.store)
    assert np.allclose(
        rebuilt.store.embeddings[: len(first.store)], first.store.embeddings, atol=1e-5
    )
    assert ingest(settings, embedder).embedded == 0


def test_ingest_command_counts_what_it_embedded(settings):
    from typer.testing import CliRunner

    from karpathy_gpt.cli import app

    env = {"KGPT_INDEX_DIR": str(settings.index_dir), "KGPT_CHUNK_SIZE": "200", "COLUMNS": "200"}
    corpus = settings.corpus_dir
    (corpus / "07-broken.srt").write_text("1\n00:00:01,000 -> 00:00:02,000\nbad arrow\n")
    entries = json.loads((corpus / "videos.json").read_text())
    entries.append({"id": "07", "title": "Broken", "transcript": "07-broken.srt", "video_id": "x"})
    (corpus / "videos.json").write_text(json.dumps(entries))

    from karpathy_gpt.config import get_settings

    get_settings.cache_clear()
    try:
        first = CliRunner().invoke(app, ["ingest", str(corpus)], env=env)
        add_lecture(settings)
        second = CliRunner().invoke(app, ["ingest", str(corpus)], env=env)
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    assert "07-broken.srt, line 2" in first.output and "left out" in first.output
    assert "from 4 lectures" in first.output and "0 vectors reused" in first.output
    assert second.exit_code == 0, second.output
    path = re.search(r" at (\S+) \(", second.output).group(1)
    store = LocalStore.load(Path(path))
    assert f"embedded {len(chunks_of(store, '06'))} chunks" in second.output


def test_the_cache_keeps_every_key_it_saves(tmp_path):
    """A SHA-256 digest can end in zero bytes; those keys must survive the round trip."""
    cache = EmbeddingCache(tmp_path / file_name("model"), "model")
    texts = [f"text {n}" for n in range(2000)]
    assert any(cache._key(t).endswith(b"\0") for t in texts)
    vectors = np.random.default_rng(0).standard_normal((len(texts), 4)).astype(np.float32)
    cache.add(texts, vectors)
    cache.get(texts, 4)
    cache.save()
    loaded = EmbeddingCache.load(tmp_path, "model")
    assert loaded.missing(texts) == []
    assert np.array_equal(loaded.get(texts, 4), vectors)
    assert EmbeddingCache.load(tmp_path, "another model").missing(texts) == texts
