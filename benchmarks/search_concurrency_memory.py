"""How many embeddings run at once against the memory they hold: why searches are bounded.

The server embeds each question with ONNX Runtime on a worker thread (one intra-op thread per
run). Run here in one process, as in the server: ``--workers`` threads embed questions from
../shared/eval (repeated 1-6 times, so lengths vary) back to back for ``--seconds``; the
process's RSS and its anonymous part (the heap) are sampled every few seconds. Each setting runs
in its own fresh process, alternating, so the first does not warm the second's heap. The peer
is two workers (one per core here): the same embeddings per second with far less memory means
that running more at once only holds more working memory. Usage:

    .venv/bin/python benchmarks/search_concurrency_memory.py [--workers 2,8,32] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "eval" / "questions.jsonl"


def memory() -> tuple[float, float]:
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            found[name] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["RssAnon"]


def child(workers: int, seconds: float) -> None:
    """One setting, in this process: prints one JSON line."""
    sys.path.insert(0, str(REPO / "src"))
    from threadpoolctl import threadpool_limits

    from karpathy_gpt.embedding import Embedder

    threadpool_limits(limits=1, user_api="blas")  # as Service.start
    embedder = Embedder(threads=1)
    questions = [json.loads(line)["question"] for line in EVAL.read_text().splitlines() if line]
    embedder.embed_one("warm up")
    start_rss, start_anon = memory()
    deadline = time.monotonic() + seconds
    done = [0] * workers

    def work(n: int) -> None:
        rng = random.Random(n)
        while time.monotonic() < deadline:
            embedder.embed_one(" ".join([rng.choice(questions)] * rng.randint(1, 6)))
            done[n] += 1

    samples = []
    with ThreadPoolExecutor(workers) as pool:
        running = [pool.submit(work, n) for n in range(workers)]
        while not all(f.done() for f in running):
            time.sleep(2)
            samples.append(memory())
    for future in running:
        future.result()
    end_rss, end_anon = memory()
    print(
        json.dumps(
            {
                "workers": workers,
                "per_second": sum(done) / seconds,
                "rss": [start_rss, max(r for r, _ in samples), end_rss],
                "anon": [start_anon, max(a for _, a in samples), end_anon],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="2,8,32")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.seconds)
        return
    settings = [int(w) for w in args.workers.split(",")]
    results: dict[int, list[dict]] = {w: [] for w in settings}
    for round_ in range(args.rounds):
        order = settings if round_ % 2 == 0 else settings[::-1]
        for workers in order:
            command = [sys.executable, __file__, "--child", str(workers)]
            out = subprocess.run(
                [*command, "--seconds", str(args.seconds)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            ).stdout
            results[workers].append(json.loads(out.strip().splitlines()[-1]))
    peer = results[settings[0]]
    peer_rate = sum(r["per_second"] for r in peer) / len(peer)
    print(f"{args.seconds:.0f} s per run, {args.rounds} runs per setting (alternating order)")
    print(
        "| embeddings at once | per second | vs peer | heap MB start -> end | RSS MB start -> end |"
    )
    print("|---|---|---|---|---|")
    for workers, runs in results.items():
        rate = sum(r["per_second"] for r in runs) / len(runs)
        heap = ", ".join(f"{r['anon'][0]:.0f} -> {r['anon'][2]:.0f}" for r in runs)
        rss = ", ".join(f"{r['rss'][0]:.0f} -> {r['rss'][2]:.0f}" for r in runs)
        print(f"| {workers} | {rate:.0f} | {rate / peer_rate:.2f}x | {heap} | {rss} |")


if __name__ == "__main__":
    main()
