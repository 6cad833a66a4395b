"""Where the time of one /karpathy-docs request goes: embed / search / fuse / serialise / rest.

For each embedding backend (torch: before this change; onnx-int8: the default after it), a child
process loads the index and times every stage of a retrieval in-process, the way
``Retriever.search`` and ``/karpathy-docs`` run them, on distinct questions; then a real uvicorn
server with that backend answers the same number of sequential requests, and what the stages
do not account for is HTTP, FastAPI, sse-starlette and the client. Usage:

    .venv/bin/python benchmarks/request_profile.py [--n 200] [--backends torch,onnx-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_vs_langchain import REPO, distinct, percentile, start  # noqa: E402

STAGES = ("embed", "dense", "lexical", "fuse", "serialise")


def child(backend: str, n: int, index_dir: str) -> dict[str, float]:
    from sse_starlette import ServerSentEvent

    from karpathy_gpt.api.legacy import END, passage_json
    from karpathy_gpt.config import Settings
    from karpathy_gpt.embedding import Embedder
    from karpathy_gpt.indexing import open_index
    from karpathy_gpt.store.base import Hit, reciprocal_rank_fusion
    from karpathy_gpt.store.local import CANDIDATES
    from karpathy_gpt.text import normalise

    embedder = Embedder(threads=1, backend=backend)
    store = open_index(Settings(index_dir=Path(index_dir), embedding_backend=backend), embedder)
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for i, question in enumerate(distinct(n + 20)):
        t0 = time.perf_counter()
        query = normalise(question)
        vector = embedder.embed_one(query)
        t1 = time.perf_counter()
        dense, similarities = store.dense_ranking(vector, CANDIDATES)
        t2 = time.perf_counter()
        lexical = store.lexical_ranking(query, CANDIDATES)
        t3 = time.perf_counter()
        fused = reciprocal_rank_fusion([dense, lexical])
        best = sorted(fused, key=lambda j: (-fused[j], -similarities[j]))[:3]
        hits = [
            Hit(
                store.chunks[j],
                fused[j],
                float(similarities[j]),
                store.sentence_vectors[store.sentence_offsets[j] : store.sentence_offsets[j + 1]],
            )
            for j in best
        ]
        t4 = time.perf_counter()
        events = [ServerSentEvent(data=passage_json(h, r)) for r, h in enumerate(hits, 1)]
        b"".join(e.encode() for e in [*events, END])
        t5 = time.perf_counter()
        if i >= 20:  # the first few pay for lazy initialisation
            for stage, a, b in zip(STAGES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True):
                times[stage].append(b - a)
    return {stage: percentile(values, 0.5) for stage, values in times.items()}


def http_p50(backend: str, n: int, index_dir: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KGPT_", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", KGPT_INDEX_DIR=index_dir, KGPT_EMBEDDING_BACKEND=backend)
    log = Path(index_dir) / f"server-{backend}.log"
    server = start(backend, ["karpathy_app:app"], env, "/healthz", 1, log)
    try:
        times = []
        with httpx.Client(timeout=60) as client:
            for i, question in enumerate(distinct(n + 20, offset=500_000)):
                t = time.perf_counter()
                client.post(server.url + "/karpathy-docs", data={"query": question}).read()
                if i >= 20:
                    times.append(time.perf_counter() - t)
    finally:
        server.stop()
    return percentile(times, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--backends", default="torch,onnx-int8")
    parser.add_argument("--index-dir", default=str(REPO / ".kgpt" / "bench-index"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.index_dir)))
        return
    rows = {}
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--child", backend, "--n", str(args.n)]
        cmd += ["--index-dir", args.index_dir]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=REPO)
        stages = json.loads(out.stdout.strip().splitlines()[-1])
        stages["HTTP total"] = http_p50(backend, args.n, args.index_dir)
        stages["rest"] = stages["HTTP total"] - sum(stages[s] for s in STAGES)
        rows[backend] = stages
    names = list(rows)
    print(f"\nmedians over {args.n} distinct questions, ms\n")
    print("| stage | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for stage in (*STAGES, "rest", "HTTP total"):
        print(f"| {stage} | " + " | ".join(f"{rows[b][stage]:.2f}" for b in names) + " |")


if __name__ == "__main__":
    main()
