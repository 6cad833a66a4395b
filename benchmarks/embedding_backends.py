"""torch vs ONNX float32 vs ONNX int8: cold ingest, load, query embedding, memory, eval figures.

Each backend runs in its own child process (so one's imports don't count against another's
memory): it loads the packaged model (no corpus adaptation: the backends are compared on the
same weights), builds the index of the corpus from nothing into a temporary folder (every text
embedded, as `ingest --force` does), scores the labelled questions on the dense ranking alone
(the store's candidates by cosine) and as served (``Retriever.search``: the ranker's
passages), and times single-question embeddings. The parent then compares the backends' chunk
vectors and top-3 passages with torch's (on the labelled questions and on 300 corpus sentences
used as questions). Usage:

    .venv/bin/python benchmarks/embedding_backends.py [--backends torch,onnx,onnx-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUERIES_FROM_CORPUS = 300
QUERY_TIMINGS = 200


def scores_of(found: list) -> list:
    """hit@1, hit@2400 and MRR@10 (means over the questions) and how many questions."""
    from karpathy_gpt.evaluation.metrics import summary

    means = {metric: e.mean for metric, e in summary(found).items()}
    return [means["hit@1"], means["hit@2400"], round(means["mrr@10"], 3), len(found)]


def child(backend: str, out: Path) -> None:
    from rich.console import Console

    from karpathy_gpt.config import Settings
    from karpathy_gpt.embedding import Embedder
    from karpathy_gpt.evaluation import DEFAULT_QUESTIONS, load_questions
    from karpathy_gpt.evaluation.metrics import found
    from karpathy_gpt.index.backend import ingest
    from karpathy_gpt.retrieval import Retriever
    from karpathy_gpt.text import normalise

    started = time.perf_counter()
    embedder = Embedder(backend=backend)
    load = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as index_dir:
        settings = Settings(index_dir=Path(index_dir), embedding_backend=backend)
        started = time.perf_counter()
        result = ingest(settings, embedder, force=True, console=Console(stderr=True, quiet=True))
        ingest_s = time.perf_counter() - started
    store = result.store
    retriever = Retriever(store, embedder)
    labelled = load_questions(DEFAULT_QUESTIONS)
    dense, served = [], []
    for q in labelled:
        query = normalise(q.question)
        items = store.candidates(query, embedder.embed_one(query)).items
        nearest = sorted(items, key=lambda c: c.dense_rank)[:10]
        dense.append(found(q, [(c.chunk.metadata["id"], c.chunk.text) for c in nearest]))
        hits = retriever.search(q.question, 10).hits
        served.append(found(q, [(h.chunk.metadata["id"], h.chunk.text) for h in hits]))
    scores = {"dense": scores_of(dense), "served": scores_of(served)}
    rng = np.random.default_rng(0)
    corpus_queries = [
        c.text[:200] for c in (store.chunks[i] for i in rng.choice(len(store), QUERIES_FROM_CORPUS))
    ]
    questions = [q.question for q in labelled] + corpus_queries
    top3 = [
        [f"{h.chunk.metadata['id']}@{h.chunk.metadata['start_char']}" for h in hits]
        for hits in (retriever.search(q, 3).hits for q in questions)
    ]
    timings = []
    for i in range(QUERY_TIMINGS):
        question = labelled[i % len(labelled)].question
        t = time.perf_counter()
        embedder.embed_one(question)
        timings.append(time.perf_counter() - t)
    np.save(out.with_suffix(".npy"), np.asarray(store.embeddings))
    report = {
        "backend": backend,
        "name": embedder.name,
        "load_s": load,
        "ingest_s": ingest_s,
        "texts": result.embedded,
        "query_ms_p50": float(np.percentile(timings, 50) * 1000),
        "query_ms_p99": float(np.percentile(timings, 99) * 1000),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_imported": "torch" in sys.modules,
        "scores": scores,
        "top3": top3,
        "labelled": len(labelled),
    }
    out.write_text(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    backends = args.backends.split(",")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            out = Path(tmp) / f"{backend}.json"
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            cmd = [sys.executable, __file__, "--child", backend, str(out)]
            subprocess.run(cmd, check=True, env=env)
            results[backend] = json.loads(out.read_text())
            results[backend]["vectors"] = np.load(out.with_suffix(".npy"))
            print(f"{backend}: done", file=sys.stderr)
    reference = results.get("torch")
    print(
        "| backend | load s | cold ingest s (texts) | query embed p50 / p99 ms | peak RSS MB "
        "| dense hit@1 / hit@2400 / MRR | served hit@1 / hit@2400 / MRR "
        "| cosine to torch min / mean "
        "| top-3 same as torch |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for backend, r in results.items():
        dense, served = r["scores"]["dense"], r["scores"]["served"]
        agreement = same = "—"
        if reference is not None and backend != "torch":
            cosines = (r["vectors"] * reference["vectors"]).sum(axis=1)
            agreement = f"{cosines.min():.4f} / {cosines.mean():.4f}"
            n = r["labelled"]
            labelled_same = sum(
                a == b for a, b in zip(r["top3"][:n], reference["top3"][:n], strict=True)
            )
            corpus_same = sum(
                a == b for a, b in zip(r["top3"][n:], reference["top3"][n:], strict=True)
            )
            same = (
                f"{labelled_same}/{n} labelled, {corpus_same}/{len(r['top3']) - n} corpus sentences"
            )
        print(
            f"| {backend} | {r['load_s']:.2f} | {r['ingest_s']:.1f} ({r['texts']}) "
            f"| {r['query_ms_p50']:.2f} / {r['query_ms_p99']:.2f} | {r['peak_rss_mb']:.0f} "
            f"| {dense[0]:.0%} / {dense[1]:.0%} / {dense[2]:.3f} "
            f"| {served[0]:.0%} / {served[1]:.0%} / {served[2]:.3f} "
            f"| {agreement} | {same} |"
        )
    for backend, r in results.items():
        print(f"{backend}: model name {r['name']!r}, torch imported: {r['torch_imported']}")


if __name__ == "__main__":
    main()
