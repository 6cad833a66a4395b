"""API processes sharing one PostgreSQL: several workers, a replica without the corpus, a
database that goes away and comes back, and the command line against it."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest
from support.corpus import MORE, SENTENCES, small_corpus
from support.database import versions
from support.paths import CORPUS, VENV_BIN
from support.servers import Server, base_env, run_cli
from support.streams import passages, post_sse

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_servers_and_workers_share_one_database(database_url, tmp_path, output_dir):
    """Two workers of one uvicorn and a replica without the corpus serve the same index; a new
    version ingested by the CLI reaches them all without a restart."""
    corpus = small_corpus(tmp_path / "corpus", SENTENCES)
    env = base_env(
        KGPT_DATABASE_URL=database_url,
        KGPT_CORPUS_DIR=str(corpus),
        KGPT_INDEX_DIR=str(tmp_path / "index"),
    )
    workers = Server(
        env,
        output_dir / "pg-workers.log",
        args=[str(VENV_BIN / "uvicorn"), "karpathy_app:app", "--workers", "2"],
    )
    replica = None
    try:
        workers.wait_ready()
        assert len(versions(database_url)) == 1  # two workers started, one index built
        replica = Server(
            {**env, "KGPT_CORPUS_DIR": str(tmp_path / "no-corpus-here")},
            output_dir / "pg-replica.log",
        )
        replica.wait_ready()
        question = {"question": "What does a bigram model predict?", "k": 2}

        def docs(server: Server) -> list[dict]:
            response, events = post_sse(server.url + "/karpathy-docs", json=question)
            assert response.status_code == 200
            return passages(events)

        first = docs(workers)
        assert first and docs(replica) == first
        assert all(docs(workers) == first for _ in range(6))  # whichever worker answers
        with psycopg.connect(database_url) as conn:
            clients = conn.execute(
                "SELECT count(DISTINCT application_name) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE 'karpathy-gpt %'"
            ).fetchone()[0]
        assert clients == 3  # two workers and the replica, each with its own pool

        small_corpus(tmp_path / "corpus", MORE, title="renamed")
        ingest = run_cli("ingest", env=env)
        assert ingest.returncode == 0, ingest.stderr
        assert "version" in ingest.stdout
        for server in (workers, replica):
            titles = {p["metadata"]["title"] for p in docs(server)}
            assert titles and all(t.startswith("renamed") for t in titles)
        assert httpx.get(replica.url + "/healthz").json()["status"] == "ok"
    finally:
        workers.stop()
        if replica:
            replica.stop()


def test_a_database_that_refuses_connections_is_a_503_then_recovers(
    postgres, database_url, tmp_path, output_dir
):
    """With the database gone, every searching endpoint answers 503 with what to check, within
    the pool's timeout (KGPT_DATABASE_TIMEOUT), not a 500 or a hang; back, it serves again."""
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    env = base_env(
        KGPT_DATABASE_URL=database_url,
        KGPT_CORPUS_DIR=str(small_corpus(tmp_path / "corpus", SENTENCES)),
        KGPT_INDEX_DIR=str(tmp_path / "index"),
        KGPT_DATABASE_TIMEOUT="2",
    )
    server = Server(env, output_dir / "pg-refused.log")
    question = {"question": "What does a bigram model predict?"}
    chat = {"model": "karpathy-gpt", "messages": [{"role": "user", "content": "bigram?"}]}
    try:
        server.wait_ready()
        assert post_sse(server.url + "/karpathy-docs", data=question)[0].status_code == 200
        with psycopg.connect(postgres.get_uri(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        try:
            started = time.monotonic()
            docs = httpx.post(server.url + "/karpathy-docs", data=question, timeout=30)
            assert docs.status_code == 503, docs.text
            assert "is the database up?" in docs.json()["detail"]
            assert docs.headers["Retry-After"]
            assert time.monotonic() - started < 3.5  # one 2 s wait for a connection, not two
            stream = httpx.post(server.url + "/karpathy-stream", data=question, timeout=30)
            assert stream.status_code == 503
            answer = httpx.post(server.url + "/v1/chat/completions", json=chat, timeout=30)
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "index_unavailable"
        finally:
            with psycopg.connect(postgres.get_uri(), autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        response, events = post_sse(server.url + "/karpathy-docs", data=question)
        assert response.status_code == 200 and passages(events)
    finally:
        server.stop()


def test_cli_ingest_to_postgres_is_a_noop_when_unchanged(database_url, tmp_path):
    corpus = small_corpus(tmp_path / "corpus", SENTENCES)
    env = base_env(KGPT_DATABASE_URL=database_url, KGPT_INDEX_DIR=str(tmp_path / "index"))
    runs = [run_cli("ingest", str(corpus), env=env) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    assert len(versions(database_url)) == 1
    assert "(version 1)" in runs[0].stdout and "(version 1)" in runs[1].stdout


def test_bad_database_url_says_what_to_do(tmp_path):
    env = base_env(
        KGPT_DATABASE_URL=f"postgresql://nobody@/nodb?host={tmp_path}&connect_timeout=2",
        KGPT_CORPUS_DIR=str(CORPUS),
    )
    result = run_cli("ingest", env=env, timeout=120)
    assert result.returncode != 0
    assert "KGPT_DATABASE_URL" in result.stderr + result.stdout
