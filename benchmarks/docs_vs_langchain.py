"""/karpathy-docs against the LangChain peer (benchmarks/langchain_peer.py), in one run.

The servers run under uvicorn on 127.0.0.1 at the same time: the peer as the original ran it
(torch's default threads), the peer with one torch thread (tuned for a busy machine: torch's
threads wait for each other when the cores are shared), and the project. Sequential requests
rotate between them (A/B/C, then B/C/A, ...), so a busy moment of the shared machine hits all
alike; then 16 clients load each in turn, bounded by a count and a time limit. Every question
is distinct (a numbered variant of a lecture question), so the project's cache of repeated
questions never answers; a last, separately reported run repeats 25 questions to show what that
cache does.
RSS (and PSS, which counts pages shared by processes once) is summed over each server's
processes. Needs the ``bench`` extra (``pip install -e '.[bench]'``). Usage:

    .venv/bin/python benchmarks/docs_vs_langchain.py [--workers 2] [--sequential 200]
        [--clients 16] [--load-requests 3000] [--load-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import REPO, VENV_BIN, Server, percentile_ms, start  # noqa: E402

QUESTIONS_FILE = REPO.parent / "shared" / "eval" / "questions.jsonl"
EXTRA_QUESTIONS = [
    "What is makemore?",
    "How are keys and queries generated in self-attention?",
    "Why do we use batch normalization?",
    "What does the tanh nonlinearity do?",
    "How does a bigram language model work?",
    "What is the role of the softmax?",
    "Why is the learning rate important?",
    "What is a residual connection?",
    "How is the vocabulary of characters built?",
    "What does backpropagation compute?",
]


def questions() -> list[str]:
    labelled = [json.loads(line)["question"] for line in QUESTIONS_FILE.read_text().splitlines()]
    return labelled + EXTRA_QUESTIONS


def distinct(n: int, offset: int = 0) -> list[str]:
    base = questions()
    return [f"{base[i % len(base)]} ({offset + i})" for i in range(n)]


def ask(client: httpx.Client, server: Server, question: str) -> float:
    t = time.perf_counter()
    response = client.post(server.url + "/karpathy-docs", data={"query": question})
    if response.status_code != 200 or "pageContent" not in response.text:
        raise RuntimeError(f"{server.name}: {response.status_code} {response.text[:300]}")
    return time.perf_counter() - t


def sequential(servers: list[Server], n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {s.name: [] for s in servers}
    with httpx.Client(timeout=60) as client:
        for s in servers:  # warm all up: first requests pay for lazy imports and caches
            for q in distinct(20, offset=900_000):
                ask(client, s, q)
        for i, q in enumerate(distinct(n)):
            shift = i % len(servers)
            for s in servers[shift:] + servers[:shift]:
                times[s.name].append(ask(client, s, q))
    return times


async def load(server: Server, clients: int, total: int, seconds: float, qs: list[str]):
    """``clients`` connections asking back to back until ``total`` answers or ``seconds``."""
    latencies: list[float] = []
    errors = 0
    next_question = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one_client(client: httpx.AsyncClient) -> None:
        nonlocal next_question, errors
        while next_question < total and time.perf_counter() < deadline:
            question = qs[next_question % len(qs)]
            next_question += 1
            t = time.perf_counter()
            try:
                r = await client.post(server.url + "/karpathy-docs", data={"query": question})
                ok = r.status_code == 200 and "pageContent" in r.text
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(one_client(client) for _ in range(clients)))
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - cpu
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50": percentile_ms(latencies, 0.5),
        "p99": percentile_ms(latencies, 0.99),
        "client_cpu_share": client_cpu / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2, help="the project's uvicorn workers")
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--load-requests", type=int, default=3000)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--index-dir", default=str(REPO / ".kgpt" / "bench-index"))
    parser.add_argument("--peer-cache", default=str(REPO / ".kgpt" / "langchain-peer.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("KGPT_", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", KGPT_INDEX_DIR=args.index_dir, PEER_CACHE=args.peer_cache)
    # The index exists before the servers start: startup is then the warm start.
    subprocess.run([str(VENV_BIN / "karpathy-gpt"), "ingest"], cwd=REPO, env=env, check=True)
    logs = Path(tempfile.mkdtemp(prefix="kgpt-bench-"))
    peer_args = ["langchain_peer:app", "--app-dir", "benchmarks"]
    servers = [
        start("peer", peer_args, env, logs / "peer.log", ready_path="/"),
        start(
            "peer-1t",
            peer_args,
            {**env, "PEER_TORCH_THREADS": "1"},
            logs / "p1.log",
            ready_path="/",
        ),
        start("ours", ["karpathy_app:app"], env, logs / "ours.log", workers=args.workers),
    ]
    try:
        seq = sequential(servers, args.sequential)
        loads = {}
        for offset, s in enumerate(servers):
            qs = distinct(args.load_requests, offset=(offset + 1) * 100_000)
            loads[s.name] = asyncio.run(
                load(s, args.clients, args.load_requests, args.load_seconds, qs)
            )
        repeated = asyncio.run(
            load(servers[-1], args.clients, args.load_requests, args.load_seconds, questions())
        )
        memory = {s.name: s.rss_mb() for s in servers}
    finally:
        for s in servers:
            s.stop()

    print(
        f"\nmachine: {os.cpu_count()} cores; load average {load_before:.1f} before the run, "
        f"{os.getloadavg()[0]:.1f} after"
    )
    print(
        f"karpathy-gpt: {args.workers} uvicorn worker(s); peer: 1 worker (as the original), "
        "with torch's default threads and with one\n"
    )
    print(
        "| | LangChain peer | peer, 1 torch thread | karpathy-gpt "
        "| ours / peer | ours / peer 1 thread |"
    )
    print("|---|---|---|---|---|---|")

    def row(label: str, values: list[float], unit: str, digits: int = 1) -> None:
        a, a1, b = values
        cells = " | ".join(f"{v:.{digits}f} {unit}" for v in values)
        print(f"| {label} | {cells} | {b / a:.2f}x | {b / a1:.2f}x |")

    names = [s.name for s in servers]
    n = len(seq["ours"])
    row(f"sequential p50 (n={n})", [percentile_ms(seq[x], 0.5) for x in names], "ms")
    row(f"sequential p99 (n={n})", [percentile_ms(seq[x], 0.99) for x in names], "ms")
    row("sequential mean", [statistics.mean(seq[x]) * 1000 for x in names], "ms")
    c = args.clients
    row(f"{c} clients: throughput", [loads[x]["rps"] for x in names], "req/s")
    row(f"{c} clients: p50", [loads[x]["p50"] for x in names], "ms")
    row(f"{c} clients: p99", [loads[x]["p99"] for x in names], "ms")
    row("server RSS after the load", [memory[x][0] for x in names], "MB", 0)
    row("server PSS after the load", [memory[x][1] for x in names], "MB", 0)
    row("start to ready (index on disk)", [s.start_s for s in servers], "s", 2)
    print()
    for name, r in loads.items():
        print(
            f"{name} load: {r['requests']} answers, {r['errors']} errors "
            f"in {r['seconds']:.1f} s; the load client used {r['client_cpu_share']:.0%} of a core"
        )
    print(
        f"karpathy-gpt, {len(questions())} questions repeated (its cache answers): "
        f"{repeated['rps']:.0f} req/s, p50 {repeated['p50']:.1f} ms, "
        f"p99 {repeated['p99']:.1f} ms, {repeated['errors']} errors"
    )
    print(f"server logs: {logs}")


if __name__ == "__main__":
    main()
