"""Shared fixtures: the real model, and a real uvicorn server on 127.0.0.1 over the real corpus.

The helpers they are built from live in ``tests/support`` (servers, stream readers, corpora).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.paths import CORPUS, REPO
from support.servers import Server, base_env

# What makes a test slow: a real server (and the real corpus's index it serves), a database.
SLOW_FIXTURES = {"server", "index_dir", "postgres", "database_url"}
SLOW_MARKERS = ("postgres", "gguf", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or any(
            item.get_closest_marker(name) for name in SLOW_MARKERS
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def embedder():
    """The real model, loaded once for every test that embeds in-process."""
    from karpathy_gpt.embedding import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    path = REPO / "test-output"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def index_dir() -> Path:
    """One index of the real corpus, built by the first server and reused by the rest.

    It lives under the git-ignored .kgpt/ so later runs load it warm; the index key (a hash of
    corpus, settings and code versions) makes a stale one rebuild by itself.
    """
    path = REPO / ".kgpt" / "test-index"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def server(index_dir: Path, output_dir: Path) -> Iterator[Server]:
    if not (CORPUS / "videos.json").is_file():
        pytest.fail(f"the corpus is missing: expected {CORPUS} (../shared beside the repo)")
    srv = Server(base_env(KGPT_INDEX_DIR=str(index_dir)), output_dir / "server.log")
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session, on a temp dir, deleted at the end.

    Run as root, pgserver runs the server as its own system user, which must reach the folder:
    hence a folder directly under /tmp rather than pytest's private tmp_path.
    """
    import pgserver

    folder = Path(tempfile.mkdtemp(prefix="kgpt-pg-"))
    server = pgserver.get_server(folder / "data", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database_url(postgres, request) -> str:
    """A fresh database per test, so tests never see each other's versions."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    import psycopg

    with psycopg.connect(postgres.get_uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres.get_uri(name)
