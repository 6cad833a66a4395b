"""Where the time of one /karpathy-docs request goes: embed / candidates / rank / serialise /
rest.

For each configuration a child process loads the index and times every stage of a retrieval
in-process, the way ``Retriever.search`` and ``/karpathy-docs`` run them, on distinct questions;
then a real uvicorn server of that configuration answers the same number of sequential requests,
and what the stages do not account for ("rest") is HTTP, FastAPI, sse-starlette, the thread hop
and the client. ``candidates`` is the store's dense and BM25 top chunks; ``rank`` scores their
sentences, cuts the passages and decides coverage (``ranking``, ``coverage``). ``before`` is
the code of ``--before REV`` (git archive of it, served from a temporary folder): torch, and
BLAS with its default threads; its stages are timed with this tree's code on the torch backend.
The others are backends of this tree. Every configuration serves the index ingest makes (the
model adapted to the corpus, unless KGPT_ADAPT=false). Usage:

    .venv/bin/python benchmarks/request_profile.py [--n 200] [--configs before,torch,onnx]
        [--before 2132de4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_vs_langchain import distinct  # noqa: E402
from servers import REPO, Server, percentile_ms, start  # noqa: E402

STAGES = ("embed", "candidates", "rank", "serialise")


def child(config: str, n: int, index_dir: str, url: str) -> dict[str, float]:
    """Stage times in-process, alternating with requests to the server at ``url`` of the same
    configuration, so both see the same moments of the shared machine."""
    from sse_starlette import ServerSentEvent
    from threadpoolctl import threadpool_limits

    from karpathy_gpt import coverage, ranking
    from karpathy_gpt.api.legacy import END, passage_json
    from karpathy_gpt.config import Settings
    from karpathy_gpt.index.backend import open_serving
    from karpathy_gpt.retrieval import Retriever, passage_hit
    from karpathy_gpt.text import normalise

    backend = "torch" if config == "before" else config
    if config != "before":
        threadpool_limits(limits=1, user_api="blas")  # as Service.start does
    settings = Settings(index_dir=Path(index_dir), embedding_backend=backend)
    store, embedder = open_serving(settings, threads=1)  # as the server of that backend
    adapted = embedder.adapted
    retriever = Retriever(store, embedder)
    times: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "HTTP total")}
    client = httpx.Client(timeout=60)
    asked = distinct(n + 20, offset=500_000)
    for i, question in enumerate(distinct(n + 20)):
        t0 = time.perf_counter()
        query = normalise(question)
        vector = embedder.embed_one(query)
        t1 = time.perf_counter()
        candidates = retriever.candidates(query, vector)  # with the question bank, as served
        t2 = time.perf_counter()
        ranked = ranking.rank(question, vector, candidates, 3, adapted=adapted)
        fitted = coverage.asked(embedder, candidates.documents)
        row = coverage.signals(ranked, candidates, vector, fitted)
        coverage.decide(row, adapted, fitted is not coverage.NOWHERE)
        hits = [passage_hit(p) for p in ranked.passages]
        t3 = time.perf_counter()
        events = [ServerSentEvent(data=passage_json(h, r)) for r, h in enumerate(hits, 1)]
        b"".join(e.encode() for e in [*events, END])
        t4 = time.perf_counter()
        client.post(url + "/karpathy-docs", data={"query": asked[i]}).read()
        t5 = time.perf_counter()
        if i >= 20:  # the first few pay for lazy initialisation
            for stage, a, b in zip(
                (*STAGES, "HTTP total"),
                (t0, t1, t2, t3, t4),
                (t1, t2, t3, t4, t5),
                strict=True,
            ):
                times[stage].append(b - a)
    return {stage: percentile_ms(values, 0.5) for stage, values in times.items()}


def serve(config: str, index_dir: str, before: str) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KGPT_", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", KGPT_INDEX_DIR=index_dir)
    args = ["karpathy_app:app"]
    if config == "before":
        old = Path(tempfile.mkdtemp(prefix="kgpt-before-"))
        archive = subprocess.run(["git", "archive", before], cwd=REPO, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        env["PYTHONPATH"] = str(old / "src")
        env["KGPT_CORPUS_DIR"] = str(REPO.parent / "shared" / "corpus" / "karpathy")
        args += ["--app-dir", str(old)]
    else:
        env["KGPT_EMBEDDING_BACKEND"] = config
    log = Path(tempfile.gettempdir()) / f"kgpt-profile-{config}.log"
    return start(config, args, env, log)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--configs", default="before,torch,onnx")
    parser.add_argument("--before", default="2132de4", help="the commit before the speed work")
    parser.add_argument("--index-dir", default=str(REPO / ".kgpt" / "bench-index"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.n, args.index_dir, args.child[1])))
        return
    rows = {}
    for config in args.configs.split(","):
        server = serve(config, args.index_dir, args.before)
        try:
            cmd = [sys.executable, __file__, "--child", config, server.url, "--n", str(args.n)]
            cmd += ["--index-dir", args.index_dir]
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=REPO)
        finally:
            server.stop()
        stages = json.loads(out.stdout.strip().splitlines()[-1])
        stages["rest"] = stages["HTTP total"] - sum(stages[s] for s in STAGES)
        rows[config] = stages
    names = list(rows)
    print(f"\nmedians over {args.n} distinct questions, ms\n")
    print("| stage | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for stage in (*STAGES, "rest", "HTTP total"):
        print(f"| {stage} | " + " | ".join(f"{rows[b][stage]:.2f}" for b in names) + " |")


if __name__ == "__main__":
    main()
