"""Cold start, warm start, /karpathy-docs latency and extractive time-to-first-token.

A self-measurement of one build on this machine (no peer yet: the LangChain-style peer and the
ratios against it belong to the speed issue). Usage:

    .venv/bin/python benchmarks/startup_latency.py [--index-dir /tmp/kgpt-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import Server, percentile_ms, start  # noqa: E402

QUESTIONS = [
    "What is makemore",
    "Why do we use batch normalization?",
    "How are keys and queries generated?",
    "What is the mean squared error loss?",
]


def started(env: dict[str, str], name: str) -> Server:
    log = Path(tempfile.gettempdir()) / f"kgpt-startup-{name}.log"
    return start(name, ["karpathy_app:app"], env, log, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index-dir", default="/tmp/kgpt-bench-index")
    args = parser.parse_args()
    # The cache of repeated questions is off: the stream loop asks the docs loop's questions.
    env = {
        **os.environ,
        "KGPT_INDEX_DIR": args.index_dir,
        "HF_HUB_OFFLINE": "1",
        "KGPT_QUERY_CACHE_SIZE": "0",
    }
    shutil.rmtree(args.index_dir, ignore_errors=True)
    server = started(env, "cold")
    cold = server.start_s
    server.stop()
    server = started(env, "warm")
    warm, url = server.start_s, server.url
    try:
        client = httpx.Client(timeout=30)
        for q in QUESTIONS:
            client.post(url + "/karpathy-docs", data={"question": q}).read()
        docs, first_token = [], []
        for i in range(100):
            question = QUESTIONS[i % 4] + "?" * (i // 4)  # distinct questions
            t = time.perf_counter()
            client.post(url + "/karpathy-docs", data={"question": question}).read()
            docs.append(time.perf_counter() - t)
        for i in range(40):
            question = QUESTIONS[i % 4] + "?" * (i // 4)
            t = time.perf_counter()
            first = None
            with client.stream("POST", url + "/karpathy-stream", data={"question": question}) as r:
                for line in r.iter_lines():
                    if first is None and line.startswith("data:"):
                        first = time.perf_counter() - t
            first_token.append(first)
    finally:
        server.stop()
    print(f"cold start (index build + model): {cold:.1f} s; warm start to /healthz: {warm:.2f} s")
    print(
        f"/karpathy-docs sequential, n=100: p50 {percentile_ms(docs, 0.5):.1f} ms, "
        f"p99 {percentile_ms(docs, 0.99):.1f} ms"
    )
    print(
        f"/karpathy-stream extractive time to first token, n=40: "
        f"p50 {percentile_ms(first_token, 0.5):.1f} ms, "
        f"p99 {percentile_ms(first_token, 0.99):.1f} ms"
    )


if __name__ == "__main__":
    main()
