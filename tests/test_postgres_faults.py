"""A PostgreSQL that refuses a publish (read-only, its disk full): one line, and the previous
version stays the active one, still served."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from support.corpus import MORE, SENTENCES, small_corpus
from support.database import versions
from support.mounts import tiny_disk
from support.servers import base_env, run_cli

from karpathy_gpt.config import Settings
from karpathy_gpt.index.backend import ingest, open_index
from karpathy_gpt.retrieval import Retriever
from karpathy_gpt.store.base import DatabaseError

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def published(database_url: str, tmp_path: Path, embedder) -> Settings:
    """The database with a first version (lectures about gradients and bigrams)."""
    corpus = small_corpus(tmp_path / "corpus", SENTENCES)
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", database_url=database_url)
    open_index(settings, embedder).close()
    return settings


def database_setting(url: str, name: str, value: str | None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        database = conn.info.dbname
        if value is None:
            conn.execute(f'ALTER DATABASE "{database}" RESET {name}')
        else:
            conn.execute(f'ALTER DATABASE "{database}" SET {name} = {value}')


def refused_then_served(settings: Settings, embedder, first: list[int], reason: str) -> str:
    """A changed corpus refused in one line; the first version still the one searched."""
    small_corpus(settings.corpus_dir, MORE, title="changed")
    with pytest.raises(DatabaseError) as refused:
        ingest(settings, embedder)
    message = str(refused.value)
    assert "\n" not in message and reason in message, message
    assert "the previous version stays active" in message
    assert versions(settings.database_url) == first
    store = open_index(settings, embedder)  # what a server does: serves the previous version
    try:
        hits = Retriever(store, embedder).search("bigram", 2).hits
        assert hits and all(h.chunk.metadata["title"].startswith("lecture") for h in hits)
    finally:
        store.close()
    return message


def test_a_read_only_database_refuses_a_publish_in_one_line(database_url, embedder, tmp_path):
    settings = published(database_url, tmp_path, embedder)
    first = versions(database_url)
    database_setting(database_url, "default_transaction_read_only", "on")
    try:
        refused_then_served(settings, embedder, first, "read-only")
        env = base_env(
            KGPT_DATABASE_URL=database_url,
            KGPT_CORPUS_DIR=str(settings.corpus_dir),
            KGPT_INDEX_DIR=str(settings.index_dir),
            COLUMNS="300",
        )
        cli = run_cli("ingest", env=env)
        assert cli.returncode != 0 and "Traceback" not in cli.stderr, cli.stderr[-3000:]
        errors = [line for line in cli.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "read-only" in errors[0], cli.stderr[-3000:]
    finally:
        database_setting(database_url, "default_transaction_read_only", None)


def test_a_full_tablespace_refuses_a_publish_in_one_line(
    postgres, database_url, embedder, tmp_path
):
    settings = published(database_url, tmp_path, embedder)
    first = versions(database_url)
    # Big enough not to fit: sentence vectors are stored with every chunk.
    settings = settings.model_copy(update={"chunk_size": 200, "chunk_overlap": 50})
    folder = Path(tempfile.mkdtemp(prefix="kgpt-tablespace-"))
    with psycopg.connect(postgres.get_uri(), autocommit=True) as admin:
        data = Path(admin.execute("SHOW data_directory").fetchone()[0])
    with tiny_disk(folder, "256k") as disk:
        owner = os.stat(data)
        os.chown(disk, owner.st_uid, owner.st_gid)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE kgpt_tiny LOCATION '{disk}'")
        database_setting(database_url, "default_tablespace", "kgpt_tiny")
        try:
            message = refused_then_served(settings, embedder, first, "out of a resource")
            assert "could not extend file" in message or "No space left" in message, message
        finally:
            database_setting(database_url, "default_tablespace", None)
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("DROP TABLESPACE kgpt_tiny")
    shutil.rmtree(folder, ignore_errors=True)
