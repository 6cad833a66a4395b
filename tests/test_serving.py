"""The serving path: ONNX Runtime without torch, workers sharing one memory-mapped index, the
bounded cache of repeated questions, and searches bounded in number (each holds memory)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from support.paths import CORPUS, VENV_BIN
from support.servers import Server, base_env
from support.streams import passages, post_sse

from karpathy_gpt.api.service import Service
from karpathy_gpt.config import Settings


def mapped_files(pid: int) -> set[str]:
    fields = (line.split(maxsplit=5) for line in Path(f"/proc/{pid}/maps").read_text().splitlines())
    return {f[5].strip() for f in fields if len(f) == 6}


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_server_runs_on_onnx_runtime_without_torch(server):
    mapped = mapped_files(server.proc.pid)
    assert any("onnxruntime" in path for path in mapped)
    assert not [path for path in mapped if "libtorch" in path]


def test_workers_share_one_memory_mapped_index(index_dir: Path, output_dir: Path):
    log = output_dir / "server-workers.log"
    srv = Server(
        base_env(KGPT_INDEX_DIR=str(index_dir)),
        log,
        args=[str(VENV_BIN / "uvicorn"), "karpathy_app:app", "--workers", "2"],
    )
    try:
        srv.wait_ready()
        deadline = time.monotonic() + 120
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        for question in ["What is makemore", "How are keys and queries generated?"] * 4:
            response, events = post_sse(srv.url + "/karpathy-docs", data={"question": question})
            assert response.status_code == 200 and len(passages(events)) == 3
        index = str(index_dir.resolve())
        serving = []
        for pid in children(srv.proc.pid):
            shared = {p for p in mapped_files(pid) if p.startswith(index)}
            if any(p.endswith("embeddings.npy") for p in shared):
                assert any(p.endswith("sentence_vectors.npy") for p in shared), shared
                serving.append(shared)
        assert len(serving) == 2, "both workers map the same index files"
        assert serving[0] == serving[1]
    finally:
        srv.stop()


def test_repeated_questions_come_from_a_bounded_cache(server, index_dir: Path):
    settings = Settings(corpus_dir=CORPUS, index_dir=index_dir, query_cache_size=2)
    service = Service.start(settings)

    async def run():
        first = await service.retrieve("What is makemore?", 3)
        again = await service.retrieve("What is makemore?", 3)
        other_k = await service.retrieve("What is makemore?", 5)
        assert again is first and len(other_k.hits) == 5
        await service.retrieve("How are keys and queries generated?", 3)
        assert len(service.recent) == 2  # the oldest went out
        fresh = await service.retrieve("What is makemore?", 3)
        assert fresh is not first
        assert [h.chunk.text for h in fresh.hits] == [h.chunk.text for h in first.hits]

    asyncio.run(run())
    uncached = Service.start(settings.model_copy(update={"query_cache_size": 0}))

    async def run_uncached():
        a = await uncached.retrieve("What is makemore?", 3)
        b = await uncached.retrieve("What is makemore?", 3)
        assert a is not b and not uncached.recent

    asyncio.run(run_uncached())


def test_searches_run_at_most_search_threads_at_once(server, index_dir: Path):
    """16 distinct questions at once, KGPT_SEARCH_THREADS=2: two run, the rest wait their turn."""
    settings = Settings(corpus_dir=CORPUS, index_dir=index_dir, query_cache_size=0)
    service = Service.start(settings.model_copy(update={"search_threads": 2}))
    search = service.retriever.search
    running, most = 0, 0
    lock = threading.Lock()

    def counted(question: str, k: int):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.02)  # long enough for the others to pile up if they could
            return search(question, k)
        finally:
            with lock:
                running -= 1

    service.retriever.search = counted

    async def run():
        questions = [f"What is makemore, part {n}?" for n in range(16)]
        return await asyncio.gather(*(service.retrieve(q, 3) for q in questions))

    found = asyncio.run(run())
    assert most == 2 and all(len(r.hits) == 3 for r in found)
    default = Service(settings, service.retriever, service.answerer, service.chunks, True)
    assert default.search_threads == len(os.sched_getaffinity(0))  # one per core
