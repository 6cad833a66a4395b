"""Soak: minutes of mixed /karpathy-docs and /karpathy-stream load from many loopback clients.

Starts the server (``uvicorn karpathy_app:app``) on 127.0.0.1, measures it idle (sequential
requests: the peer), then runs ``--clients`` concurrent clients for ``--seconds``: 45% passages,
45% answers, 10% bad requests that must get a 422; questions from ../shared/eval with a varying
tail, so most are distinct. It samples the server's RSS every two seconds (split into anonymous
memory, the heap, and file-backed pages such as the memory-mapped index and the libraries), and
finally measures it idle again. It prints the status counts (zero 5xx expected), p50/p99 per
endpoint under load against idle, the RSS curve and the load average. Usage:

    .venv/bin/python benchmarks/soak.py [--seconds 120] [--clients 32] [--index-dir DIR]
        [--env KGPT_QUERY_CACHE_SIZE=0] [--env MALLOC_ARENA_MAX=2] [--trace-memory]

``--env`` passes a setting to the server (repeatable). ``--trace-memory`` runs the server under
tracemalloc (benchmarks/traced_server.py, slower) and prints the source lines whose live Python
allocations grew most during the load, and the object types that multiplied.

``run_load`` is also what tests/test_soak.py runs, shorter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from httpx_sse import EventSource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import REPO, percentile_ms, start  # noqa: E402

EVAL = REPO.parent / "shared" / "eval" / "questions.jsonl"
TAILS = ["", " please", " in the lectures", " exactly", " briefly", " and why", " for a beginner"]
FALLBACK_QUESTIONS = ["What is makemore", "Why do we use batch normalization?", "What is tanh?"]
BAD_BODIES = [{"question": ""}, {"question": "tanh", "k": "99"}, {"query": "   "}]


@dataclass
class Sample:
    started: float  # seconds since the load began
    kind: str  # docs | stream | bad
    status: int
    seconds: float
    complete: bool  # a 200 stream that ended with `end`, or the expected 422


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    anon_mb: list[float] = field(default_factory=list)  # of each rss_mb sample: RssAnon
    errors: Counter = field(default_factory=Counter)  # transport errors by type

    def statuses(self) -> Counter:
        return Counter(s.status for s in self.samples)

    def server_errors(self) -> int:
        return sum(1 for s in self.samples if s.status >= 500)

    def incomplete(self) -> list[Sample]:
        return [s for s in self.samples if not s.complete]

    def latencies(self, kind: str) -> list[float]:
        return [s.seconds for s in self.samples if s.kind == kind and s.status == 200]


def questions() -> list[str]:
    if not EVAL.is_file():
        return FALLBACK_QUESTIONS
    return [json.loads(line)["question"] for line in EVAL.read_text().splitlines() if line]


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and its parts (RssAnon, RssFile, RssShmem) of ``pid``, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            found[name] = int(value.split()[0]) / 1024
    if "VmRSS" not in found:
        raise RuntimeError(f"no VmRSS for process {pid}")
    return found


def rss_mb(pid: int) -> float:
    return memory_mb(pid)["VmRSS"]


async def one_request(client: httpx.AsyncClient, kind: str, body: dict, t0: float) -> Sample:
    path = "/karpathy-stream" if kind == "stream" else "/karpathy-docs"
    started = time.perf_counter()
    async with client.stream("POST", path, data=body) as response:
        if response.status_code != 200:
            await response.aread()
            complete = kind == "bad" and response.status_code == 422 and "detail" in response.json()
        else:
            last = None
            async for event in EventSource(response).aiter_sse():
                last = event.event
            complete = kind != "bad" and last == "end"
    elapsed = time.perf_counter() - started
    return Sample(started - t0, kind, response.status_code, elapsed, complete)


async def run_load(
    url: str, seconds: float, clients: int, pid: int | None = None, seed: int = 7
) -> LoadResult:
    """``clients`` clients, each on its own connection, sending requests back to back."""
    result = LoadResult()
    pool = questions()
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def client_loop(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while time.perf_counter() < deadline:
                roll = rng.random()
                kind = "docs" if roll < 0.45 else "stream" if roll < 0.9 else "bad"
                if kind == "bad":
                    body = dict(rng.choice(BAD_BODIES))
                else:
                    body = {"question": rng.choice(pool) + rng.choice(TAILS)}
                    if rng.random() < 0.3:
                        body["k"] = str(rng.randint(1, 10))
                try:
                    result.samples.append(await one_request(client, kind, body, t0))
                except httpx.HTTPError as exc:
                    result.errors[type(exc).__name__] += 1

    def sample() -> None:
        memory = memory_mb(pid)
        result.rss_mb.append((time.perf_counter() - t0, memory["VmRSS"]))
        result.anon_mb.append(memory.get("RssAnon", float("nan")))

    async def sample_rss() -> None:
        while time.perf_counter() < deadline:
            sample()
            await asyncio.sleep(2)
        sample()

    tasks = [client_loop(n) for n in range(clients)]
    if pid is not None:
        tasks.append(sample_rss())
    await asyncio.gather(*tasks)
    return result


def idle_latencies(url: str, pool: list[str], n: int = 40) -> dict[str, list[float]]:
    """The peer: the same server, one request at a time."""
    found: dict[str, list[float]] = {"docs": [], "stream": []}
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(n):
            for kind, path in (("docs", "/karpathy-docs"), ("stream", "/karpathy-stream")):
                started = time.perf_counter()
                client.post(path, data={"question": pool[i % len(pool)] + "?" * (i // len(pool))})
                found[kind].append(time.perf_counter() - started)
    return found


def report(result: LoadResult, before: dict, after: dict, seconds: float, clients: int) -> str:
    lines = [f"{clients} clients, {seconds:.0f} s: {len(result.samples)} requests"]
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses().items()))
    lines.append(f"statuses {statuses}; 5xx: {result.server_errors()}")
    lines.append(
        f"incomplete (stream without `end`, bad input without 422): {len(result.incomplete())}; "
        f"transport errors: {dict(result.errors) or 0}"
    )
    lines.append("")
    lines.append("| endpoint | n under load | p50 ms | p99 ms | idle p50 / p99 before | after |")
    lines.append("|---|---|---|---|---|---|")
    for kind in ("docs", "stream"):
        loaded = result.latencies(kind)
        lines.append(
            f"| /karpathy-{kind} | {len(loaded)} | {percentile_ms(loaded, 0.5):.0f} | "
            f"{percentile_ms(loaded, 0.99):.0f} | "
            f"{percentile_ms(before[kind], 0.5):.0f} / {percentile_ms(before[kind], 0.99):.0f} | "
            f"{percentile_ms(after[kind], 0.5):.0f} / {percentile_ms(after[kind], 0.99):.0f} |"
        )
    if result.rss_mb:
        rss = [mb for _, mb in result.rss_mb]
        lines.append("")
        lines.append(
            f"RSS MB: start {rss[0]:.0f}, peak {max(rss):.0f}, end {rss[-1]:.0f} "
            f"(end/start {rss[-1] / rss[0]:.2f}x)"
        )
        every = max(1, len(result.rss_mb) // 12)
        curve = ", ".join(f"{t:.0f}s {r:.0f}" for t, r in result.rss_mb[::every])
        lines.append(f"RSS curve: {curve}")
        if result.anon_mb:
            anon = ", ".join(f"{mb:.0f}" for mb in result.anon_mb[::every])
            lines.append(f"of which anonymous (heap, arenas), same times: {anon}")
        per_window = Counter(int(s.started // 10) * 10 for s in result.samples)
        lines.append(
            "requests per 10 s: " + ", ".join(f"{t}s {n}" for t, n in sorted(per_window.items()))
        )
    return "\n".join(lines)


def snapshot(proc: subprocess.Popen, report_path: Path, what: str) -> None:
    """Ask the traced server for a tracemalloc snapshot and wait until it has written it."""
    before = report_path.stat().st_mtime_ns if report_path.exists() else 0
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if report_path.exists() and report_path.stat().st_mtime_ns != before:
            time.sleep(0.5)  # let it finish writing
            return
        time.sleep(0.2)
    raise TimeoutError(f"no tracemalloc report ({what}) in {report_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--index-dir", default=str(REPO / ".kgpt" / "index"))
    parser.add_argument("--port", type=int, default=None, help="default: a free one")
    parser.add_argument("--log", default="/tmp/kgpt-soak-server.log")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--trace-memory", action="store_true")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.env)
    traced = None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KGPT_", "OPENAI_"))}
    env.update(KGPT_INDEX_DIR=args.index_dir, HF_HUB_OFFLINE="1", **settings)
    if args.trace_memory:  # under tracemalloc, reporting beside the log
        traced = Path(args.log).with_suffix(".tracemalloc.txt")
        program = [sys.executable, str(REPO / "benchmarks" / "traced_server.py")]
        server = start(
            "soak", ["--report", str(traced)], env, Path(args.log), port=args.port, program=program
        )
    else:
        server = start("soak", ["karpathy_app:app"], env, Path(args.log), port=args.port)
    proc, url = server.proc, server.url
    load = os.getloadavg()
    try:
        pool = questions()
        idle_latencies(url, pool, n=5)  # warm-up
        before = idle_latencies(url, pool)
        if traced:
            snapshot(proc, traced, "baseline")
        result = asyncio.run(run_load(url, args.seconds, args.clients, proc.pid))
        if traced:
            snapshot(proc, traced, "after the load")
        after = idle_latencies(url, pool)
    finally:
        server.stop()
    if settings:
        print("server settings: " + " ".join(f"{k}={v}" for k, v in settings.items()))
    print(report(result, before, after, args.seconds, args.clients))
    print(
        "load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in load)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    if traced:
        print()
        print(traced.read_text())
    if result.server_errors() or result.incomplete() or result.errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
