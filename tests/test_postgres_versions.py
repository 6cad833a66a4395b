"""PostgreSQL versions: upgrading an older schema, a read-only server, no-op re-ingest, pruning,
atomic switches under concurrent queries, and connections the server drops."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from support.corpus import MORE, SENTENCES, small_corpus
from support.database import versions

from karpathy_gpt.config import Settings
from karpathy_gpt.corpus import load_corpus
from karpathy_gpt.embedding import Embedder
from karpathy_gpt.index.backend import open_index
from karpathy_gpt.index.build import build_index
from karpathy_gpt.retrieval import Retriever
from karpathy_gpt.store.base import DatabaseError
from karpathy_gpt.store.postgres import (
    SCHEMA_VERSION,
    SEARCH_FORMAT,
    PostgresStore,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


# The schema of the release before postings (schema version 1), as it created it.
SCHEMA_1 = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    "CREATE TABLE kgpt_schema_version (version integer PRIMARY KEY, "
    "applied_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE kgpt_versions (id bigserial PRIMARY KEY, index_key text NOT NULL, "
    "meta jsonb NOT NULL, chunks integer NOT NULL, avg_length float8 NOT NULL DEFAULT 0, "
    "created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE kgpt_active (singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), "
    "version_id bigint NOT NULL REFERENCES kgpt_versions (id))",
    "CREATE TABLE kgpt_chunks (version_id bigint NOT NULL, ordinal integer NOT NULL, "
    "text text NOT NULL, metadata jsonb NOT NULL, embedding vector(384) NOT NULL, "
    "search tsvector NOT NULL, search_length integer NOT NULL, "
    "sentence_vectors vector(384)[] NOT NULL, PRIMARY KEY (version_id, ordinal)) "
    "PARTITION BY LIST (version_id)",
    "CREATE INDEX kgpt_chunks_embedding ON kgpt_chunks USING hnsw (embedding vector_cosine_ops)",
    "CREATE INDEX kgpt_chunks_search ON kgpt_chunks USING gin (search)",
    "CREATE TABLE kgpt_lexemes (version_id bigint NOT NULL REFERENCES kgpt_versions (id) "
    "ON DELETE CASCADE, lexeme text NOT NULL, chunks integer NOT NULL, "
    "PRIMARY KEY (version_id, lexeme))",
    "INSERT INTO kgpt_schema_version (version) VALUES (1)",
]


def schema_1_database(url: str, embedder: Embedder) -> None:
    """A database as the schema-1 release left it: one version, searched by tsvector."""
    with psycopg.connect(url) as conn:
        for statement in SCHEMA_1:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO kgpt_versions (index_key, meta, chunks, avg_length) "
            "VALUES ('old', '{\"search_format\": 2}', %s, 5)",
            (len(SENTENCES),),
        )
        conn.execute("CREATE TABLE kgpt_chunks_v1 PARTITION OF kgpt_chunks FOR VALUES IN (1)")
        start = 0
        for n, (text, vector) in enumerate(zip(SENTENCES, embedder.embed(SENTENCES), strict=True)):
            # The chunk metadata that release wrote (start_char/end_char in the lecture).
            meta = {"title": "old", "id": "01", "chunk": n, "link": "https://youtu.be/old"}
            meta.update(source="old 01", start_char=start, end_char=start + len(text))
            start += len(text) + 1
            conn.execute(
                "INSERT INTO kgpt_chunks VALUES (1, %s, %s, %s, %s::vector, "
                "to_tsvector('english', %s), 5, ARRAY[%s::vector])",
                (
                    n,
                    text,
                    json.dumps(meta),
                    str(vector.tolist()),
                    text,
                    str(vector.tolist()),
                ),
            )
        conn.execute("INSERT INTO kgpt_active VALUES (true, 1)")


def test_a_schema_1_database_is_upgraded_and_republished_at_the_next_ingest(
    database_url, embedder, tmp_path
):
    schema_1_database(database_url, embedder)
    store = PostgresStore(database_url)  # upgrades the schema in place
    try:
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT max(version) FROM kgpt_schema_version").fetchone() == (
                SCHEMA_VERSION,
            )
        # The old version is still served (it has no postings: by its vectors alone).
        found = store.candidates("bigram", embedder.embed_one("bigram"))
        assert len(found.items) == len(SENTENCES)
        assert all(c.lexical == 0 for c in found.items)
        nearest = min(found.items, key=lambda c: c.dense_rank)
        assert "bigram" in nearest.chunk.text
        hits = Retriever(store, embedder).search("What does a bigram model predict?", 2).hits
        assert hits and "bigram" in hits[0].chunk.text and hits[0].chunk.metadata["id"] == "01"
        assert not store.holds("old")
    finally:
        store.close()
    corpus = small_corpus(tmp_path / "corpus", SENTENCES + MORE[:2])
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    local = open_index(settings, embedder)
    pg = open_index(settings.model_copy(update={"database_url": database_url}), embedder)
    try:
        assert pg.active_version().meta["search_format"] == SEARCH_FORMAT
        assert versions(database_url) == [1, 2]
        for question in ["What does backpropagation compute?", "bigram", "layer norm"]:
            want = Retriever(local, embedder).search(question, 3).hits
            got = Retriever(pg, embedder).search(question, 3).hits
            assert [h.chunk.metadata for h in got] == [h.chunk.metadata for h in want]
    finally:
        pg.close()


def test_a_read_only_database_without_the_current_schema_says_what_to_do(database_url, embedder):
    def read_only(on: bool) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(
                f'ALTER DATABASE "{conn.info.dbname}" SET default_transaction_read_only = '
                + ("on" if on else "off")
            )

    read_only(True)  # as a standby of a primary nobody has started this release on
    with pytest.raises(DatabaseError, match="has no schema .* read-only.*karpathy-gpt ingest"):
        PostgresStore(database_url)
    read_only(False)
    schema_1_database(database_url, embedder)
    read_only(True)
    with pytest.raises(DatabaseError, match="schema version 1 .* read-only.*karpathy-gpt ingest"):
        PostgresStore(database_url)


def test_unchanged_corpus_is_not_ingested_again_and_old_versions_are_pruned(
    database_url, embedder, tmp_path
):
    corpus = small_corpus(tmp_path / "corpus", SENTENCES)
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", database_url=database_url)
    open_index(settings, embedder).close()
    first = versions(database_url)
    open_index(settings, embedder).close()
    assert versions(database_url) == first  # same index key: nothing written

    for n in range(3):  # three changes of corpus: only the newest two versions stay
        small_corpus(tmp_path / "corpus", SENTENCES[n:] + MORE)
        store = open_index(settings, embedder)
        assert store.active_version().id == max(versions(database_url))
        store.close()
    kept = versions(database_url)
    assert len(kept) == 2 and kept[0] > first[0]
    with psycopg.connect(database_url) as conn:
        partitions = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'kgpt_chunks'::regclass"
        ).fetchone()[0]
    assert partitions == 2


def test_pruning_waits_for_no_query_and_catches_up_at_the_next_publish(
    database_url, embedder, tmp_path, caplog
):
    """A query holding its snapshot's locks makes pruning give way (the publish still lands),
    and pruning takes its locks in the order queries do, so the two never deadlock."""
    settings = Settings(chunk_size=200, chunk_overlap=50)
    index = build_index(load_corpus(small_corpus(tmp_path / "c", SENTENCES)), settings, embedder)[0]
    store = PostgresStore(database_url)
    try:
        with store.writer() as writer:
            for n in range(3):
                writer.publish(f"prune-{n}", {}, index)
            with psycopg.connect(database_url) as reader:  # a long query's locks
                reader.execute("SELECT count(*) FROM kgpt_postings").fetchone()
                old = versions(database_url)[:-1]  # what publishing one more should drop
                writer.publish("prune-3", {}, index)  # its own pruning gives way too
                with caplog.at_level("WARNING", logger="karpathy_gpt.store.postgres"):
                    started = time.monotonic()
                    assert writer.prune(lock_timeout="200ms") == []
                    assert time.monotonic() - started < 5
                assert "not pruned yet" in caplog.text
                assert store.active_version().index_key == "prune-3"
                assert set(old) <= set(versions(database_url))
            assert set(writer.prune()) >= set(old)  # the query is over: the rest goes
        assert len(versions(database_url)) == 2
    finally:
        store.close()


def versions_seen_while_switching(database_url, embedder, tmp_path, seen_by) -> list[set[str]]:
    """What three readers see (``seen_by(candidates)``, a set of version names per query) while
    the active version switches 12 times between an "old" and a "new" corpus."""
    settings = Settings(chunk_size=200, chunk_overlap=50)
    indexes = {}
    for title, sentences in [("old", SENTENCES), ("new", MORE)]:
        corpus = small_corpus(tmp_path / title, sentences * 3, title=title)
        indexes[title] = build_index(load_corpus(corpus), settings, embedder)[0]
    store = PostgresStore(database_url)
    with store.writer() as writer:
        writer.publish("old", {}, indexes["old"])
    vector = embedder.embed_one("gradient of the loss")
    seen: list[set[str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def query() -> None:
        reader = PostgresStore(database_url, pool_size=1)
        try:
            while not stop.is_set():
                seen.append(seen_by(reader.candidates("gradient loss", vector, depth=20)))
        except BaseException as exc:  # reported below, not swallowed by the thread
            errors.append(exc)
        finally:
            reader.close()

    readers = [threading.Thread(target=query) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        with store.writer() as writer:
            for n in range(12):
                writer.publish(f"v{n}", {}, indexes["new" if n % 2 == 0 else "old"])
                time.sleep(0.05)
    finally:
        stop.set()
        for t in readers:
            t.join(30)
        store.close()
    assert not errors, errors
    assert len(seen) > 20
    assert {"old"} in seen and {"new"} in seen
    return seen


def test_reingest_switches_atomically_while_queries_run(database_url, embedder, tmp_path):
    """Readers see all of the old version or all of the new, never none or a mix: the
    candidates, the chunks that follow them, and a whole dense top 20."""

    def seen_by(found) -> set[str]:
        chunks = [c.chunk for c in found.items]
        chunks += [c.following for c in found.items if c.following is not None]
        titles = {c.metadata["title"].split("-")[0] for c in chunks}
        dense = sorted(c.dense_rank for c in found.items if c.dense_rank <= 20)
        if dense != list(range(1, 21)):
            titles.add(f"a dense top 20 of {len(dense)}")
        return titles

    seen = versions_seen_while_switching(database_url, embedder, tmp_path, seen_by)
    assert all(s in ({"old"}, {"new"}) for s in seen), [s for s in seen if len(s) != 1][:5]


def test_candidates_and_their_document_frequencies_come_from_one_version(
    database_url, embedder, tmp_path
):
    """The IDF the ranker weighs a question's words by is the candidates' own version's, even
    while versions switch (b8835db reads the version and chunk count with the rows)."""

    def seen_by(found) -> set[str]:
        titles = {c.chunk.metadata["title"].split("-")[0] for c in found.items}
        # Only the old lectures say "bigram", only the new ones "dropout".
        said = {t for t in ("bigram", "dropout") if found.document_frequency.get(t)}
        titles.add({"bigram": "old", "dropout": "new"}.get(",".join(sorted(said)), "?"))
        return titles

    seen = versions_seen_while_switching(database_url, embedder, tmp_path, seen_by)
    assert all(s in ({"old"}, {"new"}) for s in seen), [s for s in seen if len(s) != 1][:5]


def test_dropped_connections_are_replaced(database_url, embedder, tmp_path):
    corpus = small_corpus(tmp_path / "corpus", SENTENCES)
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", database_url=database_url)
    store = open_index(settings, embedder)
    vector = embedder.embed_one("bigram model")

    def nearest() -> list[dict]:
        return [c.chunk.metadata for c in store.candidates("bigram model", vector, 2).items]

    try:
        before = nearest()
        for _ in range(2):  # the server ends every connection the pool holds
            with psycopg.connect(database_url, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()[0]
            assert killed >= 1
            assert nearest() == before
    finally:
        store.close()
